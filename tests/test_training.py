"""train(): GD and Adam against autograd + torch.optim, batched runs against separate runs, logging,
precision, divergence and validation."""

import math

import numpy as np
import pytest
import torch

from embedding_principle.backprop import risk_and_grad
from embedding_principle.data import fig1_data
from embedding_principle.network import MLP
from embedding_principle.training import TrainResult, log_schedule, train


@pytest.fixture
def fig1():
    x, y = fig1_data()
    net = MLP((1, 3, 1), "tanh", output_bias=False)
    return net, x, y


def autograd_grad(net, theta, x, y, loss="mse"):
    t = theta.clone().requires_grad_(True)
    out = net.forward(t, x)
    risk = torch.nn.functional.mse_loss(out, y) if loss == "mse" else torch.nn.functional.cross_entropy(out, y)
    (g,) = torch.autograd.grad(risk, t)
    return risk.detach(), g


def test_one_gd_step_is_theta_minus_lr_grad(fig1):
    net, x, y = fig1
    theta0 = net.init(1, 0.3)
    res = train(net, x, y, theta0, lr=0.01, steps=1)
    risk, g = autograd_grad(net, theta0, x, y)
    torch.testing.assert_close(res.theta, theta0 - 0.01 * g, rtol=1e-14, atol=1e-16)
    assert res.steps.tolist() == [0, 1]
    assert res.loss[0] == pytest.approx(risk.item(), rel=1e-14)
    assert res.grad_norm[0] == pytest.approx(g.norm().item(), rel=1e-13)


def test_gd_trajectory_matches_autograd_loop():
    x, y = fig1_data()
    net = MLP((1, 4, 3, 1), "sigmoid", output_bias=True)
    theta0 = net.init(2, 0.5)
    res = train(net, x, y, theta0, lr=0.02, steps=60, snapshot_steps=[17, 60])
    theta = theta0.clone()
    for t in range(60):
        if t == 17:
            torch.testing.assert_close(res.snapshots[17], theta, rtol=1e-12, atol=1e-14)
        theta = theta - 0.02 * autograd_grad(net, theta, x, y)[1]
    torch.testing.assert_close(res.theta, theta, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(res.snapshots[60], theta, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer,lr", [("gd", 0.005), ("adam", 0.01)])
def test_batched_runs_equal_separate_runs(fig1, optimizer, lr):
    net, x, y = fig1
    theta0 = net.init(0, 3 ** -1.5, runs=6)
    batched = train(net, x, y, theta0, optimizer=optimizer, lr=lr, steps=400, snapshot_steps=[123])
    assert batched.theta.shape == (6, net.num_params) and batched.loss.shape == (len(batched.steps), 6)
    for r in range(6):
        single = train(net, x, y, theta0[r], optimizer=optimizer, lr=lr, steps=400, snapshot_steps=[123])
        assert single.theta.shape == (net.num_params,) and single.loss.shape == (len(single.steps),)
        torch.testing.assert_close(batched.theta[r], single.theta, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched.snapshots[123][r], single.snapshots[123], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(batched.loss[:, r], single.loss, rtol=1e-12)
        np.testing.assert_allclose(batched.grad_norm[:, r], single.grad_norm, rtol=1e-10, atol=1e-14)


def test_batched_deep_net_with_cross_entropy():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=gen)
    net = MLP((3, 5, 4, 3), "gelu")
    theta0 = net.init(3, 0.5, runs=3)
    batched = train(net, x, y, theta0, loss="cross_entropy", lr=0.1, steps=30)
    for r in range(3):
        theta = theta0[r].clone()
        for _ in range(30):
            theta -= 0.1 * autograd_grad(net, theta, x, y, "cross_entropy")[1]
        torch.testing.assert_close(batched.theta[r], theta, rtol=1e-12, atol=1e-13)


def test_adam_matches_torch_optim_adam():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    net = MLP((2, 6, 2), "tanh")
    theta0 = net.init(5, 0.4, runs=2)
    res = train(net, x, y, theta0, optimizer="adam", lr=0.02, steps=150)
    param = theta0.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=0.02)      # default betas and eps; elementwise, so per-run exact
    for _ in range(150):
        opt.zero_grad()
        ((net.forward(param, x) - y) ** 2).mean((-2, -1)).sum().backward()
        opt.step()
    torch.testing.assert_close(res.theta, param.detach(), rtol=1e-11, atol=1e-13)


def test_log_schedule_properties():
    for steps in [0, 1, 5, 99, 100, 1000, 12345, 300000]:
        s = log_schedule(steps)
        assert s[0] == 0 and s[-1] == steps and s.dtype == np.int64
        assert np.all(np.diff(s) > 0)
        if steps >= 10:
            assert len(s) <= 20 * math.log10(steps) + 3
            ratios = s[2:] / s[1:-1]                    # log-spaced: bounded ratios of consecutive points
            assert ratios.max() <= 2.0 + 1e-12
    s = log_schedule(300000)
    per_decade = [int(((s >= 10 ** k) & (s < 10 ** (k + 1))).sum()) for k in range(1, 5)]
    assert per_decade == [20, 20, 20, 20]                # 20 points in each full decade
    assert log_schedule(100, per_decade=4).tolist() == [0, 1, 2, 3, 6, 10, 18, 32, 56, 100]
    with pytest.raises(ValueError):
        log_schedule(-1)
    with pytest.raises(TypeError):
        log_schedule(10.0)


def test_logged_values_match_snapshots(fig1):
    """Loss and gradient norm logged at a step equal R_S and |grad R_S| at theta of that step."""
    net, x, y = fig1
    theta0 = net.init(3, 0.2, runs=2)
    res = train(net, x, y, theta0, lr=0.005, steps=300, log_points=[7, 150], snapshot_steps=[0, 7, 150, 300])
    assert res.steps.tolist() == [0, 7, 150, 300]
    for i, t in enumerate(res.steps):
        risk, grad = risk_and_grad(net, res.snapshots[int(t)], x, y)
        np.testing.assert_allclose(res.loss[i], risk.numpy(), rtol=1e-13)
        np.testing.assert_allclose(res.grad_norm[i], grad.norm(dim=-1).numpy(), rtol=1e-12)
    torch.testing.assert_close(res.snapshots[0], theta0)
    default = train(net, x, y, theta0, lr=0.005, steps=300)
    assert default.steps.tolist() == log_schedule(300).tolist()


def test_float32_option(fig1):
    net, x, y = fig1
    theta0 = net.init(0, 0.2)
    r64 = train(net, x, y, theta0, lr=0.005, steps=200)
    r32 = train(net, x, y, theta0, lr=0.005, steps=200, dtype=torch.float32)
    assert r32.theta.dtype == torch.float32 and r32.dtype == "float32" and r64.dtype == "float64"
    assert r32.loss.dtype == np.float32
    torch.testing.assert_close(r32.theta.double(), r64.theta, rtol=1e-4, atol=1e-5)


def test_theta0_untouched_and_zero_steps(fig1):
    net, x, y = fig1
    theta0 = net.init(0, 0.2)
    keep = theta0.clone()
    res = train(net, x, y, theta0, lr=0.005, steps=0, seed=11)
    torch.testing.assert_close(res.theta, keep, rtol=0, atol=0)
    assert res.steps.tolist() == [0] and res.loss.shape == (1,) and res.seed == 11
    train(net, x, y, theta0, lr=0.005, steps=10)
    assert torch.equal(theta0, keep)
    assert isinstance(res, TrainResult) and res.device == "cpu" and res.wall_time_s >= 0
    arrays = res.as_arrays()
    assert set(arrays) >= {"theta", "steps", "loss", "grad_norm"}


def test_divergence_raises_naming_the_step():
    """GD on a linear net with a huge learning rate blows up; the error names the first bad step."""
    x = torch.linspace(-1, 1, 10, dtype=torch.float64)[:, None]
    net = MLP((1, 2, 1), "identity")
    theta0 = net.init(0, 1.0, runs=3)
    theta, first_bad = theta0.clone(), None
    for t in range(2000):
        risk, grad = risk_and_grad(net, theta, x, 3 * x)
        if not torch.isfinite(risk).all():
            first_bad = t
            break
        theta -= 3.0 * grad
    assert first_bad is not None and first_bad > 1
    with pytest.raises(FloatingPointError, match=rf"at step {first_bad}\b"):
        train(net, x, 3 * x, theta0, lr=3.0, steps=2000, log_points=[])


def test_divergence_after_a_checkpoint_is_located_exactly():
    """A loss that turns infinite (finite gradients) between sparse checks: the replay finds the step."""
    x = torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None]
    y = torch.full((8, 1), 10.0, dtype=torch.float64)

    def capped(f, t):        # finite squared error while |f| < 5, infinite beyond (gradient stays finite)
        return ((f - t) ** 2).mean(-1) + torch.where(f.abs().amax(-1) > 5, math.inf, 0.0)

    net = MLP((1, 2, 1), "identity")
    theta0 = net.init(0, 0.1)
    theta, first_bad = theta0.clone(), None
    for t in range(4000):
        risk, grad = risk_and_grad(net, theta, x, y, capped)
        if not torch.isfinite(risk):
            first_bad = t
            break
        theta -= 1e-4 * grad
    assert first_bad is not None and 1000 < first_bad < 4000 and first_bad % 1000
    with pytest.raises(FloatingPointError, match=rf"infinite at step {first_bad}\b"):
        train(net, x, y, theta0, loss=capped, lr=1e-4, steps=4000, log_points=[])


def test_validation_errors(fig1):
    net, x, y = fig1
    theta0 = net.init(0, 0.2)
    ok = dict(lr=0.01, steps=3)
    for bad, err, msg in [
        (dict(lr=0.0), ValueError, "lr"), (dict(lr=-1.0), ValueError, "lr"), (dict(lr=math.nan), ValueError, "lr"),
        (dict(lr="0.1"), TypeError, "lr"), (dict(steps=-1), ValueError, "steps"), (dict(steps=2.5), TypeError, "steps"),
        (dict(optimizer="sgd"), ValueError, "optimizer"), (dict(dtype=torch.float16), ValueError, "dtype"),
        (dict(snapshot_steps=[4]), ValueError, "snapshot"), (dict(log_points=[1, 9]), ValueError, "log_points"),
        (dict(log_points=[0.5]), TypeError, "log_points"), (dict(device="nodevice"), ValueError, "device"),
    ]:
        with pytest.raises(err, match=msg):
            train(net, x, y, theta0, **{**ok, **bad})
    with pytest.raises(ValueError, match="last dimension"):
        train(net, x, y, theta0[:-1], **ok)
    with pytest.raises(ValueError, match=r"\(P,\) or \(R, P\)"):
        train(net, x, y, theta0.expand(2, 2, -1), **ok)
    with pytest.raises(ValueError, match="NaN"):
        train(net, x, y, theta0 * math.nan, **ok)
    with pytest.raises(ValueError, match="targets"):
        train(net, x, y[:-1], theta0, **ok)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_requested_without_gpu(fig1):
    net, x, y = fig1
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        train(net, x, y, net.init(0, 0.2), lr=0.01, steps=1, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(fig1):
    net, x, y = fig1
    theta0 = net.init(0, 3 ** -1.5, runs=4)
    cpu = train(net, x, y, theta0, lr=0.005, steps=500)
    gpu = train(net, x, y, theta0, lr=0.005, steps=500, device="cuda")
    assert gpu.device.startswith("cuda") and gpu.theta.device.type == "cpu"
    torch.testing.assert_close(gpu.theta, cpu.theta, rtol=1e-9, atol=1e-11)


def test_progress_bar_only_when_asked(fig1, capsys, monkeypatch):
    net, x, y = fig1
    theta0 = net.init(0, 0.2)
    monkeypatch.delenv("EP_PROGRESS", raising=False)
    train(net, x, y, theta0, lr=0.01, steps=50)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("EP_PROGRESS", "0")
    train(net, x, y, theta0, lr=0.01, steps=50)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("EP_PROGRESS", "1")
    train(net, x, y, theta0, lr=0.01, steps=50)
    assert "training" in capsys.readouterr().err
    train(net, x, y, theta0, lr=0.01, steps=50, progress=False)
    assert capsys.readouterr().err == ""
