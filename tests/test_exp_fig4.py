"""Tests of the analysis helpers of paper A Fig. 4 (embedding_principle.experiments.fig4).

References: an independently written risk R_S = mean (sum_k a_k tanh(w_k x + b_k) - y)^2 differentiated by
torch.autograd (gradients and Hessians), the closed-form Hessian at theta = 0, and the theorems behind the
diagram (equal splitting keeps criticality and adds m - m_0 zero eigenvalues).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from embedding_principle import find_critical_point, train  # noqa: E402
from embedding_principle.clustering import neuron_set_distance  # noqa: E402
from embedding_principle.data import fig1_data  # noqa: E402
from embedding_principle.experiments import Claim  # noqa: E402
from embedding_principle.experiments import fig4  # noqa: E402
from embedding_principle.landscape import Landscape  # noqa: E402

D = torch.float64
X, Y = fig1_data()
W1_MIN = (0.0895, 0.0, 3.747)                                    # digest section 2c: the width-1 minimum
W2_MIN = ((0.155, -0.418, 2.342), (1.302, 9.336, 0.789))         # digest: the width-2 value 0.0698


def risk_by_hand(table: torch.Tensor) -> torch.Tensor:
    """R_S for rows [w, b, a], written independently of the library (MSE without 1/2, no output bias)."""
    f = (torch.tanh(X * table[:, 0] + table[:, 1]) * table[:, 2]).sum(1, keepdim=True)
    return ((f - Y) ** 2).mean()


def hessian_by_hand(table: np.ndarray) -> np.ndarray:
    t = torch.as_tensor(table, dtype=D)
    h = torch.autograd.functional.hessian(lambda v: risk_by_hand(v.reshape(-1, 3)), t.reshape(-1))
    return h.numpy()


def polished(table) -> tuple:
    net, theta = fig4.neurons_to_theta(np.array(table, dtype=float))
    cp = find_critical_point(Landscape(net, X, Y), theta)
    return net, cp.theta


def test_neurons_to_theta_round_trip_and_bad_input():
    table = np.array(W2_MIN)
    net, theta = fig4.neurons_to_theta(table)
    assert net == fig4.fig4_net(2)
    assert float(Landscape(net, X, Y).risk(theta)) == pytest.approx(float(risk_by_hand(torch.as_tensor(table))), rel=1e-14)
    for bad in (np.zeros((0, 3)), np.ones((2, 2)), np.ones(3)):
        with pytest.raises(ValueError, match="neuron table"):
            fig4.neurons_to_theta(bad)


def test_width1_minimum_is_unstable_for_gd_at_lr_0005_and_stable_at_half():
    net, theta = polished([W1_MIN])
    st = fig4.gd_stability(theta, 0.005)
    ev_ref = np.linalg.eigvalsh(hessian_by_hand(theta.numpy()[None, :]))      # one neuron: [w, b, a]
    assert st["lambda_max"] == pytest.approx(ev_ref.max(), rel=1e-10)
    assert st["threshold"] == 400.0 and st["lambda_max_half_mse"] < 400.0 < st["lambda_max"]
    assert (ev_ref > 0).all()                                              # a minimum of the width-1 net


def test_period_two_orbit_surrounds_the_minimum_and_its_midpoint_polishes_there():
    net, theta = polished([W1_MIN])
    start = theta + torch.tensor([0.0, 0.0, 0.05], dtype=D)
    res = train(net, X, Y, start, lr=0.005, steps=3000, snapshot_steps=[2998, 2999])
    a, b, c = res.snapshots[2998], res.snapshots[2999], res.theta
    assert torch.allclose(a, c, atol=1e-9, rtol=0) and (b - c).norm() > 5e-3          # period 2, not a fixed point
    assert res.grad_norm[-1] > 1.0                                                    # |grad| stays large
    _, vecs = torch.linalg.eigh(Landscape(net, X, Y).hessian(theta))
    v = vecs[:, -1]                                                                   # the unstable direction
    pb, pc = float((b - theta) @ v), float((c - theta) @ v)
    assert pb * pc < 0                                                                # the orbit straddles theta*
    mid = fig4.period_two_center(b, c)
    assert abs(float((mid - theta) @ v)) < 0.2 * min(abs(pb), abs(pc))               # the oscillation cancels
    cp = find_critical_point(Landscape(net, X, Y), mid)
    assert torch.allclose(cp.theta, theta, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="same shape"):
        fig4.period_two_center(torch.zeros(3), torch.zeros(6))


def test_embed_class_degeneracy_is_m_minus_m0_and_criticality_is_kept():
    for table, m0 in (([W1_MIN], 1), (W2_MIN, 2)):
        net, theta = polished(table)
        eff = np.stack([theta[:m0], theta[m0:2 * m0], theta[2 * m0:]], 1)      # rows [w, b, a]
        emb = fig4.embed_class(eff, 3)
        assert emb["split"] == list(range(m0))                          # every choice of the split neuron
        for th, g, inert in zip(emb["theta"], emb["grad_norm"], emb["inertia"]):
            assert g <= 1e-11
            assert inert[1] == 3 - m0                                   # paper A Fig. 4: degeneracy = m - m_0
            h = hessian_by_hand(np.stack([th[:3], th[3:6], th[6:]], 1))
            ev = np.linalg.eigvalsh(h)
            tol = 1e-8 * np.abs(ev).max()
            assert ((ev < -tol).sum(), (np.abs(ev) <= tol).sum(), (ev > tol).sum()) == inert
    with pytest.raises(ValueError, match="cannot embed"):
        fig4.embed_class(np.ones((4, 3)), 3)


def test_embed_class_of_the_zero_function_is_theta_zero_with_closed_form_inertia():
    emb = fig4.embed_class(np.zeros((0, 3)), 3)
    assert emb["split"] == [-1] and np.all(emb["theta"][0] == 0) and emb["grad_norm"][0] == 0.0
    # at theta = 0 each neuron's Hessian block is [[0, 0, c], [0, 0, 0], [c, 0, 0]] with c = -2 E[x y]
    c = -2 * float((X * Y).mean())
    assert np.allclose(np.sort(emb["spectrum"][0]), np.sort([c, c, c, -c, -c, -c, 0, 0, 0]), atol=1e-12)
    assert emb["inertia"][0] == (3, 3, 3)


def test_mirror_neurons_give_a_critical_point_with_the_same_loss():
    net, theta = polished(W2_MIN)
    table = np.stack([theta[:2], theta[2:4], theta[4:]], 1)
    mir = fig4.mirror_neurons(table)
    t = torch.tensor(mir, dtype=D, requires_grad=True)
    r = risk_by_hand(t)
    (g,) = torch.autograd.grad(r, t)
    assert r.item() == pytest.approx(float(risk_by_hand(torch.as_tensor(table))), rel=1e-13)
    assert g.norm() <= 1e-11
    assert neuron_set_distance(mir, table) > 0.5                          # a different point, not its own mirror
    assert neuron_set_distance(fig4.mirror_neurons(mir), fig4.mirror_neurons(fig4.mirror_neurons(table))) == 0.0
    assert fig4.mirror_neurons(np.zeros((0, 3))).shape == (0, 3)


def test_polish_batch_keeps_failures_and_refuses_bad_shapes():
    net = fig4.fig4_net(1)
    land = Landscape(net, X, Y)
    starts = torch.tensor([list(W1_MIN), [0.0895, 0.0, 3.747]], dtype=D)
    out = fig4.polish_batch(land, starts, 1e-12, 50)
    assert out["converged"].all() and out["theta"].shape == (2, 3) and (out["grad_norm"] <= 1e-12).all()
    fail = fig4.polish_batch(land, starts[:1], 1e-12, 0)                  # no iteration allowed
    assert not fail["converged"][0] and fail["iterations"][0] == 0
    with pytest.raises(ValueError, match=r"\(R, P\)"):
        fig4.polish_batch(land, starts[0], 1e-12, 5)


def _fake_results(config):
    """A results dict with known critical points: the width-1 minimum (width 1 and split in width 2), both
    width-2 minima (mirror pair), and one unconverged width-2 point."""
    net1, th1 = polished([W1_MIN])
    net2, th2 = polished(W2_MIN)
    b = net2.layer_slices[0][1]
    th2m = th2.clone()
    th2m[b] = -th2m[b]
    split = fig4.equal_split(net1, 1, 0, 2)(th1)

    def block(thetas, conv):
        g = [float(Landscape(fig4.fig4_net(len(t) // 3), X, Y).grad(t).norm()) for t in thetas]
        r = [float(Landscape(fig4.fig4_net(len(t) // 3), X, Y).risk(t)) for t in thetas]
        return {"polished": {"theta": torch.stack(thetas).numpy(), "converged": np.array(conv),
                             "risk": np.array(r), "grad_norm": np.array(g)}}

    return {"width_1": {"end": block([th1, -th1], [True, True])},
            "width_2": {"end": block([th2, th2m, split, th2 * 1.1], [True, True, True, False])}}


def test_collect_points_and_class_table_on_known_critical_points():
    config = {**fig4.DEFAULT_CONFIG, "widths": [1, 2], "grid": [-20.0, 20.0, 41]}
    pts = fig4.collect_points(_fake_results(config), config)
    assert pts["width"].tolist() == [1, 1, 2, 2, 2] and pts["output"].shape == (5, 41)
    t = fig4.class_table(pts, config)
    assert t["m0"].tolist() == [1, 2, 2] and t["loss"][0] == pytest.approx(0.109023, abs=1e-6)
    assert t["labels"].tolist() == [0, 0, 1, 2, 0]                        # the -theta run is the same point
    assert t["counts"][0].tolist() == [[2, 0], [1, 0]]                    # width 1: two runs; width 2: one run
    assert t["mirror"].tolist() == [0, 2, 1]                              # the width-1 point is its own mirror
    inert = [[tuple(int(i) for i in t["inertia3"][k, v]) for v in fig4.variants(t, k)] for k in range(3)]
    assert inert == [[(2, 2, 5)], [(1, 1, 7)] * 2, [(1, 1, 7)] * 2]       # degeneracy 3 - m_0; both splits
    assert t["narrow_inertia"].tolist()[1:] == [[0, 0, 6], [0, 0, 6]]      # width-2 minima
    fig, axes = plt.subplots(1, 4)
    fig4.draw_diagram(axes[0], t)
    fig4.draw_class_curves(axes[1:], t, pts["grid"], X, Y)
    plt.close(fig)


def test_claims_are_well_formed():
    got = fig4.fig4_claims()
    assert got and all(isinstance(c, Claim) for c in got)
    assert len({c.id for c in got}) == len(got)
    assert all(c.link.startswith(fig4.NOTEBOOK) for c in got)
