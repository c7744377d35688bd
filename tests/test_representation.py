"""embedding_principle.representation against independent references.

References: numpy's matrix_rank and hand-built matrices for the span ranks; torch.nn.functional modules with
autograd, the closed-form MSE derivative and finite differences for the errors z^[l], e^[l]; torch.func
gradients of R_S (not the library's backprop) for the embedded gradient; the two-layer closed form
H^(2)_j = a_j E_S[d l sigma''(w_j . x~) x~ x~^T] (digest section 2c) and the library's structured Hessian split
for H^(2),[L-1]; torch.func gradients of R_S for the critical targets.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import grad, jacrev

from embedding_principle.embeddings import (compose, equal_split, general_compatible, null, splitting,
                                            t_global, t_gn)
from embedding_principle.landscape import Landscape
from embedding_principle.losses import Loss, get_loss
from embedding_principle.network import MLP
from embedding_principle.representation import (SpanRanks, copy_residuals, critical_residual, critical_targets,
                                                embedded_gradient, error_factors, errors_by_autograd,
                                                feature_span_ranks, hidden_residual_curvature, k_neuron_wider,
                                                span_residual)

D = torch.float64
NET3 = MLP((2, 3, 2, 2), "tanh")
NET4 = MLP((3, 2, 3, 2, 2), "sigmoid", output_bias=False)
PSEUDO_HUBER = Loss("pseudo_huber", lambda f, y: (torch.sqrt(1 + (f - y) ** 2) - 1).mean(-1))
L4 = Loss("l4", lambda f, y: ((f - y) ** 4).mean(-1))


def data(net, n=15, seed=0, loss="mse"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, net.widths[0], generator=gen, dtype=D)
    if loss == "cross_entropy":
        return x, torch.randint(0, net.widths[-1], (n,), generator=gen)
    return x, torch.randn(n, net.widths[-1], generator=gen, dtype=D)


def grad_R(net, x, y, theta, loss="mse"):
    ell = get_loss(loss)
    y = ell.target(torch.Size((x.shape[0], net.widths[-1])), y)
    return grad(lambda t: ell(net.forward(t, x), y).mean())(theta)


# ----------------------------------------------------------------------------- feature_span_ranks
def numpy_rank(F, extra=None):
    cols = [F, np.ones((F.shape[0], 1))] + ([] if extra is None else [extra])
    M = np.concatenate(cols, 1)
    M = M[:, np.linalg.norm(M, axis=0) > 0]
    M = M / np.linalg.norm(M, axis=0)
    s = np.linalg.svd(M, compute_uv=False)
    return int((s > 1e-9 * s[0]).sum())


@pytest.mark.parametrize("net", [NET3, NET4, MLP((2, 4, 1), "relu")], ids=repr)
def test_span_ranks_equal_for_embeddings(net):
    theta = net.init(1, 1.0)
    x, _ = data(net, n=30)
    embeddings = [splitting(net, 1, 0, 0.3), splitting(net, net.L - 1, 1, -1.4), null(net, net.L - 1, 0.6),
                  equal_split(net, 1, 1, 3), t_global(net), t_gn(net, 0.2)]
    for T in embeddings:
        for layer in range(net.L + 1):
            r = feature_span_ranks(net, theta, T.target, T(theta), x, layer)
            assert r.equal, (T, layer, r)
            F = net.features(theta, x)[layer].numpy()
            Fw = T.target.features(T(theta), x)[layer].numpy()
            assert (r.narrow, r.wide, r.joint) == (numpy_rank(F), numpy_rank(Fw), numpy_rank(F, Fw))
            assert r.residual <= 1e-13 and r.dropped <= 1e-13 and r.kept > 1e-6


def test_span_ranks_detect_a_new_feature():
    """A wide net whose extra neuron is a *new* function (not a copy, not constant) enlarges the span."""
    net = MLP((2, 2, 1), "tanh")
    theta = net.init(2, 1.0)
    wide = MLP((2, 3, 1), "tanh")
    (W1, b1), (W2, b2) = net.unflatten(theta)
    new_row = torch.tensor([[0.7, -1.3]], dtype=D)
    wide_theta = wide.flatten([(torch.cat([W1, new_row]), torch.cat([b1, torch.tensor([0.2], dtype=D)])),
                               (torch.cat([W2, torch.zeros(1, 1, dtype=D)], 1), b2)])
    x, _ = data(net, n=20)
    r = feature_span_ranks(net, theta, wide, wide_theta, x, 1)
    assert isinstance(r, SpanRanks)
    assert (r.narrow, r.wide, r.joint) == (3, 4, 4) and not r.equal and r.residual > 1e-3
    # the residual is span_residual both ways: the new feature's distance to the narrow span, by a projection here
    ones = torch.ones(20, 1, dtype=D)
    A = torch.cat([net.features(theta, x)[1], ones], 1)
    new = wide.features(wide_theta, x)[1][:, 2:]
    Q = torch.linalg.qr(A).Q
    expected = ((new - Q @ (Q.T @ new)).norm() / new.norm()).item()
    assert r.residual == pytest.approx(expected, rel=1e-10)
    assert span_residual(torch.cat([wide.features(wide_theta, x)[1], ones], 1), A) <= 1e-14
    # same output (zero output weight), but the representation is not preserved
    assert torch.allclose(wide.forward(wide_theta, x), net.forward(theta, x), atol=1e-15)
    assert feature_span_ranks(net, theta, wide, wide_theta, x, 2).equal


def test_span_ranks_constant_and_zero_columns():
    """A constant feature adds nothing to span{.., 1}; a zero feature (ReLU, dead neuron) is dropped."""
    net = MLP((1, 2, 1), "relu")
    theta = torch.tensor([1.0, -1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=D)   # f = relu(x) + relu(-x) = |x|
    wide = MLP((1, 4, 1), "relu")
    wide_theta = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 2.0, -3.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=D)
    x = torch.linspace(-2, 2, 9, dtype=D)[:, None]
    r = feature_span_ranks(net, theta, wide, wide_theta, x, 1)  # features relu(2) = 2 (constant), relu(-3) = 0
    assert (r.narrow, r.wide, r.joint) == (3, 3, 3) and r.equal


def test_span_ranks_bad_inputs():
    theta = NET3.init(0, 1.0)
    x, _ = data(NET3)
    with pytest.raises(ValueError, match="layer must be"):
        feature_span_ranks(NET3, theta, NET3, theta, x, 4)
    with pytest.raises(ValueError, match="rtol"):
        feature_span_ranks(NET3, theta, NET3, theta, x, 1, rtol=0.0)
    with pytest.raises(ValueError, match="same depth"):
        feature_span_ranks(NET3, theta, MLP((2, 3, 2), "tanh"), MLP((2, 3, 2), "tanh").init(0, 1.0), x, 1)
    with pytest.raises(TypeError, match="wide_net must be an MLP"):
        feature_span_ranks(NET3, theta, "wide", theta, x, 1)
    with pytest.raises(ValueError, match="one parameter vector"):
        feature_span_ranks(NET3, theta.expand(2, -1), NET3, theta, x, 1)


# ----------------------------------------------------------------------------- errors_by_autograd
@pytest.mark.parametrize("act", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "custom"])
def test_errors_by_autograd_match_modules_and_closed_form(act, loss):
    net = MLP((3, 4, 3, 3), act)
    theta = net.init(4, 0.8)
    x, y = data(net, n=6, seed=5, loss=loss)
    lossfn = PSEUDO_HUBER if loss == "custom" else loss
    z, e = errors_by_autograd(net, theta, x, y, lossfn)
    assert z[0] is None and e[0] is None and len(z) == net.L + 1
    # reference: nn.Sequential modules, hooks on the activations' inputs/outputs
    model = net.to_torch(theta)
    h, feats, pre = x, [], []
    for module in model:
        h = module(h)
        h.retain_grad()
        (pre if isinstance(module, torch.nn.Linear) else feats).append(h)
    ell = get_loss(lossfn)
    ell(h, ell.target(h.shape, y)).sum().backward()
    for l in range(1, net.L):
        torch.testing.assert_close(z[l], feats[l - 1].grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(e[l], pre[l - 1].grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(z[net.L], pre[-1].grad, rtol=1e-12, atol=1e-14)
    if loss == "mse":  # z^[L] = 2 (f - y) / d'
        torch.testing.assert_close(z[net.L], 2 * (net.forward(theta, x) - y) / net.widths[-1], rtol=1e-13, atol=1e-15)


def test_errors_by_autograd_finite_differences():
    """z^[l]_j(x_i) = d l / d f^[l]_j: perturb the feature by a bias shift of the next layer's input."""
    net = MLP((2, 3, 2), "softplus")
    theta = net.init(7, 1.0)
    x, y = data(net, n=4, seed=8)
    z, _ = errors_by_autograd(net, theta, x, y)
    (W1, b1), (W2, b2) = net.unflatten(theta)
    f1 = torch.nn.functional.softplus(x @ W1.T + b1)
    h = 1e-6
    for j in range(3):
        d = torch.zeros(3, dtype=D)
        d[j] = h
        lp = ((((f1 + d) @ W2.T + b2) - y) ** 2).mean(-1)
        lm = ((((f1 - d) @ W2.T + b2) - y) ** 2).mean(-1)
        torch.testing.assert_close(z[1][:, j], (lp - lm) / (2 * h), rtol=1e-7, atol=1e-9)


# ----------------------------------------------------------------------------- error factors, copies, gradients
def test_error_factors_hand_computed():
    beta = error_factors(splitting(NET3, 1, 1, 0.3))
    assert [b.tolist() for b in beta] == [[1.0, 1.0], [1.0, 0.7, 1.0, 0.3], [1.0, 1.0], [1.0, 1.0]]
    beta = error_factors(t_global(NET3))
    assert beta[1].tolist() == [1.0] * 6 + [-1.0] * 3 and beta[2].tolist() == [1.0] * 4 + [-1.0] * 2
    beta = error_factors(null(NET3, 2, 0.5))
    assert beta[2].tolist() == [1.0, 1.0, 0.0]
    beta = error_factors(equal_split(NET4, 2, 0, 3))
    torch.testing.assert_close(beta[2], torch.tensor([1 / 3, 1.0, 1.0, 1 / 3, 1 / 3], dtype=D))


def test_error_factors_reject_condition_1_violation():
    index_map = [[0, 1, 2, 1], [0, 1]]
    alpha = [list(p) for p in splitting(NET3, 1, 1, 0.3).alpha]
    alpha[1][0][1, 1], alpha[1][0][1, 3] = 1.5, -0.5    # rows still sum to 1, beta not common
    T = general_compatible(NET3, index_map, alpha, strict=False)
    with pytest.raises(ValueError, match="Condition 1 \\(backward\\)"):
        error_factors(T)
    x, y = data(NET3, seed=4)
    r = copy_residuals(T, NET3.init(3, 1.0), x, y)           # measures instead of raising: features still copied,
    assert max(r.f, r.g) <= 1e-14 and r.e > 1e-3             # the errors are no common multiple of the narrow ones
    with pytest.raises(TypeError, match="Embedding"):
        error_factors("T")


def _family(net):
    T1 = splitting(net, 1, 0, 0.4)
    return [splitting(net, 1, 0, 0.3), splitting(net, net.L - 1, 1, -1.2), splitting(net, 1, 1, 0.0),
            equal_split(net, net.L - 1, 0, 3), t_global(net),
            compose(splitting(T1.target, 1, net.widths[1], 2.0), T1)]


@pytest.mark.parametrize("net", [NET3, NET4], ids=repr)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_copy_residuals_and_embedded_gradient(net, loss):
    """At a NON-critical theta: copies carry the narrow f, g and beta-scaled z, e; the wide gradient is the
    predicted one (torch.func reference); the one-step norm bound holds."""
    theta = net.init(9, 1.0)
    x, y = data(net, n=12, seed=10, loss=loss)
    g = grad_R(net, x, y, theta, loss)
    for T in _family(net):
        r = copy_residuals(T, theta, x, y, loss)
        assert r.worst <= 1e-13, (T, r)
        assert set(r.per_layer) == set(range(1, net.L + 1))
        assert r.error_pairs[0] is None and len(r.error_pairs) == net.L + 1
        for l in range(1, net.L + 1):
            e_wide, e_pred = r.error_pairs[l]
            assert e_wide.shape == e_pred.shape == (12, T.target.widths[l])
            assert (e_wide - e_pred).abs().max().item() == r.per_layer[l]["e"]
        gw = grad_R(T.target, x, y, T(theta), loss)
        torch.testing.assert_close(embedded_gradient(T, g), gw, rtol=1e-12, atol=1e-15)
    for alpha in (-0.7, 0.3, 1.9):
        T = splitting(net, 1, 0, alpha)
        gw = grad_R(T.target, x, y, T(theta), loss)
        assert gw.norm() <= (1 + max(1.0, 2 * alpha ** 2 - 2 * alpha)) ** 0.5 * g.norm() * (1 + 1e-12)


def test_copy_residuals_null_neurons():
    theta = NET3.init(11, 1.0)
    x, y = data(NET3, seed=12)
    for T in [null(NET3, 1, 0.8), t_gn(NET3, -0.4), compose(null(splitting(NET3, 2, 0, 0.5).target, 1, 0.1),
                                                             splitting(NET3, 2, 0, 0.5))]:
        r = copy_residuals(T, theta, x, y)
        assert r.worst <= 1e-13 and r.per_layer[1]["null_e"] == 0.0
    with pytest.raises(ValueError, match="splitting embedding"):
        embedded_gradient(null(NET3, 1, 0.8), torch.zeros(NET3.num_params, dtype=D))


def test_embedded_gradient_batched_and_bad_length():
    T = splitting(NET3, 2, 1, 0.25)
    G = torch.randn(4, NET3.num_params, generator=torch.Generator().manual_seed(0), dtype=D)
    out = embedded_gradient(T, G)
    assert out.shape == (4, T.target.num_params)
    torch.testing.assert_close(out[2], embedded_gradient(T, G[2]))
    with pytest.raises(ValueError, match="last dimension"):
        embedded_gradient(T, G[:, :-1])


# ----------------------------------------------------------------------------- H^(2),[L-1]
@pytest.mark.parametrize("act", ["tanh", "softplus", "sigmoid"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "custom"])
def test_hidden_residual_curvature_matches_the_library_split(act, loss):
    net = MLP((2, 3, 2, 3), act, output_bias=loss != "custom")
    theta = net.init(13, 1.0)
    x, y = data(net, n=9, seed=14, loss=loss)
    lossfn = PSEUDO_HUBER if loss == "custom" else loss
    h2 = hidden_residual_curvature(net, theta, x, y, lossfn)
    ref = Landscape(net, x, y, lossfn).hessian_parts(theta, hidden_only=True)[1]
    assert h2.shape == (net.num_hidden_params, net.num_hidden_params)
    torch.testing.assert_close(h2, ref, rtol=1e-10, atol=1e-13)


def test_hidden_residual_curvature_two_layer_closed_form():
    """L = 2: H^(2),[1] is block diagonal over neurons j with blocks a_j E_S[d l sigma''(w_j.x~) x~ x~^T]
    in the (w_j, b_j) coordinates (digest 2c); the library orders theta^[1] as (W^[1] row-major, b^[1])."""
    net = MLP((2, 3, 1), "tanh", output_bias=False)
    theta = net.init(15, 1.0)
    x, y = data(net, n=11, seed=16)
    h2 = hidden_residual_curvature(net, theta, x, y)
    (W, b), (a, _) = net.unflatten(theta)
    u = x @ W.T + b
    dl = 2 * (net.forward(theta, x) - y)[:, 0]                       # d l / d f for MSE, d' = 1
    s2 = -2 * torch.tanh(u) * (1 - torch.tanh(u) ** 2)              # tanh''
    xt = torch.cat([x, torch.ones(x.shape[0], 1, dtype=D)], 1)
    for j in range(3):
        block = a[0, j] * torch.einsum("n,n,np,nq->pq", dl, s2[:, j], xt, xt) / x.shape[0]
        idx = [2 * j, 2 * j + 1, 6 + j]
        torch.testing.assert_close(h2[idx][:, idx], block, rtol=1e-12, atol=1e-15)
        others = [k for k in range(9) if k not in idx]
        assert h2[idx][:, others].abs().max() <= 1e-15


# ----------------------------------------------------------------------------- critical targets
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "pseudo_huber", "l4"])
@pytest.mark.parametrize("net", [NET3, NET4, MLP((2, 3, 3), "relu")], ids=repr)
def test_critical_targets_make_theta_exactly_critical(loss, net):
    if loss == "cross_entropy" and net.widths[-1] < 2:
        pytest.skip("cross-entropy needs two outputs")
    lossfn = {"pseudo_huber": PSEUDO_HUBER, "l4": L4}.get(loss, loss)
    theta = net.init(17, 1.0)
    n = net.num_params // (net.widths[-1] - (loss == "cross_entropy")) + 10
    x, _ = data(net, n=n, seed=18)
    y = critical_targets(net, theta, x, lossfn, seed=3)
    assert y.shape == (n, net.widths[-1])
    assert grad_R(net, x, y, theta, lossfn).abs().max() <= 1e-14
    assert get_loss(lossfn)(net.forward(theta, x), y).mean() > 1e-4   # not a trivial zero-loss point
    if loss == "cross_entropy":
        assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(n, dtype=D))
    if loss == "mse":
        assert (net.forward(theta, x) - y).abs().max().item() == pytest.approx(0.5)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_critical_residual_is_orthogonal_to_the_jacobian(loss):
    theta = NET3.init(5, 1.0)
    x, _ = data(NET3, n=NET3.num_params + 7, seed=6)
    q = critical_residual(NET3, theta, x, loss, seed=1)
    J = jacrev(lambda t: NET3.forward(t, x))(theta).reshape(-1, NET3.num_params)
    assert q.shape == (x.shape[0], 2) and q.abs().max() > 1e-3
    assert (J.T @ q.reshape(-1)).abs().max() <= 1e-13 * q.abs().max() * J.abs().max()
    if loss == "cross_entropy":
        assert q.sum(-1).abs().max() <= 1e-14
    # an int seed and a generator seeded alike give the same draw; a generator continues its own stream
    torch.testing.assert_close(critical_residual(NET3, theta, x, loss, torch.Generator().manual_seed(1)), q,
                               rtol=0, atol=0)
    gen = torch.Generator().manual_seed(1)
    torch.randn(3, generator=gen)
    assert not torch.equal(critical_residual(NET3, theta, x, loss, gen), q)


def test_critical_targets_bad_inputs():
    theta = NET3.init(0, 1.0)
    x, _ = data(NET3, n=5)
    with pytest.raises(ValueError, match="no nonzero residual"):
        critical_targets(NET3, theta, x)
    x, _ = data(NET3, n=40)
    with pytest.raises(ValueError, match="scale"):
        critical_targets(NET3, theta, x, scale=1.5)
    with pytest.raises(ValueError, match="x has shape"):
        critical_targets(NET3, theta, x[:, :1])
    with pytest.raises(ValueError, match="unknown loss"):
        critical_targets(NET3, theta, x, "hinge")
    flat = Loss("flat", lambda f, y: (0 * f).sum(-1))                # grad l = 0: y cannot be solved for
    with pytest.raises(ValueError, match="could not solve|no nonzero"):
        critical_targets(NET3, theta, x, flat)
    nanloss = Loss("nan", lambda f, y: ((f - y) ** 2).mean(-1) * float("nan"))
    with pytest.raises(ValueError):
        critical_targets(NET3, theta, x, nanloss)


# ----------------------------------------------------------------------------- K-neuron wider
def test_k_neuron_wider():
    assert k_neuron_wider(NET3, MLP((2, 5, 4, 2), "tanh")) == 4
    assert k_neuron_wider(NET3, NET3) == 0
    T = compose(splitting(splitting(NET3, 1, 0, 0.2).target, 2, 1, 0.5), splitting(NET3, 1, 0, 0.2))
    assert k_neuron_wider(T.source, T.target) == T.K == 2
    with pytest.raises(ValueError, match="layer 2 has 1 < 2"):
        k_neuron_wider(NET3, MLP((2, 4, 1, 2), "tanh"))
    with pytest.raises(ValueError, match="depths differ"):
        k_neuron_wider(NET3, MLP((2, 4, 2), "tanh"))
    with pytest.raises(ValueError, match="input/output"):
        k_neuron_wider(NET3, MLP((2, 4, 2, 3), "tanh"))
    with pytest.raises(TypeError, match="wide must be an MLP"):
        k_neuron_wider(NET3, (2, 4, 2, 2))
