"""Tests of embedding_principle.clustering: classes of critical points modulo the symmetries of two-layer nets.

References: forward passes written out by hand (sum_k a_k sigma(w_k x + b_k)), the narrow parameters an
embedding started from, brute force over all permutations for the bottleneck distance, and synthetic point
clouds with known classes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from embedding_principle.clustering import (canonical_signs, cluster_critical_points, effective_neurons,
                                            neuron_set_distance, neuron_table)
from embedding_principle.embeddings import compose, equal_split, null, splitting
from embedding_principle.network import MLP

D = torch.float64


def by_hand(table: np.ndarray, x: np.ndarray, act=np.tanh) -> np.ndarray:
    """f(x) = sum_k a_k sigma(w_k . x + b_k) for a one-output neuron table [w (d), b, a]."""
    d = table.shape[1] - 2
    return (act(x @ table[:, :d].T + table[:, d]) * table[:, d + 1]).sum(1) if len(table) else np.zeros(len(x))


def xs(d=1, n=40, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * 3


def test_neuron_table_rows_and_batches():
    net = MLP((2, 3, 1), "tanh", output_bias=False)
    theta = net.init(0, 1.0, runs=4)
    t = neuron_table(net, theta)
    assert t.shape == (4, 3, 4)
    (W1, b1), (W2, _) = net.unflatten(theta[2])
    assert torch.equal(t[2, 1], torch.cat([W1[1], b1[1:2], W2[:, 1]]))
    with pytest.raises(ValueError, match="two-layer"):
        neuron_table(MLP((1, 2, 2, 1)), MLP((1, 2, 2, 1)).init(0, 1.0))
    with pytest.raises(TypeError):
        neuron_table("net", theta)


@pytest.mark.parametrize("net", [MLP((1, 4, 1), "tanh", output_bias=False), MLP((2, 3, 2), "tanh"),
                                 MLP((1, 3, 1), "identity", output_bias=False)], ids=repr)
def test_canonical_signs_keep_the_function_and_fix_the_sign(net):
    theta = net.init(3, 1.0, runs=5)
    c = canonical_signs(net, theta)
    x = torch.as_tensor(xs(net.widths[0]))
    assert torch.allclose(net.forward(c, x), net.forward(theta, x), atol=1e-13, rtol=0)
    assert (neuron_table(net, c)[..., 0] > 0).all()                       # first input weight decides
    assert torch.equal(canonical_signs(net, c), c)                        # idempotent
    if not net.output_bias:                                                # -theta flips every neuron at once
        assert torch.allclose(canonical_signs(net, -theta), c, atol=0, rtol=0)


def test_canonical_signs_leave_non_odd_activations_alone_and_use_later_entries():
    net = MLP((1, 2, 1), "sigmoid", output_bias=False)
    theta = net.init(0, 1.0)
    assert torch.equal(canonical_signs(net, theta), theta)
    tanh = MLP((1, 2, 1), "tanh", output_bias=False)
    # neuron 0: w = 0 so the bias decides; neuron 1: u = 0 so the output weight decides
    theta = tanh.flatten([(torch.tensor([[0.0], [0.0]], dtype=D), torch.tensor([-2.0, 0.0], dtype=D)),
                          (torch.tensor([[1.5, -0.5]], dtype=D), None)])
    t = neuron_table(tanh, canonical_signs(tanh, theta))
    assert t.tolist() == [[0.0, 2.0, -1.5], [0.0, 0.0, 0.5]]
    with pytest.raises(ValueError, match="tol"):
        canonical_signs(tanh, theta, tol=-1.0)


def _narrow_table():
    return np.array([[0.3, -1.2, 2.0], [1.1, 0.4, -0.7]])


def _theta_of(net, table):
    t = torch.as_tensor(table, dtype=D)
    return net.flatten([(t[:, :1], t[:, 1]), (t[:, 2][None, :], None)])


def test_effective_neurons_invert_splitting_null_neurons_sign_flips_and_permutations():
    narrow = MLP((1, 2, 1), "tanh", output_bias=False)
    theta = _theta_of(narrow, _narrow_table())
    T1 = splitting(narrow, 1, 0, 0.3)
    T = compose(null(equal_split(T1.target, 1, 1, 2).target, 1, 0.0), equal_split(T1.target, 1, 1, 2), T1)
    wide = T(theta)
    table = neuron_table(T.target, wide).numpy()
    table[[0, 2]] *= -1                                      # flip two neurons: the same function for odd tanh
    table = table[[3, 0, 4, 1, 2]]                           # and permute them
    wide_net = T.target
    flipped = _theta_of(wide_net, table)
    x = xs()
    want = by_hand(_narrow_table(), x)
    assert np.allclose(by_hand(table, x), want, atol=1e-13)  # the hand-made point computes the narrow function
    eff = effective_neurons(wide_net, flipped)
    expected = _narrow_table()                               # both w > 0 already: the canonical signs
    assert eff.shape == (2, 3)
    assert np.allclose(eff, expected[np.lexsort(expected.T[::-1])], atol=1e-14)
    assert np.allclose(by_hand(eff, x), want, atol=1e-13)


def test_effective_neurons_merge_opposite_copies_and_drop_cancelled_and_zero_neurons():
    net = MLP((1, 4, 1), "tanh", output_bias=False)
    # (w, b, a) and (-w, -b, a') are the same neuron with output a - a'; neurons 2, 3 cancel exactly;
    table = np.array([[0.5, 1.0, 2.0], [-0.5, -1.0, 0.5], [2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])
    eff = effective_neurons(net, _theta_of(net, table))
    assert np.allclose(eff, [[0.5, 1.0, 1.5]])
    assert np.allclose(by_hand(eff, xs()), by_hand(table, xs()), atol=1e-14)
    zero = np.array([[0.0, 0.0, 3.0], [1.0, 2.0, 0.0], [0.7, 0.1, 1e-9], [0.0, 0.0, 0.0]])  # tanh(0) = 0
    assert effective_neurons(net, _theta_of(net, zero)).shape == (0, 3)
    sig = MLP((1, 1, 1), "sigmoid", output_bias=False)      # sigmoid(0) = 1/2: a constant neuron is kept
    assert np.allclose(effective_neurons(sig, _theta_of(sig, np.array([[0.0, 0.0, 3.0]]))), [[0.0, 0.0, 3.0]])
    with pytest.raises(ValueError, match="one parameter vector"):
        effective_neurons(net, net.init(0, 1.0, runs=2))
    with pytest.raises(ValueError, match="tol"):
        effective_neurons(net, net.init(0, 1.0), tol=-1)


def test_effective_neurons_tolerance_is_relative_for_large_entries():
    net = MLP((1, 2, 1), "tanh", output_bias=False)
    big = np.array([[1.0, 7.0, 1.0], [1.0, 7.0 * (1 + 5e-7), 1.0]])       # relative gap 5e-7 < 1e-6: merged
    assert effective_neurons(net, _theta_of(net, big)).shape == (1, 3)
    far = np.array([[1.0, 7.0, 1.0], [1.0, 7.0 * (1 + 5e-6), 1.0]])
    assert effective_neurons(net, _theta_of(net, far)).shape == (2, 3)


def brute_bottleneck(A, B):
    gap = lambda a, b: float(np.max(np.abs(a - b) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))))  # noqa: E731
    return min(max(gap(A[i], B[p]) for i, p in enumerate(perm)) for perm in itertools.permutations(range(len(B))))


@pytest.mark.parametrize("seed", range(6))
def test_neuron_set_distance_is_the_bottleneck_over_permutations(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 6))
    A = rng.normal(size=(m, 3)) * rng.choice([0.1, 1.0, 10.0], size=(m, 3))
    B = A[rng.permutation(m)] + rng.normal(size=(m, 3)) * 10.0 ** rng.integers(-8, 0)
    assert neuron_set_distance(A, B) == pytest.approx(brute_bottleneck(A, B), rel=1e-12, abs=0)
    assert neuron_set_distance(A, A[::-1]) == 0.0
    assert neuron_set_distance(A, B) == neuron_set_distance(B, A)


def test_neuron_set_distance_edge_cases_and_bad_inputs():
    assert neuron_set_distance(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert neuron_set_distance(np.ones((2, 3)), np.ones((3, 3))) == float("inf")
    assert neuron_set_distance(np.zeros((0, 3)), np.ones((1, 3))) == float("inf")
    with pytest.raises(ValueError, match="2-D"):
        neuron_set_distance(np.ones(3), np.ones((1, 3)))
    with pytest.raises(ValueError, match="different networks"):
        neuron_set_distance(np.ones((2, 3)), np.ones((1, 4)))


def _cloud(seed=0):
    """Points of 3 known classes, each member permuted, sign-flipped and split differently."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-5, 5, 31)[:, None]
    classes = [np.array([[0.09, 0.0, 3.7]]), np.array([[0.2, 1.2, 1.6], [0.2, -1.2, 1.6]]),
               np.array([[1.0, 7.0, 1.0], [1.0, 0.0, 1.0], [1.0, -7.0, 1.0]])]
    losses = [0.109, 0.0896, 0.0]
    net = MLP((1, 3, 1), "tanh", output_bias=False)
    loss, out, neurons, truth = [], [], [], []
    for _ in range(12):
        c = int(rng.integers(3))
        table = classes[c].copy()
        while len(table) < 3:                                   # split a random neuron with a random share
            j, s = int(rng.integers(len(table))), rng.uniform(-1, 2)
            table = np.vstack([table, table[j] * [1, 1, s]])
            table[j, 2] *= 1 - s
        table *= rng.choice([-1.0, 1.0], size=(3, 1))
        table = table[rng.permutation(3)]
        loss.append(losses[c] + rng.normal() * 1e-12)
        out.append(by_hand(table, x))
        neurons.append(effective_neurons(net, _theta_of(net, table)))
        truth.append(c)
    return np.array(loss), np.array(out), neurons, np.array(truth)


def test_cluster_recovers_known_classes_ordered_by_decreasing_loss():
    loss, out, neurons, truth = _cloud()
    labels = cluster_critical_points(loss, out, neurons)
    assert labels.tolist() == truth.tolist()                    # truth is numbered by decreasing loss already
    assert [len(neurons[i]) for i in range(len(truth))] == [(1, 2, 3)[c] for c in truth]   # m_0 = 1, 2, 3


def test_cluster_separates_points_that_differ_in_one_criterion_only():
    loss, out, neurons, truth = _cloud(1)
    i = int(np.flatnonzero(truth == 0)[0])
    loss2 = loss.copy()
    loss2[i] += 1e-6                                            # same function and neurons, different loss
    assert len(np.unique(cluster_critical_points(loss2, out, neurons))) == len(np.unique(truth)) + 1
    out2 = out.copy()
    out2[i] += 1e-4                                             # different output only
    assert len(np.unique(cluster_critical_points(loss, out2, neurons))) == len(np.unique(truth)) + 1
    neurons2 = list(neurons)
    neurons2[i] = neurons[i] * [1, 1, 1 + 1e-3]                 # different neurons only
    assert len(np.unique(cluster_critical_points(loss, out, neurons2))) == len(np.unique(truth)) + 1


def test_cluster_bad_inputs():
    loss, out, neurons, _ = _cloud()
    with pytest.raises(ValueError, match="need loss"):
        cluster_critical_points(loss[:-1], out, neurons)
    with pytest.raises(ValueError, match="need loss"):
        cluster_critical_points(loss, out[:, 0], neurons)
    with pytest.raises(ValueError, match="finite"):
        cluster_critical_points(np.r_[loss[:-1], np.nan], out, neurons)
    with pytest.raises(ValueError, match="tolerances"):
        cluster_critical_points(loss, out, neurons, loss_tol=-1)
    assert cluster_critical_points(np.zeros(0), np.zeros((0, 5)), []).shape == (0,)
