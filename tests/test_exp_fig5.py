"""Tests of embedding_principle.experiments.fig5 (paper A Fig. 5, MNIST reduction).

References: torch.nn.MSELoss on softmax outputs and autograd through the whole network for the softmax-MSE
loss, the data loader for the input scaling, and small end-to-end runs of both experiments in a temporary
cache. The consistency check against the stored results runs in tests/test_reproducibility.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedding_principle import cache
from embedding_principle.backprop import risk_and_grad
from embedding_principle.data import mnist
from embedding_principle.experiments import fig5
from embedding_principle.experiments.fig5 import SOFTMAX_MSE, mnist_inputs, setup
from embedding_principle.network import MLP

D = torch.float64
TINY = {"width": 8, "n_train": 60, "steps": 40, "chosen_step": 30, "lr": 1e-3, "log_every": 10}


def test_softmax_mse_is_mseloss_of_softmax_with_exact_gradient():
    g = torch.Generator().manual_seed(0)
    f = 3 * torch.randn(6, 10, generator=g, dtype=D)
    y = torch.nn.functional.one_hot(torch.arange(6) % 10, 10).to(D)
    ref = torch.nn.MSELoss()(torch.softmax(f, -1), y)
    assert SOFTMAX_MSE(f, y).mean().item() == pytest.approx(ref.item(), rel=1e-14)
    v = f.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(SOFTMAX_MSE.value(v, y).sum(), v)
    assert torch.allclose(SOFTMAX_MSE.grad(f, y), auto, rtol=0, atol=1e-15)


def test_softmax_mse_gradient_through_the_network():
    net = MLP((5, 4, 3), "relu", output_bias=False)
    theta = net.init(1, 1.0)
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(2), dtype=D)
    y = torch.nn.functional.one_hot(torch.arange(9) % 3, 3).to(D)
    risk, grad = risk_and_grad(net, theta, x, y, SOFTMAX_MSE)
    t = theta.clone().requires_grad_(True)
    ref = torch.nn.MSELoss()(torch.softmax(net.forward(t, x), -1), y)
    (auto,) = torch.autograd.grad(ref, t)
    assert risk.item() == pytest.approx(ref.item(), rel=1e-14)
    assert torch.allclose(grad, auto, rtol=0, atol=1e-15)


def test_input_scaling_and_setup():
    split = mnist(n_train=10, n_test=5)
    assert torch.equal(mnist_inputs(split.x_train, "unit"), split.x_train)
    std = mnist_inputs(split.x_train, "standard")
    assert torch.allclose(std * 0.3081 + 0.1307, split.x_train, atol=1e-15)
    with pytest.raises(ValueError, match="scale"):
        mnist_inputs(split.x_train, "minmax")
    cfg = cache.lookup("fig5_mnist_training").resolve(TINY)
    net, x, y, x_test, labels = setup(cfg)
    assert net.widths == (784, 8, 10) and net.activation.name == "relu" and not net.output_bias
    assert x.shape == (60, 784) and y.shape == (60, 10) and x_test.shape == (4940, 784) and labels.shape == (4940,)
    with pytest.raises(ValueError, match="loss"):
        setup({**cfg, "loss": "hinge"})


def test_default_config_is_the_papers_protocol():
    cfg = fig5.TRAINING_DEFAULT
    assert (cfg["width"], cfg["n_train"], cfg["lr"], cfg["init_std_power"], cfg["threshold"]) == (400, 1000, 3e-5, 3.0, 0.9)
    assert cfg["loss"] == "mse" and cfg["chosen_step"] == 5000 and 100000 in cfg["trajectory_steps"]


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EP_DATA_DIR", str(tmp_path))
    return tmp_path


def test_tiny_training_and_reduction_runs(tiny_cache):
    red = cache.run("fig5_mnist_reduction", {"training": TINY, "retrain_steps": 20, "retrain_log_every": 5,
                                             "thresholds": [0.5, 0.9]})
    wide = cache.run("fig5_mnist_training", TINY)
    assert wide["trajectory"]["steps"].tolist() == [10, 30]                 # the trajectory steps <= steps
    assert wide["chosen"]["theta"].shape == (8 * 785 + 80,) and wide["chosen"]["theta"].dtype == np.float32
    assert wide["curve"]["loss"][0] == pytest.approx(0.1, rel=1e-3)         # f ~ 0 at a tiny init: mean(y^2) = 1/10
    assert (red["labels"] >= -1).all() and len(set(red["labels"][red["labels"] >= 0].tolist())) == red["width"]
    assert red["pairs"].sum() == red["n_test"] == 4940
    assert red["agreement"] == pytest.approx(np.trace(red["pairs"]) / red["n_test"])
    assert red["retrain"]["loss"][0] == pytest.approx(red["loss_reduced"], rel=1e-5)   # float32 restart of theta_redu
    by_t = red["sweep"]["width_by_threshold"]
    assert by_t[0] <= by_t[1] and by_t[1] == red["width"]                 # a lower threshold merges more


def test_chosen_step_must_lie_in_the_run(tiny_cache):
    with pytest.raises(ValueError, match="chosen_step"):
        cache.run("fig5_mnist_training", {**TINY, "chosen_step": 41})


def test_protocols_and_bad_protocol():
    assert set(fig5.PROTOCOLS) == {"mse", "softmax_mse"}
    for name in fig5.PROTOCOLS.values():
        loss = cache.lookup(name).resolve(None)["training"].get("loss", "mse")
        assert loss in fig5.LOSSES
    assert cache.lookup("fig5_mnist_reduction_softmax").resolve(None)["training"] == {"loss": "softmax_mse"}
    with pytest.raises(ValueError, match="protocol"):
        fig5.results("hinge")


def test_claims_statuses(monkeypatch):
    paper = dict(fig5.PAPER, plateau_ratio=1.2, drop_ratio=1.3, drop_step=250.0)
    monkeypatch.setattr(fig5, "measures", lambda protocol: dict(paper, agreement=0.985))
    claims = fig5.fig5_claims()
    assert len(claims) == 20 and {c.status for c in claims} == {"pass"}
    off = dict(paper, groups=300, agreement=0.97, chosen_loss=8e-5, plateau_ratio=5.0, drop_ratio=1.01)
    monkeypatch.setattr(fig5, "measures", lambda protocol: off)
    bad = {c.id.rsplit("-", 1)[0] for c in fig5.fig5_claims() if c.status == "deviation"}
    assert bad == {"A-Fig5-groups", "A-Fig5-agreement", "A-Fig5-chosen-loss", "A-Fig5-plateau", "A-Fig5-drop-epoch"}
