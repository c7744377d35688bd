"""Tests of embedding_principle.saddles against independent references.

References used here: Hessians and output Jacobians of R_S taken by torch.func on a forward pass written in this
file (independent of the library's structured Hessian); closed forms (the digest's S_j = a_j E[r sigma'' x~ x~^T]
with tanh'' written by hand, the wide output of T_global written from three narrow forward passes, the Rayleigh
quotient 2 alpha (1 - alpha) s / (alpha^2 + (1 - alpha)^2)); Richardson-extrapolated finite differences of the
risk; and the theorems themselves (paper B Thm. 6.2, Lemmas 6.1-6.2, the splitting expansion of digest 2c).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.func import hessian, jvp  # noqa: E402

from embedding_principle import saddles  # noqa: E402
from embedding_principle.degeneracy import critical_data, interpolating_minimum  # noqa: E402
from embedding_principle.embeddings import NULL, splitting, t_global  # noqa: E402
from embedding_principle.landscape import Landscape, inertia  # noqa: E402
from embedding_principle.losses import get_loss  # noqa: E402
from embedding_principle.network import MLP  # noqa: E402

D = torch.float64


# ----------------------------------------------------------------------------- independent oracles
def risk_fn(net, x, y, loss="mse"):
    ell = get_loss(loss)
    return lambda t: ell(net.forward(t, x), y).mean()


def hess(land: Landscape, theta):
    """H_S by torch.func (reverse over reverse on a plain forward pass)."""
    return hessian(risk_fn(land.net, land.x, land.y, land.loss))(theta)


def output_jvp(net, x, theta, u):
    """d/dt f_{theta + t u}(x) at t = 0 (forward mode)."""
    return jvp(lambda t: net.forward(t, x), (theta,), (u,))[1]


def point(widths=(2, 3, 2), act="sigmoid", loss="mse", seed=0, std=1.5, residual=1.0, output_bias=True):
    net = MLP(widths, act, output_bias=output_bias)
    theta = net.init(seed, std)
    x, y = critical_data(net, theta, loss=loss, seed=seed, residual=residual)
    return Landscape(net, x, y, loss), theta


@pytest.fixture(scope="module")
def two_layer():
    return point((2, 3, 1), "tanh", "mse", seed=0, std=1.5, residual=1.0)


@pytest.fixture(scope="module")
def deep():
    return point((2, 2, 3, 2), "gelu", "mse", seed=1, std=1.2, residual=0.7)


# ----------------------------------------------------------------------------- synthetic critical points
def test_synthetic_critical_point_is_exactly_critical():
    for loss in ("mse", "cross_entropy"):
        land, theta = saddles.synthetic_critical_point((3, 2, 3), "tanh", loss, 0.3, seed=2, std=1.0)
        assert land.grad(theta).norm() < 1e-13 and land.risk(theta) > 1e-3


# ----------------------------------------------------------------------------- splitting matrix
def test_splitting_matrix_matches_digest_closed_form(two_layer):
    land, theta = two_layer
    (W, b), (a, _) = land.net.unflatten(theta)
    xt = torch.cat([land.x, torch.ones(land.n, 1, dtype=D)], 1)
    r = (land.net.forward(theta, land.x) - land.y)[:, 0]
    for j in range(3):
        t = torch.tanh(xt @ torch.cat([W[j], b[j:j + 1]]))
        s2 = -2 * t * (1 - t ** 2)  # tanh''
        S_ref = a[0, j] * torch.einsum("n,np,nq->pq", r * s2, xt, xt) / land.n
        assert torch.allclose(saddles.splitting_matrix(land, theta, 1, j), S_ref, atol=1e-14, rtol=1e-12)


def test_splitting_matrix_is_half_the_h2_block_for_two_layers():
    land, theta = point((3, 2, 3), "tanh", "cross_entropy", seed=3, std=1.0)
    net = land.net
    # H^(2),[L-1] from its definition: Hessian in theta^[1] of E_S <stopgrad(grad l), f>
    g = get_loss("cross_entropy").grad(net.forward(theta, land.x), land.y).detach() / land.n
    k = net.num_hidden_params
    h2 = hessian(lambda h: (net.forward(torch.cat([h, theta[k:]]), land.x) * g).sum())(theta[:k])
    S = saddles.splitting_matrix(land, theta, 1)
    d = net.widths[0]
    for j in range(net.widths[1]):
        idx = list(range(j * d, (j + 1) * d)) + [net.widths[1] * d + j]
        assert torch.allclose(h2[idx][:, idx], 2 * S[j], atol=1e-14)
        assert torch.equal(S[j], saddles.splitting_matrix(land, theta, 1, j))


@pytest.mark.parametrize("layer,neuron,alpha", [(1, 0, 0.5), (1, 1, -0.7), (2, 2, 1.8), (2, 0, 0.3)])
def test_split_expansion_deep_net(deep, layer, neuron, alpha):
    """lambda (1 - lambda) delta^T S delta = u^T H u / 2 (torch.func) = finite differences, any depth."""
    land, theta = deep
    S = saddles.splitting_matrix(land, theta, layer, neuron)
    delta = torch.randn(S.shape[0], generator=torch.Generator().manual_seed(5), dtype=D)
    T = splitting(land.net, layer, neuron, alpha)
    wide = Landscape(T.target, land.x, land.y)
    u = saddles.split_direction(land.net, layer, neuron, alpha, delta)
    pred = saddles.split_quadratic_coefficient(S, alpha, delta)
    tw = T(theta)
    assert output_jvp(T.target, land.x, tw, u).abs().max() < 1e-13  # first-order change of f cancels
    assert abs(0.5 * (u @ hess(wide, tw) @ u).item() - pred) <= 1e-11 * max(1.0, abs(pred))
    # finite differences: O(t^4) truncation plus round-off ~ 1e-16 R_S / (t/2)^2 ~ 1e-11 absolute
    assert abs(saddles.second_difference(wide, tw, u) - pred) <= 1e-5 * abs(pred) + 1e-10


def test_split_direction_layout_by_hand():
    net = MLP((1, 2, 1), "tanh", output_bias=False)
    alpha, delta = 0.3, torch.tensor([2.0, -1.0], dtype=D)
    u = saddles.split_direction(net, 1, 1, alpha, delta)
    # wide layout: W^[1] (3 x 1), b^[1] (3), W^[2] (1 x 3); the copy of neuron 1 is neuron 2
    expected = torch.tensor([0, alpha * 2, -(1 - alpha) * 2, 0, -alpha, (1 - alpha), 0, 0, 0], dtype=D)
    assert torch.allclose(u, expected)


def test_split_direction_bad_inputs():
    net = MLP((2, 3, 1), "tanh")
    with pytest.raises(ValueError, match="delta must have"):
        saddles.split_direction(net, 1, 0, 0.5, torch.zeros(2))
    with pytest.raises(ValueError, match="hidden layer"):
        saddles.split_direction(net, 2, 0, 0.5, torch.zeros(3))
    with pytest.raises(ValueError, match="neuron must be"):
        saddles.split_direction(net, 1, 3, 0.5, torch.zeros(3))
    with pytest.raises(TypeError, match="alpha"):
        saddles.split_direction(net, 1, 0, "half", torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        saddles.split_direction(net, 1, 0, float("nan"), torch.zeros(3))
    with pytest.raises(TypeError, match="net must be an MLP"):
        saddles.split_direction("net", 1, 0, 0.5, torch.zeros(3))
    with pytest.raises(ValueError, match="square"):
        saddles.split_quadratic_coefficient(torch.zeros(2, 2), 0.5, torch.zeros(3))


def test_splitting_matrix_bad_inputs(two_layer):
    land, theta = two_layer
    with pytest.raises(ValueError, match="hidden layer"):
        saddles.splitting_matrix(land, theta, 0, 0)
    with pytest.raises(ValueError, match="neuron must be"):
        saddles.splitting_matrix(land, theta, 1, 5)
    with pytest.raises(TypeError, match="integer"):
        saddles.splitting_matrix(land, theta, 1, 0.5)
    with pytest.raises(TypeError, match="Landscape"):
        saddles.splitting_matrix("land", theta, 1, 0)
    with pytest.raises(ValueError):
        saddles.splitting_matrix(land, theta[:-1], 1, 0)


def test_split_saddle_and_rayleigh(two_layer):
    land, theta = two_layer
    lam_S = torch.linalg.eigvalsh(saddles.splitting_matrix(land, theta, 1, 2))
    for alpha in (0.5, 0.2, -1.5, 3.0):
        d = saddles.split_saddle(land, theta, 1, 2, alpha)
        wide = Landscape(d.embedding.target, land.x, land.y)
        H = hess(wide, d.embedding(theta))
        q = (d.u @ H @ d.u).item()
        assert abs(q - d.predicted) <= 1e-11 * max(1.0, abs(q))
        s = lam_S[0] if 0 < alpha < 1 else lam_S[-1]
        assert d.eigenvalue == pytest.approx(s.item(), abs=1e-14)
        rq = saddles.split_rayleigh(d.eigenvalue, [alpha]).item()
        assert rq == pytest.approx(q / (d.u @ d.u).item(), rel=1e-10)
        lam_min = saddles.split_min_eigenvalues(land, theta, 1, 2, [alpha])[0].item()
        assert lam_min <= rq + 1e-12 and lam_min == pytest.approx(torch.linalg.eigvalsh(H)[0].item(), abs=1e-10)
    assert saddles.split_rayleigh(2.0, [0.5]).item() == pytest.approx(2.0)
    assert saddles.split_rayleigh(2.0, [1e8]).item() == pytest.approx(-2.0, rel=1e-6)
    assert saddles.split_min_eigenvalues(land, theta, 1, 0, []).numel() == 0


def test_second_difference_accuracy_and_bad_inputs(deep):
    land, theta = deep
    u = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(1), dtype=D)
    grad_dir = land.grad(theta)  # not needed at a critical point; the formula is the quadratic coefficient anyway
    assert grad_dir.norm() < 1e-12
    c = 0.5 * (u @ hess(land, theta) @ u).item()
    rich, plain = saddles.second_difference(land, theta, u), saddles.second_difference(land, theta, u, richardson=False)
    assert abs(rich - c) <= 1e-7 * abs(c) and abs(rich - c) < abs(plain - c)
    with pytest.raises(ValueError, match="positive"):
        saddles.second_difference(land, theta, u, t=0.0)
    with pytest.raises(ValueError, match="entries"):
        saddles.second_difference(land, theta, u[:-1])


# ----------------------------------------------------------------------------- T_global directions
@pytest.mark.parametrize("widths,bias", [((2, 3, 2), True), ((1, 2, 3, 1), False)])
def test_t_global_direction_matches_three_narrow_nets(widths, bias):
    """f_wide(T_global theta + u) = (W + o1) f(theta + h1) + (W + o2) f(theta + h2) + (-W + o3) f(theta + h3) + b."""
    net = MLP(widths, "tanh", output_bias=bias)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(net.num_params, generator=gen, dtype=D)
    k = net.num_hidden_params
    h = [torch.randn(k, generator=gen, dtype=D) for _ in range(3)]
    o = [torch.randn(widths[-1], widths[-2], generator=gen, dtype=D) for _ in range(3)]
    x = torch.randn(7, widths[0], generator=gen, dtype=D)
    T = t_global(net)
    wide = T.target.forward(T(theta) + saddles.t_global_direction(net, h, o), x)
    W, b = net.unflatten(theta)[-1]
    feats = [net.features(torch.cat([theta[:k] + hk, theta[k:]]), x)[net.L - 1] for hk in h]
    ref = sum(f @ (s * W + ok).T for f, s, ok in zip(feats, (1, 1, -1), o)) + (0 if b is None else b)
    assert torch.allclose(wide, ref, atol=1e-13)


def test_t_global_direction_bad_inputs():
    net = MLP((2, 3, 2), "tanh")
    k = net.num_hidden_params
    with pytest.raises(ValueError, match="3 vectors"):
        saddles.t_global_direction(net, [torch.zeros(k)] * 2)
    with pytest.raises(ValueError, match="3 vectors"):
        saddles.t_global_direction(net, [torch.zeros(k + 1)] * 3)
    with pytest.raises(ValueError, match="3 matrices"):
        saddles.t_global_direction(net, [torch.zeros(k)] * 3, [torch.zeros(3, 2)] * 3)
    with pytest.raises(TypeError):
        saddles.t_global_copy_basis("net")


def test_t_global_copy_basis_gives_the_papers_block_matrix(deep):
    land, theta = deep
    T = t_global(land.net)
    wide = Landscape(T.target, land.x, land.y)
    E = saddles.t_global_copy_basis(land.net)
    assert torch.allclose(E.T @ E, torch.eye(E.shape[1], dtype=D))
    h1, h2 = land.hessian_parts(theta, hidden_only=True)
    s = torch.tensor([1.0, 1.0, -1.0], dtype=D)
    block = torch.kron(torch.outer(s, s), h1) + torch.kron(torch.diag(s), h2)
    assert torch.allclose(E.T @ hess(wide, T(theta)) @ E, block, atol=1e-12)


# ----------------------------------------------------------------------------- Lemmas 6.1 and 6.2
@pytest.mark.parametrize("which", ["max", "min", "auto"])
def test_lemma61_direction(deep, which):
    land, theta = deep
    d = saddles.lemma61_direction(land, theta, which=which)
    wide = Landscape(d.embedding.target, land.x, land.y)
    tw = d.embedding(theta)
    assert output_jvp(d.embedding.target, land.x, tw, d.u).abs().max() < 1e-13  # Gauss-Newton part cancels
    q = (d.u @ hess(wide, tw) @ d.u).item()
    assert q == pytest.approx(d.predicted, rel=1e-10) and q < 0
    lam = torch.linalg.eigvalsh(land.hessian_parts(theta, hidden_only=True)[1])
    expected = {"max": -lam[-1].item() / 2, "min": 2 * lam[0].item()}
    expected["auto"] = min(expected.values())
    assert d.predicted == pytest.approx(expected[which], rel=1e-12)


def test_lemma61_refuses_when_h2_vanishes():
    net = MLP((2, 3, 1), "tanh")
    x, y, theta = interpolating_minimum(net, 20, seed=0)
    land = Landscape(net, x, y)
    with pytest.raises(ValueError, match="Lemma 6.1 does not apply"):
        saddles.lemma61_direction(land, theta)
    with pytest.raises(ValueError, match="no negative eigenvalue"):
        saddles.lemma62_direction(land, theta)
    land2, theta2 = point((2, 3, 2), "sigmoid")
    with pytest.raises(ValueError, match="which must be"):
        saddles.lemma61_direction(land2, theta2, which="largest")


@pytest.mark.parametrize("bias", [True, False])
def test_lemma62_direction_linear_net(bias):
    land, theta = point((3, 2, 3), "identity", "mse", seed=4, std=1.0, residual=0.5, output_bias=bias)
    h1, h2 = land.hessian_parts(theta)
    k = land.net.num_hidden_params
    assert h2[:k, :k].abs().max() == 0 and h2.abs().max() > 1e-3  # the Lemma 6.2 situation
    with pytest.raises(ValueError, match="Lemma 6.1 does not apply"):
        saddles.lemma61_direction(land, theta)
    d = saddles.lemma62_direction(land, theta)
    wide = Landscape(d.embedding.target, land.x, land.y)
    tw = d.embedding(theta)
    assert output_jvp(d.embedding.target, land.x, tw, d.u).abs().max() < 1e-13
    q = (d.u @ hess(wide, tw) @ d.u).item()
    assert d.eigenvalue < 0 and q == pytest.approx(2 * d.eigenvalue, rel=1e-10)


# ----------------------------------------------------------------------------- random compatible embeddings
@pytest.mark.parametrize("widths,act,bias,copies,nulls", [
    ((2, 3, 2), "sigmoid", True, [2], [1]),
    ((1, 2, 2, 1), "tanh", False, [1, 2], [1, 1]),
    ((1, 2, 1), "tanh", False, [2], [2]),
    ((3, 2, 3, 2), "gelu", True, [0, 1], [2, 0]),
])
def test_random_compatible_is_a_critical_embedding(widths, act, bias, copies, nulls):
    land, theta = point(widths, act, seed=2, std=1.0, residual=0.5, output_bias=bias)
    for seed in (0, 1):
        T = saddles.random_compatible(land.net, copies, nulls, seed=seed)
        assert T.violations == []
        for l, (I_l, m) in enumerate(zip(T.index_map, widths[1:-1])):
            assert len(I_l) == m + copies[l] + nulls[l] and I_l.count(NULL) == nulls[l]
        xt = torch.randn(30, widths[0], generator=torch.Generator().manual_seed(9), dtype=D)
        assert torch.allclose(T.target.forward(T(theta), xt), land.net.forward(theta, xt), atol=1e-12)
        g = torch.func.grad(risk_fn(T.target, land.x, land.y))(T(theta))
        assert g.norm() < 1e-12


def test_random_compatible_bad_inputs():
    net = MLP((2, 3, 1), "sigmoid", output_bias=False)
    with pytest.raises(ValueError, match="sigma\\(b\\*\\) = 0"):
        saddles.random_compatible(net, [1], [1])
    assert saddles.random_compatible(net, [1], [0]).violations == []
    with pytest.raises(ValueError, match="one non-negative integer per hidden layer"):
        saddles.random_compatible(net, [1, 1], [0])
    with pytest.raises(ValueError, match="one non-negative integer per hidden layer"):
        saddles.random_compatible(net, [-1], [0])
    with pytest.raises(TypeError, match="integer"):
        saddles.random_compatible(net, [1.5], [0])
    with pytest.raises(TypeError, match="MLP"):
        saddles.random_compatible("net", [1], [0])


# ----------------------------------------------------------------------------- the atlas (Thm. 6.2)
def test_inertia_atlas_theorem_and_independent_inertia():
    land_a, th_a = point((2, 3, 2), "sigmoid", residual=1.0)
    land_b, th_b = point((3, 2, 3), "tanh", "cross_entropy", seed=1, std=1.0)
    Tq = splitting(land_b.net, 1, 0, 0.5)  # a degenerate point: the narrow Hessian has zero eigenvalues
    land_c = Landscape(Tq.target, land_b.x, land_b.y, "cross_entropy")
    points = [("a", land_a, th_a), ("b", land_b, th_b), ("c", land_c, Tq(th_b))]
    embeddings = [("split", lambda net: splitting(net, 1, 0, -0.4)), ("T_global", t_global),
                  ("random", lambda net: saddles.random_compatible(net, [1], [1], seed=3))]
    rows = saddles.inertia_atlas(points, embeddings)
    assert len(rows) == 9 and all(r.preserved for r in rows)
    assert max(r.sandwich for r in rows) < 1e-12 and max(r.kernel for r in rows) < 1e-12
    assert max(r.grad_wide for r in rows) < 1e-12 and all(r.margin > 0 for r in rows)
    assert rows[6].narrow.zero > 0  # the kernel check was exercised
    # one pair recomputed independently: inertia of the torch.func Hessian
    T = t_global(land_a.net)
    ind = inertia(hess(Landscape(T.target, land_a.x, land_a.y), T(th_a)))
    assert rows[1].wide[:3] == ind[:3] and rows[1].widths == T.target.widths
    table = saddles.format_atlas(rows)
    assert len(table.splitlines()) == 11 and "T_global" in table
    fig = saddles.plot_atlas(rows, lambda name: name.upper())
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(fig.axes) == 1 and labels == ["SPLIT", "T_GLOBAL", "RANDOM"]
    increments = torch.tensor([y for c in ax.collections for _, y in c.get_offsets()])
    assert increments.min() >= 0  # Thm. 6.2: no count decreases
    plt.close(fig)


def test_inertia_atlas_rejects_bad_factories():
    land, theta = point((2, 3, 2), "sigmoid")
    other = MLP((2, 4, 2), "sigmoid")
    with pytest.raises(ValueError, match="must return an Embedding"):
        saddles.inertia_atlas([("p", land, theta)], [("wrong net", lambda net: t_global(other))])
    with pytest.raises(ValueError, match="must return an Embedding"):
        saddles.inertia_atlas([("p", land, theta)], [("not an embedding", lambda net: None)])
    with pytest.raises(TypeError, match="Landscape"):
        saddles.inertia_atlas([("p", None, theta)], [("T", t_global)])


def test_margin_is_capped_at_the_round_off_floor():
    lam = torch.tensor([0.0, 1e-17, 1e-3, 1.0], dtype=D)
    assert saddles._margin(lam, 1e-8) == pytest.approx(5.0)
    assert saddles._margin(torch.tensor([-1e-6, 1.0], dtype=D), 1e-8) == pytest.approx(2.0)
    # log10(1 / 0.3): the zero eigenvalue 3e-9 is 0.3 tol
    assert saddles._margin(torch.tensor([3e-9, 1.0], dtype=D), 1e-8) == pytest.approx(0.5228787, rel=1e-6)


# ----------------------------------------------------------------------------- descent
def test_most_negative_direction_sign_and_value(two_layer):
    land, theta = two_layer
    T = splitting(land.net, 1, 0, 2.0)
    wide = Landscape(T.target, land.x, land.y)
    lam, v = saddles.most_negative_direction(wide, T(theta))
    ev = torch.linalg.eigvalsh(hess(wide, T(theta)))
    assert lam == pytest.approx(ev[0].item(), rel=1e-10) and lam < 0
    assert v.norm().item() == pytest.approx(1.0) and v[v.abs().argmax()] > 0
    assert torch.allclose(hess(wide, T(theta)) @ v, lam * v, atol=1e-10)


def test_descent_check_at_embedded_saddle(two_layer):
    land, theta = two_layer
    d = saddles.lemma61_direction(land, theta)
    wide = Landscape(d.embedding.target, land.x, land.y)
    tw = d.embedding(theta)
    H = hess(wide, tw)
    lam_vec = torch.linalg.eigh(H)
    lam, rows = saddles.descent_check(wide, tw, 3.0 * lam_vec[1][:, 0], [1e-1, 1e-2, 1e-3])
    assert lam == pytest.approx(lam_vec[0][0].item(), rel=1e-10) and lam < 0
    small = rows[-1]
    assert small.plus < 0 and small.minus < 0
    assert abs(small.plus / small.predicted - 1) < 1e-2 and abs(small.minus / small.predicted - 1) < 1e-2
    assert small.predicted == pytest.approx(lam * 1e-6 / 2)
    with pytest.raises(ValueError, match="nonzero"):
        saddles.descent_check(wide, tw, torch.zeros_like(tw), [1e-3])
    with pytest.raises(ValueError, match="entries"):
        saddles.descent_check(wide, tw, tw[:-1], [1e-3])
    with pytest.raises(ValueError, match="positive"):
        saddles.descent_check(wide, tw, tw, [-1e-3])
