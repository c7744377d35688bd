"""Tests of embedding_principle.condensation against independent references.

References: amplitudes and input weights written out from the layer blocks, numpy/scipy cosine distances,
np.histogram2d for prediction pairs, and loss curves with a known plateau and drop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from embedding_principle.condensation import (amplitudes, cosine_similarity, dead_neurons, effective_width, group_labels,
                                              first_drop, group_order, input_weights, plateau_ratio,
                                              prediction_pairs)
from embedding_principle.network import MLP

D = torch.float64


def condensed_net(seed: int = 0):
    """A 5-12-3 ReLU net: 3 directions, each carried by 3 neurons with positive rescalings, plus 3 tiny neurons."""
    g = torch.Generator().manual_seed(seed)
    net = MLP((5, 12, 3), "relu", output_bias=False)
    dirs = torch.randn(3, 6, generator=g, dtype=D)
    U = torch.cat([dirs.repeat_interleave(3, 0) * torch.rand(9, 1, generator=g, dtype=D).add(0.5),
                   1e-9 * torch.randn(3, 6, generator=g, dtype=D)])
    W2 = torch.randn(3, 12, generator=g, dtype=D)
    theta = net.flatten([(U[:, :5], U[:, 5]), (W2, None)])
    return net, theta, U, W2


def test_input_weights_and_amplitudes_match_the_blocks():
    net, theta, U, W2 = condensed_net()
    assert torch.equal(input_weights(net, theta), U)
    want = np.array([np.linalg.norm(W2[:, k]) * np.linalg.norm(U[k]) for k in range(12)])
    assert np.allclose(amplitudes(net, theta).numpy(), want, rtol=1e-14, atol=0)


def test_two_layer_only_and_bad_theta():
    with pytest.raises(ValueError, match="two-layer"):
        amplitudes(MLP((2, 3, 3, 1), "relu"), torch.zeros(MLP((2, 3, 3, 1), "relu").num_params))
    net = MLP((2, 3, 1), "relu")
    with pytest.raises(ValueError):
        input_weights(net, torch.zeros(net.num_params + 1))
    with pytest.raises(ValueError, match="batch"):
        input_weights(net, torch.zeros(2, net.num_params))
    with pytest.raises(TypeError):
        amplitudes("net", torch.zeros(3))


def test_dead_neurons_get_no_gradient():
    from embedding_principle.backprop import risk_and_grad

    net = MLP((3, 4, 2), "relu", output_bias=False)
    W1 = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]], dtype=D)
    b1 = torch.tensor([0.0, -0.5, 0.1, 0.0], dtype=D)
    theta = net.flatten([(W1, b1), (torch.ones(2, 4, dtype=D), None)])
    x = torch.rand(20, 3, generator=torch.Generator().manual_seed(0), dtype=D)       # x >= 0, like pixels
    dead = dead_neurons(net, theta, x)
    assert dead.tolist() == [False, True, False, True]
    y = torch.randn(20, 2, generator=torch.Generator().manual_seed(1), dtype=D)
    (gW1, gb1), (gW2, _) = net.unflatten(risk_and_grad(net, theta, x, y)[1])
    assert torch.all(gW1[dead] == 0) and torch.all(gb1[dead] == 0) and torch.all(gW2[:, dead] == 0)
    assert torch.all(gW2[:, ~dead] != 0)
    with pytest.raises(ValueError, match="ReLU"):
        dead_neurons(MLP((3, 4, 2), "tanh"), MLP((3, 4, 2), "tanh").init(0, 1.0), x)
    with pytest.raises(ValueError):
        dead_neurons(net, theta, x[:, :2])


def test_cosine_similarity_against_scipy():
    U = np.random.default_rng(0).normal(size=(7, 4))
    U[3] = 0.0
    C = cosine_similarity(U).numpy()
    ref = 1 - cdist(U, U, metric="cosine")
    mask = np.ones_like(C, dtype=bool)
    mask[3, :] = mask[:, 3] = False
    assert np.allclose(C[mask], ref[mask], atol=1e-14)
    assert np.all(C[3] == 0) and np.all(C[:, 3] == 0)
    with pytest.raises(ValueError):
        cosine_similarity(np.zeros(3))
    with pytest.raises(ValueError):
        cosine_similarity(np.array([[1.0, np.nan]]))


def test_effective_width_counts_directions_and_drops_tiny_neurons():
    net, theta, _, _ = condensed_net()
    assert effective_width(net, theta, threshold=0.99, amplitude_tol=1e-3) == 3
    assert effective_width(net, theta, threshold=0.99, amplitude_tol=0.0) == 6   # tiny neurons kept: random directions


def test_group_labels_and_order():
    labels = group_labels([(0, 4), (2,), (1, 3)], 6)
    assert labels.tolist() == [0, 2, 1, 2, 0, -1]
    amp = np.array([1.0, 5.0, 0.5, 4.0, 2.0, 9.0])
    order = group_order(labels, amp)
    assert sorted(order.tolist()) == list(range(6))
    # totals: group 2 = 9, group 0 = 3, group 1 = 0.5; dropped neuron 5 last despite its amplitude
    assert order.tolist() == [1, 3, 4, 0, 2, 5]
    with pytest.raises(ValueError, match="disjoint"):
        group_labels([(0, 1), (1,)], 3)
    with pytest.raises(ValueError, match="outside"):
        group_labels([(0, 3)], 3)
    with pytest.raises(ValueError):
        group_order(labels, amp[:-1])
    with pytest.raises(ValueError):
        group_order(np.array([0, -2]), np.ones(2))


def test_group_order_without_groups():
    assert group_order(np.array([-1, -1, -1]), np.array([1.0, 3.0, 2.0])).tolist() == [1, 2, 0]


def test_prediction_pairs_against_histogram2d():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, 200)
    b = np.where(rng.random(200) < 0.8, a, rng.integers(0, 4, 200))
    agree, counts = prediction_pairs(a, b, 4)
    ref, _, _ = np.histogram2d(a, b, bins=[np.arange(5)] * 2)
    assert np.array_equal(counts, ref.astype(int)) and agree == pytest.approx(np.mean(a == b), abs=0)
    with pytest.raises(ValueError):
        prediction_pairs(a, b[:-1], 4)
    with pytest.raises(ValueError):
        prediction_pairs(a, b, 3)
    with pytest.raises(TypeError):
        prediction_pairs(a.astype(float), b, 4)


def test_plateau_ratio_and_first_drop_on_a_known_curve():
    steps = np.arange(0, 1001, 5)
    # slow decay, a jump by 2 at epoch 300, slow decay, a jump by 3 at epoch 800
    loss = 1e-3 * np.exp(-steps / 5000) / np.where(steps < 300, 1, 2) / np.where(steps < 800, 1, 3)
    t, ratio = first_drop(steps, loss, 25)
    # a window [t - 25, t + 25] that straddles the jump at 300: L(t-25)/L(t+25) = 2 exp(50/5000) for every such t
    assert 275 <= t <= 320 and ratio == pytest.approx(2 * np.exp(50 / 5000), rel=1e-9)
    t2, ratio2 = first_drop(steps, loss, 25, start=400)             # the later, larger jump
    assert 775 <= t2 <= 820 and ratio2 == pytest.approx(3 * np.exp(50 / 5000), rel=1e-9)
    flat_t, flat_ratio = first_drop(steps, np.exp(-steps / 5000), 25)   # no drop: the steepest point, ratio < 1.1
    assert flat_ratio == pytest.approx(np.exp(50 / 5000), rel=1e-9) and 25 <= flat_t <= 975
    assert plateau_ratio(steps, loss, 150, 100) == pytest.approx(np.exp(200 / 5000), rel=1e-12)
    assert plateau_ratio(steps, loss, 300, 100) == pytest.approx(2 * np.exp(200 / 5000), rel=1e-12)
    with pytest.raises(ValueError):
        plateau_ratio(steps, loss, 50, 100)                       # window leaves the logged range
    with pytest.raises(ValueError):
        first_drop(steps, loss, 600)
    with pytest.raises(ValueError):
        first_drop(steps, loss, 25, min_ratio=1.0)
    with pytest.raises(ValueError):
        first_drop(steps[::-1], loss, 25)
    with pytest.raises(ValueError):
        plateau_ratio(steps, -loss, 500, 10)
