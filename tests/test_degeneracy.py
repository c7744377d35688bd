"""Tests of embedding_principle.degeneracy against independent references.

References: gradients and Hessians of R_S by torch.func on a risk written here (not the Landscape class);
features by a torch.nn module (``to_torch``) for the span checks; hand-made matrices for span_residual;
the one-step embeddings composed by hand for the K-step builders; Cooper's count P - n for interpolating
global minima; and the theorems themselves (paper A Lemma 2 / Thm. 2, paper B Prop. 4.1, Thm. 6.2).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.func import grad, hessian  # noqa: E402

from embedding_principle.degeneracy import (Step, check_embedding, critical_data, degeneracy,  # noqa: E402
                                            degeneracy_sequence, distinct_critical_points, draw_nested_sets,
                                            draw_width_lattice, embed_steps, embedding_to, interpolating_minimum,
                                            jacobian_rank, null_caveat_gradient, null_lemma_residuals, span_residual,
                                            subspace_residuals)
from embedding_principle.embeddings import NULL, compose, critical_subspace, null, splitting  # noqa: E402
from embedding_principle.landscape import Landscape  # noqa: E402
from embedding_principle.network import MLP  # noqa: E402

D = torch.float64


def mse_risk(net, x, y):
    return lambda t: ((net.forward(t, x) - y) ** 2).mean()


def ce_risk(net, x, y):
    return lambda t: (torch.logsumexp(net.forward(t, x), -1) - (y * net.forward(t, x)).sum(-1)).mean()


NET3 = MLP((3, 3, 2, 1), "tanh")
NET4 = MLP((2, 3, 2, 2, 2), "sigmoid")


# ----------------------------------------------------------------------------- critical_data
@pytest.mark.parametrize("net,loss,risk", [(NET3, "mse", mse_risk), (NET4, "mse", mse_risk),
                                           (NET4, "cross_entropy", ce_risk),
                                           (MLP((2, 4, 1), "relu", output_bias=False), "mse", mse_risk)], ids=str)
def test_critical_data_makes_theta_exactly_critical_with_nonzero_loss(net, loss, risk):
    theta = net.init(1, 1.0)
    x, y = critical_data(net, theta, loss=loss, seed=2)
    R = risk(net, x, y)
    assert grad(R)(theta).norm() <= 1e-13 and R(theta) > 1e-3
    if loss == "cross_entropy":
        assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(len(y), dtype=D))
    assert x.shape == (net.num_params // (net.widths[-1] - (loss == "cross_entropy")) + 20, net.widths[0])


# ----------------------------------------------------------------------------- compositions
def test_embed_steps_and_embedding_to_match_hand_compositions():
    steps = [(1, 0, 0.3), (2, NULL, 0.7), (1, 3, -1.5)]
    Ts = embed_steps(NET3, steps)
    T1 = splitting(NET3, 1, 0, 0.3)
    T2 = null(T1.target, 2, 0.7)
    T3 = splitting(T2.target, 1, 3, -1.5)
    theta = NET3.init(3, 1.0)
    assert torch.equal(Ts[2](Ts[1](Ts[0](theta))), T3(T2(T1(theta))))
    assert Ts[-1].target.widths == (3, 5, 3, 1)
    assert Step(*steps[1]).describe() == "null T^0.7_(2,0)" and Step(*steps[0]).describe() == "split T^0.3_(1,0)"
    T = embedding_to(NET3, (3, 5, 4, 1), kind="mixed", alpha=0.4, bias=-0.2)
    hand = compose(*reversed(embed_steps(NET3, [(1, 0, 0.4), (1, NULL, -0.2), (2, 0, 0.4), (2, NULL, -0.2)])))
    assert T.K == 4 and torch.equal(T.A, hand.A) and torch.equal(T.c, hand.c)
    for kind in ("split", "null"):
        T = embedding_to(NET4, (2, 5, 2, 4, 2), kind=kind)
        assert T.target.widths == (2, 5, 2, 4, 2) and T.preserves_criticality


# ----------------------------------------------------------------------------- Def. 4.2 checks
def test_span_residual_hand_cases():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=D)
    assert span_residual(a, torch.tensor([[2.0], [3.0], [0.0]], dtype=D)) <= 1e-16
    assert span_residual(a, torch.tensor([[0.0], [0.0], [5.0]], dtype=D)) == pytest.approx(1.0)
    assert span_residual(a, torch.tensor([[1.0], [0.0], [1.0]], dtype=D)) == pytest.approx(2 ** -0.5)
    assert span_residual(a, torch.zeros(3, 1, dtype=D)) == 0.0


@pytest.mark.parametrize("net,loss", [(NET3, "mse"), (NET4, "cross_entropy"),
                                      (MLP((2, 3, 3, 1), "softplus", output_bias=False), "mse")], ids=str)
def test_check_embedding_on_compositions(net, loss):
    theta = net.init(4, 1.0)
    x, y = critical_data(net, theta, loss=loss, seed=5)
    steps = [(1, 0, 0.3), (1, NULL, 0.5), (net.L - 1, 1, 2.0), (1, 2, -0.7)]
    T = compose(*reversed(embed_steps(net, steps)))
    c = check_embedding(T, theta, x, y, loss=loss)
    assert c.flagged and c.output_gap <= 1e-13 and c.risk_gap <= 1e-13
    assert max(c.span_gaps) <= 1e-12 and c.grad_narrow <= 1e-13 and c.grad_wide <= 1e-13
    # an independent forward pass for the outputs
    assert torch.allclose(T.target.to_torch(T(theta))(x), net.to_torch(theta)(x), atol=1e-13)


def test_span_check_detects_a_changed_representation():
    """A wide theta whose extra neuron is *not* a copy: output kept (zero output column) but the span grows."""
    net = MLP((2, 2, 1), "tanh")
    theta = net.init(6, 1.0)
    x, y = critical_data(net, theta, seed=7)
    T = splitting(net, 1, 0, 0.0)
    c = check_embedding(T, theta, x, y)
    assert max(c.span_gaps) <= 1e-12
    wide = T(theta).clone()
    wide[4:6] = torch.tensor([0.9, -1.3], dtype=D)  # input row of the new neuron: no longer a copy
    fw = T.target.features(wide, x)[1]
    ones = torch.ones(len(x), 1, dtype=D)
    assert span_residual(torch.cat([net.features(theta, x)[1], ones], 1), torch.cat([fw, ones], 1)) > 1e-2


# ----------------------------------------------------------------------------- null steps (Lemma 4.1, Prop. 4.1)
@pytest.mark.parametrize("layer,alpha", [(1, 0.8), (2, -0.4), (2, 0.0)])
def test_null_lemma_residuals_vanish_and_are_sensitive(layer, alpha):
    theta = NET3.init(8, 1.0)
    gen = torch.Generator().manual_seed(9)
    x, y = torch.randn(9, 3, generator=gen, dtype=D), torch.randn(9, 1, generator=gen, dtype=D)
    T = null(NET3, layer, alpha)
    res = null_lemma_residuals(T, theta, x, y)
    assert max(res.values()) <= 1e-14
    T_split = splitting(NET3, layer, 0, 0.5)
    with pytest.raises(ValueError, match="one-step null embedding"):
        null_lemma_residuals(T_split, theta, x, y)


@pytest.mark.parametrize("act,alpha", [("tanh", 0.0), ("tanh", 1.0), ("sigmoid", 0.0), ("sigmoid", -2.0),
                                       ("softplus", 0.5)])
def test_null_caveat_gradient_matches_autograd(act, alpha):
    net = MLP((2, 3, 1), act, output_bias=False)
    theta = net.init(10, 1.0)
    x, y = critical_data(net, theta, seed=11)
    T = null(net, 1, alpha)
    g = grad(mse_risk(T.target, x, y))(T(theta))
    predicted = null_caveat_gradient(net, theta, x, y, alpha)
    assert abs(g.norm().item() - predicted) <= 1e-12 * max(1.0, predicted)
    new_output_weight = T.target.layer_slices[-1][0].stop - 1
    rest = torch.cat([g[:new_output_weight], g[new_output_weight + 1:]])
    assert rest.abs().max() <= 1e-14  # all the gradient sits in the new output weight
    assert T.preserves_criticality == (predicted <= 1e-12)
    if act == "tanh" and alpha == 0.0:
        assert predicted == 0.0
    else:
        assert predicted > 1e-6


# ----------------------------------------------------------------------------- Thm. 2 subspace
def test_subspace_residuals_small_on_the_subspace_large_off_it():
    theta = NET3.init(12, 1.0)
    x, y = critical_data(NET3, theta, seed=13)
    theta_B, V = critical_subspace(NET3, [(1, 0), (2, 1), (1, 3)], theta)
    wide = Landscape(MLP((3, 5, 3, 1), "tanh"), x, y)
    res = subspace_residuals(wide, theta_B, V, NET3, theta, points=20, scale=5.0, seed=1)
    assert res["grad"] <= 1e-11 and res["risk"] <= 1e-12 and res["output"] <= 1e-11 and res["coef"] > 5.0
    R = mse_risk(wide.net, x, y)
    gen = torch.Generator().manual_seed(2)
    off = V + 0.1 * torch.randn(V.shape, generator=gen, dtype=D)  # directions off the subspace
    assert subspace_residuals(wide, theta_B, off, NET3, theta, points=5)["grad"] > 1e-3
    assert grad(R)(theta_B).norm() <= 1e-13
    with pytest.raises(ValueError, match="V must have shape"):
        subspace_residuals(wide, theta_B, V.T, NET3, theta)


# ----------------------------------------------------------------------------- degeneracy
def test_degeneracy_sequence_matches_torch_func_and_the_theorems():
    net = MLP((3, 3, 3, 1), "tanh")
    theta = net.init(1, 2.0)
    x, y = critical_data(net, theta, n=3 * net.num_params + 20)
    steps = [(1, 0, 0.3), (2, NULL, 0.7), (2, 1, -0.5), (1, NULL, -0.4), (1, 2, 1.5)]
    rows = degeneracy_sequence(net, theta, x, y, steps)
    assert [r.widths for r in rows][-1] == (3, 6, 5, 1) and rows[0].description == "narrow"
    current, nets = theta, [net]
    for T in embed_steps(net, steps):
        current, nets = T(current), nets + [T.target]
    H = hessian(mse_risk(nets[-1], x, y))(current)  # independent Hessian of the last point
    ev = torch.linalg.eigvalsh(H)
    tol = 1e-8 * ev.abs().max()
    assert rows[-1].zero == int((ev.abs() <= tol).sum()) and rows[-1].negative == int((ev < -tol).sum())
    for before, after in zip(rows, rows[1:]):
        assert after.zero >= before.zero + 1  # each step adds a critical direction (Lemma 2; the null bias line)
        assert after.negative >= before.negative and after.positive >= before.positive  # paper B Thm. 6.2
        assert after.grad_norm <= 1e-13 and after.zero_max <= 1e-13 and after.nonzero_min >= 1e-7
    assert rows[-1].zero >= len(steps)


def test_interpolating_minimum_has_cooper_degeneracy():
    net = MLP((2, 6, 1), "tanh")
    x, y, theta = interpolating_minimum(net, n=10, seed=3)
    R = mse_risk(net, x, y)
    assert R(theta) == 0.0
    ev = torch.linalg.eigvalsh(hessian(R)(theta))
    zero = int((ev.abs() <= 1e-8 * ev.abs().max()).sum())
    assert zero == net.num_params - 10 and (ev >= -1e-12).all()


# ----------------------------------------------------------------------------- diagrams
def test_diagrams_draw_and_validate():
    fig, axes = plt.subplots(1, 2)
    draw_nested_sets(axes[0], 4)
    draw_width_lattice(axes[1], 3, 2)
    assert len(axes[0].patches) == 4
    assert len([t for t in axes[1].texts if t.get_text().startswith("$F^c")]) == 6
    assert len(axes[1].patches) == 7  # arrows (i,j)->(i+1,j): 2*2 and (i,j)->(i,j+1): 3*1
    plt.close(fig)
    with pytest.raises(ValueError, match="m must be a positive integer"):
        draw_nested_sets(plt.gca(), 0)
    with pytest.raises(ValueError, match="m2 must be a positive integer"):
        draw_width_lattice(plt.gca(), 2, 0)
    plt.close("all")


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("call,exc,match", [
    (lambda: critical_data("net", NET3.init(0, 1.0)), TypeError, "net must be an MLP"),
    (lambda: critical_data(NET3, NET3.init(0, 1.0), loss="hinge"), ValueError, "loss must be"),
    (lambda: critical_data(NET3, NET3.init(0, 1.0), loss="cross_entropy"), ValueError, "at least 2 outputs"),
    (lambda: critical_data(NET3, NET3.init(0, 1.0), n=0), ValueError, "n must be a positive integer"),
    (lambda: critical_data(NET3, NET3.init(0, 1.0), n=3), ValueError, "no residual orthogonal"),
    (lambda: critical_data(NET3, NET3.init(0, 1.0, runs=2)), ValueError, "not a batch"),
    (lambda: embed_steps(NET3, []), ValueError, "at least one step"),
    (lambda: embed_steps(NET3, [(1, 0)]), ValueError, "each step must be"),
    (lambda: embed_steps(NET3, [(3, 0, 0.5)]), ValueError, "hidden layer"),
    (lambda: embedding_to(NET3, (3, 3, 2, 1)), ValueError, "K-neuron wider"),
    (lambda: embedding_to(NET3, (3, 2, 4, 1)), ValueError, "K-neuron wider"),
    (lambda: embedding_to(NET3, (3, 4, 1)), ValueError, "depth, input and output"),
    (lambda: embedding_to(NET3, (3, 4, 2, 1), kind="random"), ValueError, "kind must be"),
    (lambda: check_embedding("T", NET3.init(0, 1.0), None, None), TypeError, "T must be an Embedding"),
    (lambda: interpolating_minimum(NET3, 0), ValueError, "n must be a positive integer"),
])
def test_bad_inputs_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_distinct_critical_points_merges_mirror_images_and_drops_failures():
    """Paper A Fig. 1 data, width 1: (w, b, a) and (-w, -b, -a) are one critical function (loss 0.109023)."""
    x = torch.linspace(-15, 15, 50, dtype=D)[:, None]
    y = torch.tanh(x + 7) + torch.tanh(x) + torch.tanh(x - 7)
    land = Landscape(MLP((1, 1, 1), "tanh", output_bias=False), x, y)
    starts = torch.tensor([[0.1, 0.0, 3.0], [-0.1, 0.0, -3.0]], dtype=D)
    cps = distinct_critical_points(land, starts, max_iter=30)
    assert len(cps) == 1 and cps[0].risk == pytest.approx(0.109023, abs=1e-6) and cps[0].grad_norm <= 1e-12
    assert distinct_critical_points(land, starts, max_iter=0) == []  # not converged: dropped


def test_degeneracy_counts_and_gap_on_a_known_spectrum():
    d = degeneracy(torch.tensor([-2.0, 1e-17, -3e-18, 1e-6, 4.0], dtype=D))
    assert (d.negative, d.zero, d.positive) == (1, 2, 2)
    assert d.zero_max == pytest.approx(1e-17 / 4) and d.nonzero_min == pytest.approx(1e-6 / 4)
    Q = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=D)).Q
    H = Q @ torch.diag(torch.tensor([-2.0, 0.0, 0.0, 1e-6, 4.0], dtype=D)) @ Q.T
    assert degeneracy(H)[:3] == (1, 2, 2)
    assert degeneracy(torch.zeros(3, dtype=D)).zero == 3


def test_jacobian_rank_against_hand_counts():
    """Two-layer ReLU net: each neuron's rescaling leaves f unchanged, so rank J <= P - m; a linear net (identity)
    computes an affine map of x, so rank J <= (m_0 + 1) m_L."""
    relu = MLP((3, 4, 1), "relu")
    theta = relu.init(0, 1.0)
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    assert jacobian_rank(relu, theta, x) == relu.num_params - 4
    lin = MLP((3, 4, 2), "identity")
    assert jacobian_rank(lin, lin.init(0, 1.0), x) == (3 + 1) * 2
    assert jacobian_rank(relu, theta, x[:5]) == 5  # at most n d' rows
