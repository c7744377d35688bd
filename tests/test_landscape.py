"""Tests of embedding_principle.landscape against independent references.

References: central finite differences; a per-sample back-propagation written here with plain Python loops
(paper A section 4 recursions z^[l], g^[l]); torch.autograd.functional.hessian / jacobian; the closed form of
the two-layer residual block S_j (digest section 2c); numpy eigvalsh; hand-built diagonal matrices.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embedding_principle.landscape as landscape_module
from embedding_principle.landscape import Inertia, Landscape, inertia
from embedding_principle.network import MLP

D = torch.float64


def l4_loss(f, y):
    return ((f - y) ** 4).mean(-1)


def pseudo_huber(f, y):
    return (torch.sqrt(1 + (f - y) ** 2) - 1).sum(-1)


# (widths, activation, output_bias, loss): depths 2-4, every activation, three kinds of loss
CASES = [  # (widths, activation, output_bias, loss, seed)
    ((1, 4, 1), "tanh", False, "mse", 0),
    ((2, 3, 2), "sigmoid", True, "mse", 0),
    ((3, 4, 3), "softplus", True, "cross_entropy", 0),
    ((2, 3, 4, 2), "gelu", False, "mse", 0),
    ((2, 3, 3, 1), "identity", True, l4_loss, 0),
    ((3, 4, 3, 2), "relu", True, "mse", 1),  # seed 1: every pre-activation is >= 0.08 away from the kink
    ((2, 3, 2, 3, 2), "tanh", True, "cross_entropy", 0),
    ((1, 2, 3, 2, 1), "sigmoid", False, pseudo_huber, 0),
]
IDS = [f"{'-'.join(map(str, w))}-{a}-{'b' if ob else 'nob'}-{getattr(l, '__name__', l)}" for w, a, ob, l, _ in CASES]


def make(widths, act, output_bias, loss, seed=0, n=9):
    net = MLP(widths, act, output_bias=output_bias)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, widths[0], generator=gen, dtype=D)
    if loss == "cross_entropy":
        y = torch.randint(0, widths[-1], (n,), generator=gen)
    else:
        y = torch.randn(n, widths[-1], generator=gen, dtype=D)
    theta = net.init(seed + 1, 0.8)
    ls = Landscape(net, x, y, loss)
    if act == "relu":  # keep every pre-activation away from the kink, so finite differences are valid
        assert min(f.abs().min().item() for f in pre_activations(net, theta, ls.x)) > 1e-3
    return ls, theta


def rel_err(a, b):
    return ((a - b).abs().max() / max(1.0, b.abs().max().item())).item()


# ----------------------------------------------------------------------------- independent reference
SIGMA = {  # sigma and sigma', written out by hand
    "tanh": (math.tanh, lambda u: 1 - math.tanh(u) ** 2),
    "sigmoid": (lambda u: 1 / (1 + math.exp(-u)), lambda u: math.exp(-u) / (1 + math.exp(-u)) ** 2),
    "softplus": (lambda u: math.log1p(math.exp(u)), lambda u: 1 / (1 + math.exp(-u))),
    "gelu": (lambda u: 0.5 * u * (1 + math.erf(u / math.sqrt(2))),
             lambda u: 0.5 * (1 + math.erf(u / math.sqrt(2))) + u * math.exp(-u * u / 2) / math.sqrt(2 * math.pi)),
    "identity": (lambda u: u, lambda u: 1.0),
    "relu": (lambda u: max(u, 0.0), lambda u: float(u > 0)),
}


def unpack(widths, output_bias, theta):
    """[(W, b)] as nested Python lists, read from theta in the documented order W^[1], b^[1], ..., W^[L], (b^[L])."""
    t, pos, layers = theta.tolist(), 0, []
    L = len(widths) - 1
    for l in range(1, L + 1):
        m_out, m_in = widths[l], widths[l - 1]
        W = [t[pos + i * m_in: pos + (i + 1) * m_in] for i in range(m_out)]
        pos += m_out * m_in
        b = [0.0] * m_out
        if l < L or output_bias:
            b, pos = t[pos: pos + m_out], pos + m_out
        layers.append((W, b))
    assert pos == len(t)
    return layers


def pre_activations(net, theta, x):
    """u^[l] for l = 1..L-1 (torch), used only to check distance from ReLU kinks."""
    f, us = x, []
    for l, (W, b) in enumerate(net.unflatten(theta), start=1):
        u = f @ W.T + (b if b is not None else 0)
        if l < net.L:
            us.append(u)
            f = net.activation(u)
    return us


def loop_gradient(ls, theta):
    """nabla R_S by explicit per-sample back-propagation, plain Python loops (paper A section 4).

    z^[L] = dl/df, e^[l] = z^[l] o g^[l], z^[l-1] = W^[l]^T e^[l], dW^[l] = e^[l] f^[l-1]^T, db^[l] = e^[l].
    """
    net = ls.net
    sig, dsig = SIGMA[net.activation.name]
    layers = unpack(net.widths, net.output_bias, theta)
    L = net.L
    total = [[[0.0] * len(W[0]) for _ in W] for W, _ in layers], [[0.0] * len(b) for _, b in layers]
    for i in range(ls.n):
        feats, gs = [ls.x[i].tolist()], []
        for l, (W, b) in enumerate(layers, start=1):
            u = [sum(W[r][c] * feats[-1][c] for c in range(len(feats[-1]))) + b[r] for r in range(len(W))]
            feats.append([sig(v) for v in u] if l < L else u)
            gs.append([dsig(v) for v in u] if l < L else [1.0] * len(u))
        f = torch.tensor(feats[-1], dtype=D, requires_grad=True)
        yi = ls.y[i:i + 1]
        (z,) = torch.autograd.grad(ls.loss(f[None], yi).sum(), f)  # dl/df for sample i only
        z = z.tolist()
        for l in range(L, 0, -1):
            W, _ = layers[l - 1]
            e = [z[r] * gs[l - 1][r] for r in range(len(z))]
            for r in range(len(W)):
                total[1][l - 1][r] += e[r] / ls.n
                for c in range(len(W[0])):
                    total[0][l - 1][r][c] += e[r] * feats[l - 1][c] / ls.n
            z = [sum(W[r][c] * e[r] for r in range(len(W))) for c in range(len(W[0]))]
    flat = []
    for l in range(L):
        flat += [v for row in total[0][l] for v in row]
        if l < L - 1 or net.output_bias:
            flat += total[1][l]
    return torch.tensor(flat, dtype=D)


def fd_gradient(ls, theta, h=1e-6):
    eye = torch.eye(theta.numel(), dtype=D)
    return torch.stack([(ls.risk(theta + h * e) - ls.risk(theta - h * e)) / (2 * h) for e in eye])


def fd_hessian(ls, theta, h=1e-5):
    eye = torch.eye(theta.numel(), dtype=D)
    H = torch.stack([(ls.grad(theta + h * e) - ls.grad(theta - h * e)) / (2 * h) for e in eye])
    return 0.5 * (H + H.T)


# ----------------------------------------------------------------------------- gradient
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_matches_loops_and_finite_differences(case):
    ls, theta = make(*case)
    g = ls.grad(theta)
    assert g.shape == theta.shape
    assert rel_err(g, loop_gradient(ls, theta)) < 1e-12
    assert rel_err(g, fd_gradient(ls, theta)) < 1e-7


def test_risk_matches_a_plain_loop():
    ls, theta = make((2, 3, 2), "sigmoid", True, "mse")
    f = ls.net.forward(theta, ls.x)
    by_hand = sum(((f[i] - ls.y[i]) ** 2).mean() for i in range(ls.n)) / ls.n
    assert ls.risk(theta).shape == () and abs(ls.risk(theta) - by_hand) < 1e-15


def test_risk_and_grad_accept_batches():
    ls, theta = make((2, 3, 4, 2), "gelu", False, "mse")
    batch = torch.stack([theta, 2 * theta, -theta]).reshape(3, 1, -1)
    assert ls.risk(batch).shape == (3, 1) and ls.grad(batch).shape == batch.shape
    for k in range(3):
        assert torch.allclose(ls.risk(batch)[k, 0], ls.risk(batch[k, 0]), rtol=1e-14, atol=0)
        assert torch.allclose(ls.grad(batch)[k, 0], ls.grad(batch[k, 0]), rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------- Hessian
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hessian_matches_references(case):
    ls, theta = make(*case)
    H = ls.hessian(theta)
    ref = torch.autograd.functional.hessian(lambda t: ls.risk(t), theta)
    assert H.shape == (theta.numel(),) * 2
    assert rel_err(H, ref) < 1e-12
    assert rel_err(H, ls.hessian(theta, method="autodiff")) < 1e-12
    assert rel_err(H, fd_hessian(ls, theta)) < 1e-7
    assert (H - H.T).abs().max() <= 1e-13 * H.abs().max()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hessian_parts(case):
    ls, theta = make(*case)
    H, (H1, H2) = ls.hessian(theta), ls.hessian_parts(theta)
    assert (H1 + H2 - H).abs().max() <= 1e-12 * max(1.0, H.abs().max().item())
    # independent references: H^(1) = E_S J^T (d^2 l) J and H^(2) = Hess of E_S <stopgrad(nabla l), f_theta>
    J = torch.autograd.functional.jacobian(lambda t: ls.net.forward(t, ls.x), theta)  # (n, m_L, P)
    f = ls.net.forward(theta, ls.x)
    q, c = ls.loss.hess(f, ls.y), ls.loss.grad(f, ls.y)
    ref1 = sum(J[i].T @ q[i] @ J[i] for i in range(ls.n)) / ls.n
    ref2 = torch.autograd.functional.hessian(lambda t: (c * ls.net.forward(t, ls.x)).sum() / ls.n, theta)
    assert rel_err(H1, ref1) < 1e-12 and rel_err(H2, ref2) < 1e-12
    if case[3] in ("mse", "cross_entropy"):  # Gauss-Newton part is PSD for convex losses
        ev = torch.linalg.eigvalsh(0.5 * (H1 + H1.T))
        assert ev.min() >= -1e-12 * ev.abs().max()
    k = ls.net.num_hidden_params
    h1, h2 = ls.hessian_parts(theta, hidden_only=True)
    assert h1.shape == h2.shape == (k, k)
    assert torch.equal(h1, H1[:k, :k]) and torch.equal(h2, H2[:k, :k])


def test_residual_part_vanishes_at_an_interpolating_point():
    # y = f_theta(x): all residuals are 0, so H^(2) = 0 and H = H^(1) (digest, note after Theorem 6.3)
    net = MLP((2, 3, 1), "tanh", output_bias=False)
    theta = net.init(3, 1.0)
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=D)
    ls = Landscape(net, x, net.forward(theta, x))
    H1, H2 = ls.hessian_parts(theta)
    assert H2.abs().max() == 0 and rel_err(H1, ls.hessian(theta)) < 1e-14


@pytest.mark.parametrize("m0,output_bias", [(1, False), (2, True)])
def test_two_layer_residual_block_closed_form(m0, output_bias):
    """H^(2),[L-1] of f = sum_k a_k sigma(w_k . x + b_k), MSE, one output: block-diagonal over neurons with
    (w_k, b_k) block (2/n) sum_i r_i a_k sigma''(w_k . x_i + b_k) xt_i xt_i^T, xt = [x; 1] (digest 2c, 2 S_k)."""
    m = 4
    net = MLP((m0, m, 1), "tanh", output_bias=output_bias)
    theta = net.init(5, 1.0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(11, m0, generator=gen, dtype=D)
    ls = Landscape(net, x, torch.randn(11, 1, generator=gen, dtype=D))
    _, H2 = ls.hessian_parts(theta, hidden_only=True)
    (W, b), (a, _) = net.unflatten(theta)
    r = (net.forward(theta, x) - ls.y)[:, 0]
    xt = torch.cat([x, torch.ones(11, 1, dtype=D)], 1)
    for k in range(m):
        u = x @ W[k] + b[k]
        s2 = -2 * torch.tanh(u) * (1 - torch.tanh(u) ** 2)
        S = (2 / 11) * torch.einsum("i,ip,iq->pq", r * a[0, k] * s2, xt, xt)
        idx = list(range(k * m0, (k + 1) * m0)) + [m * m0 + k]  # w_k (row k of W^[1]) and b_k
        assert torch.allclose(H2[idx][:, idx], S, rtol=1e-12, atol=1e-14)
        others = [i for i in range(H2.shape[0]) if i not in idx]
        assert H2[idx][:, others].abs().max() == 0  # different neurons do not interact in H^(2),[L-1]


def test_structured_hessian_in_sample_chunks(monkeypatch):
    ls, theta = make((2, 3, 4, 2), "tanh", True, "mse", n=10)
    H = ls.hessian(theta)
    monkeypatch.setattr(landscape_module, "_CHUNK_ENTRIES", 1)  # one sample per chunk
    assert rel_err(ls.hessian(theta), H) < 1e-14


def test_wide_two_layer_hessian_matches_autodiff():
    # the low-rank path of the structured Hessian (two-layer nets) at a realistic width
    net = MLP((1, 60, 1), "tanh", output_bias=False)
    x = torch.linspace(-3, 3, 40, dtype=D)[:, None]
    ls = Landscape(net, x, torch.sin(x))
    theta = net.init(0, 0.5)
    assert rel_err(ls.hessian(theta), ls.hessian(theta, method="autodiff")) < 1e-12


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(2, 4), widths=st.lists(st.integers(1, 4), min_size=5, max_size=5),
       act=st.sampled_from(["tanh", "sigmoid", "softplus", "gelu"]), output_bias=st.booleans(),
       loss=st.sampled_from(["mse", "cross_entropy"]), seed=st.integers(0, 2**16))
def test_structured_hessian_equals_autodiff_property(depth, widths, act, output_bias, loss, seed):
    w = widths[: depth + 1]
    if loss == "cross_entropy":
        w[-1] = max(w[-1], 2)
    ls, theta = make(tuple(w), act, output_bias, loss, seed, n=5)
    H, ref = ls.hessian(theta), torch.autograd.functional.hessian(lambda t: ls.risk(t), theta)
    assert rel_err(H, ref) < 1e-12


# ----------------------------------------------------------------------------- hvp, spectrum
@pytest.mark.parametrize("case", CASES[:4], ids=IDS[:4])
def test_hvp_equals_dense_product(case):
    ls, theta = make(*case)
    H = ls.hessian(theta)
    V = torch.randn(3, theta.numel(), generator=torch.Generator().manual_seed(2), dtype=D)
    assert rel_err(ls.hvp(theta, V[0]), H @ V[0]) < 1e-12
    assert rel_err(ls.hvp(theta, V), V @ H.T) < 1e-12


def test_spectrum_matches_numpy():
    ls, theta = make((2, 3, 4, 2), "gelu", False, "mse")
    ev = ls.spectrum(theta)
    ref = np.linalg.eigvalsh(ls.hessian(theta).numpy())
    assert torch.all(ev[1:] >= ev[:-1])
    assert np.abs(ev.numpy() - ref).max() <= 1e-12 * np.abs(ref).max()


# ----------------------------------------------------------------------------- inertia
def test_inertia_of_diagonal_matrices():
    neg, zero, pos, tol = inertia(torch.diag(torch.tensor([-2.0, 0.0, 0.0, 3.0, 5.0], dtype=D)))
    assert (neg, zero, pos) == (1, 2, 2) and tol == pytest.approx(5e-8, rel=1e-12)
    # the paper's situation: round-off zeros and a genuinely small negative curvature next to a large one
    ev = torch.tensor([400.0, 3.4, -0.0097, 4e-13, -2e-14], dtype=D)
    assert inertia(ev)[:3] == (1, 2, 2)
    # the same after an orthogonal change of basis, as a matrix
    Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=D))
    assert inertia(Q @ torch.diag(ev) @ Q.T)[:3] == (1, 2, 2)


def test_inertia_tolerance_edges():
    # |lambda| <= max(atol, rtol * max|lambda|) counts as zero: exactly at the tolerance is zero
    assert inertia([1.0, 0.25, -0.25, 0.2500001, -0.2500001], rtol=0.25) == Inertia(1, 2, 2, 0.25)
    assert inertia([1.0, 1e-4, -1e-4], atol=1e-3) == Inertia(0, 2, 1, 1e-3)
    assert inertia([1.0, 1e-4, -1e-4], rtol=0.0) == Inertia(1, 0, 2, 0.0)
    assert inertia(torch.zeros(3, 3)) == Inertia(0, 3, 0, 0.0)
    assert inertia([]) == Inertia(0, 0, 0, 0.0)


def test_inertia_is_scale_invariant():
    ev = torch.tensor([-3.0, 1e-14, 2.0, 7.0], dtype=D)
    assert inertia(ev)[:3] == inertia(1e6 * ev)[:3] == inertia(1e-6 * ev)[:3] == (1, 1, 2)


@pytest.mark.parametrize("bad,match", [
    (torch.ones(2, 3), "square"),
    (torch.ones(2, 2, 2), "square"),
    (torch.tensor([[1.0, 2.0], [0.0, 1.0]]), "not symmetric"),
    (torch.tensor([1.0, float("nan")]), "NaN"),
    (torch.diag(torch.tensor([1.0, float("inf")])), "NaN or infinite"),
])
def test_inertia_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        inertia(bad)


def test_inertia_rejects_negative_tolerances():
    with pytest.raises(ValueError, match="non-negative"):
        inertia([1.0], rtol=-1.0)


def test_inertia_is_frozen():
    result = inertia([1.0, -1.0])
    with pytest.raises(AttributeError):
        result.zero = 3


# ----------------------------------------------------------------------------- bad input
NET = MLP((2, 3, 1), "tanh")
X, Y = torch.zeros(4, 2, dtype=D), torch.zeros(4, 1, dtype=D)


@pytest.mark.parametrize("args,err,match", [
    ((NET, torch.zeros(4, 3), Y), ValueError, r"x has shape \(4, 3\)"),
    ((NET, torch.zeros(4), Y), ValueError, "x has shape"),
    ((NET, torch.zeros(2, 4, 2), Y), ValueError, r"expected \(n, 2\)"),
    ((NET, X, torch.zeros(5, 1)), ValueError, "targets y have shape"),
    ((NET, X, torch.zeros(4)), ValueError, "targets y have shape"),
    ((NET, X, torch.full((4, 1), float("nan"))), ValueError, "NaN"),
    ((NET, torch.full((4, 2), float("nan")), Y), ValueError, "x contains NaN"),
    ((MLP((2, 3, 2)), X, torch.tensor([0, 1, 2, 1])), ValueError, "class labels"),
    (("not a net", X, Y), TypeError, "net must be an MLP"),
])
def test_landscape_rejects_bad_data(args, err, match):
    loss = "cross_entropy" if args[0] is not NET and isinstance(args[0], MLP) else "mse"
    with pytest.raises(err, match=match):
        Landscape(*args, loss=loss)


@pytest.mark.parametrize("method", ["risk", "grad", "hessian", "hessian_parts", "spectrum"])
def test_methods_reject_bad_theta(method):
    ls = Landscape(NET, X, Y)
    fn = getattr(ls, method)
    with pytest.raises(ValueError, match="needs a last dimension of 13"):
        fn(torch.zeros(12))
    with pytest.raises(ValueError, match="NaN"):
        fn(torch.full((13,), float("nan")))


@pytest.mark.parametrize("method", ["hessian", "hessian_parts", "spectrum"])
def test_curvature_needs_a_single_theta(method):
    with pytest.raises(ValueError, match="one parameter vector"):
        getattr(Landscape(NET, X, Y), method)(torch.zeros(2, 13))


def test_hvp_and_method_validation():
    ls = Landscape(NET, X, Y)
    with pytest.raises(ValueError, match=r"v has shape \(12,\)"):
        ls.hvp(torch.zeros(13), torch.zeros(12))
    with pytest.raises(ValueError, match="method must be"):
        ls.hessian(torch.zeros(13), method="finite-differences")


def test_attributes_and_float64():
    ls = Landscape(NET, np.zeros((4, 2), dtype=np.float32), np.zeros((4, 1)))
    assert ls.n == 4 and ls.x.dtype == D and ls.y.dtype == D and ls.net is NET and ls.loss.name == "mse"
    assert ls.grad(torch.zeros(13, dtype=torch.float32)).dtype == D
    assert "n=4" in repr(ls)
