"""embedding_principle.experiments.fig1: registration, the width-3 reference, curve helpers, the kick, and a tiny
version of the protocol checked against separate single runs of train() (the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedding_principle import cache
from embedding_principle.data import fig1_data
from embedding_principle.experiments import fig1
from embedding_principle.landscape import Landscape
from embedding_principle.network import MLP
from embedding_principle.training import train

D = torch.float64
TINY = {**fig1.DEFAULT, "width": 6, "steps": 240, "seeds": [0, 1], "kick_epoch": 100, "kick_stds": [0.3, 0.03],
        "log_per_decade": 10, "snapshots_per_decade": 5, "curvature_per_decade": 2}


def test_registered_with_the_papers_protocol():
    for name, dtype in (("fig1_two_stages", "float64"), ("fig1_float32", "float32")):
        cfg = cache.lookup(name).default_config
        assert (cfg["width"], cfg["lr"], cfg["steps"], cfg["init_std_power"], cfg["activation"]) == \
            (500, 0.005, 300000, 1.5, "tanh")
        assert cfg["dtype"] == dtype and cfg["device"] == "cpu"
    assert fig1.FLOAT32["kick_stds"] == [] and fig1.DEFAULT["kick_stds"][0] == 0.3


def test_width3_target_is_the_data_function():
    net, theta = fig1.width3_target()
    x, y = fig1_data()
    grid = torch.linspace(-30, 30, 601, dtype=D)
    want = torch.tanh(grid + 7) + torch.tanh(grid) + torch.tanh(grid - 7)
    torch.testing.assert_close(net.forward(theta, grid[:, None])[:, 0], want, rtol=0, atol=1e-14)
    land = Landscape(net, x, y)
    assert land.risk(theta).item() <= 1e-28 and land.grad(theta).norm().item() <= 1e-14


def test_curve_helpers():
    steps, loss = np.array([0, 1, 10, 100, 1000]), np.array([5.0, 4.0, 0.5, 0.2, 0.1])
    assert fig1.first_step_below(steps, loss, 1.0) == 10 and fig1.first_step_below(steps, loss, 0.01) is None
    assert fig1.nearest_index(steps, 5000) == 4 and fig1.nearest_index(steps, 0) in (0, 1)
    assert fig1.nearest_index(steps, 40) == 3 and fig1.loss_at(steps, loss, 12) == 0.5
    assert fig1.run_label("literal", 2) == "literal_s2" and fig1.run_label("kick", 0.3) == "kick_0.3"
    with pytest.raises(ValueError):
        fig1.run_label("other", 1)


def test_kick_moves_only_the_hidden_biases():
    net = MLP((1, 50, 1), "tanh", output_bias=False)
    theta = net.init(0, 0.01)
    kicked = fig1._kicked(net, theta, [0.3, 0.03], seed=0)
    b = net.layer_slices[0][1]
    diff = kicked - theta
    mask = torch.zeros(net.num_params, dtype=torch.bool)
    mask[b] = True
    assert diff[:, ~mask].abs().max() == 0
    torch.testing.assert_close(diff[0, b], 10 * diff[1, b], rtol=1e-12, atol=0)
    assert 0.2 <= diff[0, b].std().item() <= 0.4


def test_schedules_hold_the_last_two_steps_and_the_kick():
    logs, snaps, curv = fig1._schedules(TINY)
    for arr in (logs, snaps):
        assert {0, 100, 239, 240} <= set(arr.tolist())
    assert set(curv.tolist()) <= set(snaps.tolist()) and {100, 239, 240} <= set(curv.tolist())
    logs_plain, _, _ = fig1._schedules({**TINY, "kick_stds": [], "kick_epoch": 123})
    assert set(logs_plain.tolist()) == set(fig1.log_schedule(240, 10).tolist()) | {239, 240}


@pytest.fixture(scope="module")
def tiny():
    return fig1._protocol(TINY)


def test_batched_runs_equal_separate_runs(tiny):
    x, y = fig1_data()
    net = MLP((1, 6, 1), "tanh", output_bias=False)
    for seed in TINY["seeds"]:
        rec = tiny["runs"][f"literal_s{seed}"]
        alone = train(net, x, y, net.init(seed, 6 ** -1.5), lr=0.005, steps=240, log_points=rec["steps"])
        np.testing.assert_allclose(rec["loss"], alone.loss, rtol=1e-13, atol=0)
        np.testing.assert_allclose(rec["theta_final"], alone.theta.numpy(), rtol=0, atol=1e-15)
    assert "snapshots" in tiny["runs"]["literal_s0"] and "snapshots" not in tiny["runs"]["literal_s1"]


def test_kicked_run_continues_the_first_seed(tiny):
    x, y = fig1_data()
    net = MLP((1, 6, 1), "tanh", output_bias=False)
    lit, kick = tiny["runs"]["literal_s0"], tiny["runs"]["kick_0.3"]
    pre = kick["steps"] < 100
    np.testing.assert_array_equal(kick["loss"][pre], lit["loss"][lit["steps"] < 100])
    start = train(net, x, y, net.init(0, 6 ** -1.5), lr=0.005, steps=100).theta
    kicked = fig1._kicked(net, start, [0.3], 0)[0]
    after = train(net, x, y, kicked, lr=0.005, steps=140, log_points=kick["steps"][~pre] - 100)
    np.testing.assert_allclose(kick["loss"][~pre], after.loss, rtol=1e-13, atol=0)
    assert kick["loss"][~pre][0] == pytest.approx(Landscape(net, x, y).risk(kicked).item(), rel=1e-14)
    snaps = kick["snapshots"]
    assert snaps.shape == (len(kick["snap_steps"]), net.num_params)
    np.testing.assert_allclose(snaps[list(kick["snap_steps"]).index(100)], kicked.numpy(), rtol=0, atol=1e-15)


def test_stored_measures_are_consistent(tiny):
    net = MLP((1, 6, 1), "tanh", output_bias=False)
    for rec in tiny["runs"].values():
        n = len(rec["snap_steps"])
        assert all(rec[k].shape == (n,) for k in ("snap_loss", "odd_distance", "bias_ratio", "even_part"))
        assert rec["odd_distance"][-1] == pytest.approx(np.linalg.norm(rec["theta_final"][6:12]))
        c = rec["curvature"]
        assert c["steps"][-1] == 240 and np.all(c["bias_min"] <= c["bias_max"]) and np.all(c["sharpness"] > 0)
    ref = tiny["references"]
    assert ref["width1"]["loss"] == pytest.approx(0.109023, abs=1e-6) and ref["width1"]["grad_norm"] <= 1e-12
    assert ref["width3"]["loss"] <= 1e-28
    assert tiny["wall_time_s"] > 0 and np.isfinite(tiny["train_wall_time_s"])
    with pytest.raises(ValueError, match="dtype"):
        fig1._setup({**TINY, "dtype": "float16"})
