"""Tests of embedding_principle.reduction: reduce() inverts critical embeddings and merges, drops, folds neurons.

References: the narrow parameters an embedding started from (reduce must recover them), forward passes
of the wide and reduced nets on fresh inputs, and paper A Fig. 5's output-weight formula
a_j = sum_k a_k ||w_k|| / ||w_j|| written out in the test.
"""

from __future__ import annotations

import pytest
import torch

from embedding_principle.embeddings import NULL, compose, equal_split, null, splitting, t_global, t_gn
from embedding_principle.network import MLP
from embedding_principle.reduction import Reduction, reduce

D = torch.float64
NET3 = MLP((2, 3, 2, 2), "tanh")


def x_test(d, n=13, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D)


def max_out_err(net_a, theta_a, net_b, theta_b, d):
    x = x_test(d)
    return (net_a.forward(theta_a, x) - net_b.forward(theta_b, x)).abs().max().item()


def _compatible(net):
    T1 = splitting(net, 1, 0, 0.4)
    T2 = splitting(T1.target, 1, net.widths[1], -1.5)  # splits the copy made by T1
    return [splitting(net, 2, 1, 0.3), null(net, 1, 0.8), equal_split(net, 1, net.widths[1] - 1, 3), t_global(net),
            t_gn(net, -0.4),
            compose(null(T2.target, 2, 0.0), T2, T1)]


@pytest.mark.parametrize("net", [NET3, MLP((2, 3, 2, 1), "sigmoid", output_bias=False), MLP((1, 2, 3, 2, 1), "relu")],
                         ids=repr)
def test_reduce_inverts_compatible_embeddings(net):
    theta = net.init(1, 1.0)
    for T in _compatible(net):
        R = reduce(T.target, T(theta))
        assert isinstance(R, Reduction) and R.net == net, T
        # copies are appended after the original neurons, so the reduced net is the narrow one itself
        assert torch.allclose(R.theta, theta, rtol=0, atol=1e-14)
        assert R.output_error <= 1e-13 and max_out_err(R.net, R.theta, T.target, T(theta), net.widths[0]) <= 1e-13
        assert R.parameter_error <= 1e-14  # the returned embedding maps theta_red back onto the wide theta
        assert R.embedding.source == net and R.embedding.target == T.target
        if T.preserves_criticality:
            assert R.embedding.violations == []


def test_groups_and_index_map_of_t_global():
    T = t_global(NET3)
    R = reduce(T.target, T(NET3.init(2, 1.0)))
    assert R.groups == (((0, 3, 6), (1, 4, 7), (2, 5, 8)), ((0, 2, 4), (1, 3, 5)))
    assert R.embedding.index_map == T.index_map
    assert torch.allclose(R.embedding.A, T.A) and torch.allclose(R.embedding.c, T.c)  # alpha recovered: beta = (1, 1, -1)


def test_permuted_copies_give_same_function_and_widths():
    theta = NET3.init(3, 1.0)
    T = equal_split(NET3, 1, 0, 2)
    wide, th = T.target, T(theta)
    layers = wide.unflatten(th)
    perm = torch.tensor([3, 1, 0, 2])  # move the copy to the front
    (W1, b1), (W2, b2), (W3, b3) = layers
    th_perm = wide.flatten([(W1[perm], b1[perm]), (W2[:, perm], b2), (W3, b3)])
    R = reduce(wide, th_perm)
    assert R.net == NET3 and R.output_error <= 1e-13 and R.parameter_error <= 1e-14
    assert R.groups[0] == ((0, 2), (1,), (3,))


def test_constant_neuron_folded_into_next_bias():
    net = MLP((2, 3, 1), "tanh")
    theta = net.init(4, 1.0)
    (W1, b1), (W2, b2) = net.unflatten(theta)
    W1[1] = 0.0  # neuron 1 is constant tanh(b1[1]) with a nonzero output weight
    theta = net.flatten([(W1, b1), (W2, b2)])
    R = reduce(net, theta)
    assert R.net.widths == (2, 2, 1) and R.groups == (((0,), (2,)),)
    (_, _), (W2r, b2r) = R.net.unflatten(R.theta)
    assert torch.allclose(b2r, b2 + torch.tanh(b1[1]) * W2[:, 1])
    assert R.output_error <= 1e-14 and R.parameter_error <= 1e-15
    assert R.embedding.index_map == ((0, NULL, 1),)
    # a folded neuron has nonzero output weights, so it is not a null neuron of Def. 5.2: the embedding back
    # keeps the output but is not critical (its input weights get the gradient E_S[e^[2] x] * a sigma'(b))
    text = " | ".join(R.embedding.violations)
    assert "Condition 1 (backward)" in text and "null wide neuron 1 of layer 1" in text and "they cancel" in text


def test_constant_neuron_kept_without_output_bias():
    net = MLP((2, 3, 1), "tanh", output_bias=False)
    theta = net.init(5, 1.0)
    (W1, b1), (W2, _) = net.unflatten(theta)
    W1[1] = 0.0
    R = reduce(net, net.flatten([(W1, b1), (W2, None)]))
    assert R.net == net and R.output_error == 0.0


def test_constant_hidden_neuron_folds_into_hidden_bias():
    net = MLP((1, 2, 2, 1), "tanh", output_bias=False)
    theta = net.init(6, 1.0)
    layers = [list(p) for p in net.unflatten(theta)]
    layers[0][0][0] = 0.0  # layer-1 neuron 0 is constant; its effect moves into b^[2]
    theta = net.flatten(layers)
    R = reduce(net, theta, x=x_test(1, 40))
    assert R.net.widths == (1, 1, 2, 1) and R.output_error <= 1e-14


def test_zero_output_neurons_are_dropped_even_with_nonzero_input_weights():
    net = MLP((2, 4, 1), "softplus")
    theta = net.init(7, 1.0)
    (W1, b1), (W2, b2) = net.unflatten(theta)
    W2[:, 3] = 0.0
    R = reduce(net, net.flatten([(W1, b1), (W2, b2)]))
    assert R.net.widths == (2, 3, 1) and R.output_error == 0.0 and R.parameter_error == 0.0
    # a dropped neuron with live input weights is not a null neuron of Def. 5.2: listed, not hidden
    assert any("Condition 1 (forward)" in v and "null neuron" in v for v in R.embedding.violations)


def test_exact_grouping_tolerance_is_scale_aware():
    net = MLP((1, 2, 1), "tanh")
    T = splitting(net, 1, 0, 0.5)
    for scale, delta, merged in [(1.0, 1e-10, True), (1.0, 1e-6, False), (1e4, 1e-6, True), (1e4, 1e-3, False)]:
        theta = torch.tensor([scale, -0.3, 0.2, 0.1, 1.0, 2.0, 0.0], dtype=D)
        th = T(theta)
        th[2] += delta  # the copy's input weight differs by delta
        R = reduce(T.target, th, tol=1e-8)
        assert (R.net.widths[1] == 2) is merged, (scale, delta)
        if merged:
            assert R.parameter_error <= 2 * delta


def test_dead_layer_keeps_one_neuron():
    net = MLP((2, 3, 1), "tanh")
    theta = net.init(8, 1.0)
    (W1, b1), (W2, b2) = net.unflatten(theta)
    R = reduce(net, net.flatten([(W1, b1), (torch.zeros_like(W2), b2)]))
    assert R.net.widths == (2, 1, 1) and R.output_error == 0.0


def test_irreducible_net_is_returned_unchanged():
    net = MLP((3, 4, 3, 2), "gelu")
    theta = net.init(9, 1.0)
    R = reduce(net, theta)
    assert R.net == net and torch.equal(R.theta, theta) and R.embedding.K == 0 and R.embedding.violations == []


def test_output_error_uses_given_inputs():
    net = MLP((1, 3, 1), "tanh")
    theta = net.init(10, 1.0)
    (W1, b1), (W2, b2) = net.unflatten(theta)
    W1[2], b1[2] = W1[0] + 1e-9, b1[0]  # within tol of neuron 0: merged, a tiny function change
    theta = net.flatten([(W1, b1), (W2, b2)])
    x = torch.linspace(-3, 3, 31, dtype=D)[:, None]
    R = reduce(net, theta, x=x)
    assert R.net.widths == (1, 2, 1)
    assert R.output_error == pytest.approx((net.forward(theta, x) - R.net.forward(R.theta, x)).abs().max().item(), abs=1e-18)
    assert 0 < R.output_error < 1e-8  # the merged copy differed by 1e-9


# ----------------------------------------------------------------------------- cosine mode (paper A Fig. 5)
def _relu_wide(output_columns):
    """A 3-4-2 ReLU net widened by neurons 4, 5: positively rescaled copies (2.5x neuron 0, 0.4x neuron 2)."""
    net = MLP((3, 4, 2), "relu", output_bias=False)
    theta = net.init(11, 1.0)
    (W1, b1), (W2, _) = net.unflatten(theta)
    W1w = torch.cat([W1, 2.5 * W1[[0]], 0.4 * W1[[2]]])
    b1w = torch.cat([b1, 2.5 * b1[[0]], 0.4 * b1[[2]]])
    wide = net.with_widths((3, 6, 2))
    return net, theta, wide, wide.flatten([(W1w, b1w), (output_columns(W2), None)])


def test_cosine_reduction_inverts_a_rescaled_splitting():
    # split neurons 0 and 2 with shares 0.3 / 0.6, then rescale the copies (S^beta, paper A App. A.1)
    split = lambda W2: torch.cat([W2 * torch.tensor([0.7, 1, 0.4, 1], dtype=D),  # noqa: E731
                                  0.3 * W2[:, [0]] / 2.5, 0.6 * W2[:, [2]] / 0.4], 1)
    net, theta, wide, theta_w = _relu_wide(split)
    R = reduce(wide, theta_w, similarity="cosine", threshold=0.99)
    assert R.net == net and torch.allclose(R.theta, theta, atol=1e-14)
    assert R.output_error <= 1e-13 and R.groups == (((0, 4), (1,), (2, 5), (3,)),)
    assert R.embedding.violations == []  # a rescaled splitting embedding: Conditions 1-2 hold for the alpha found


def test_cosine_reduction_output_weights_follow_paper_formula():
    extra_columns = torch.randn(2, 2, generator=torch.Generator().manual_seed(12), dtype=D)
    extra = lambda W2: torch.cat([W2, extra_columns], 1)  # noqa: E731
    net, _, wide, theta = _relu_wide(extra)
    R = reduce(wide, theta, similarity="cosine", threshold=0.99)
    assert R.net.widths == (3, 4, 2)
    assert R.output_error <= 1e-13 and max_out_err(wide, theta, R.net, R.theta, 3) <= 1e-13
    (W1, b1), (W2, _) = wide.unflatten(theta)
    w = torch.cat([W1, b1[:, None]], 1).norm(dim=1)  # ||w_k|| including the bias, as x~ = [x; 1]
    (_, _), (W2r, _) = R.net.unflatten(R.theta)
    for r, group in enumerate(R.groups[0]):
        j = group[0]
        expected = sum(W2[:, k] * w[k] for k in group) / w[j]  # a_j = sum_k a_k ||w_k|| / ||w_j||
        assert torch.allclose(W2r[:, r], expected, atol=1e-14)
    assert sorted(map(sorted, R.groups[0])) == [[0, 4], [1], [2, 5], [3]]
    # copies with non-proportional output columns (2 outputs): the same function, but no critical embedding
    assert any(v.startswith("Condition 1 (backward)") for v in R.embedding.violations)


def test_cosine_threshold_and_low_amplitude():
    net = MLP((2, 3, 1), "relu")
    W1 = torch.tensor([[1.0, 0.0], [0.95, 0.3122], [0.0, 1.0]], dtype=D)  # cos(0, 1) ~ 0.95 (biases 0)
    W2 = torch.tensor([[1.0, 1.0, 1e-6]], dtype=D)  # neuron 2 has a low amplitude
    theta = net.flatten([(W1, torch.zeros(3, dtype=D)), (W2, torch.zeros(1, dtype=D))])
    assert reduce(net, theta, similarity="cosine", threshold=0.9).net.widths == (2, 1, 1)  # 0+1 merged, 2 dropped
    assert reduce(net, theta, similarity="cosine", threshold=0.99).net.widths == (2, 2, 1)
    assert reduce(net, theta, similarity="cosine", threshold=0.99, amplitude_tol=0.0).net.widths == (2, 3, 1)


def test_cosine_mode_round_trip_of_splitting_on_relu():
    net = MLP((2, 3, 3, 2), "relu")
    theta = net.init(13, 1.0)
    T = compose(splitting(MLP((2, 4, 3, 2), "relu"), 2, 0, 0.25), equal_split(net, 1, 1, 2))
    R = reduce(T.target, T(theta), similarity="cosine", threshold=0.999999, amplitude_tol=0.0)
    assert R.net == net and R.output_error <= 1e-13 and R.parameter_error <= 1e-14


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(tol=-1e-8), ValueError, r"tol must be non-negative, got -1e-08"),
    (dict(tol=float("nan")), TypeError, r"tol must be a finite real number"),
    (dict(similarity="cosine"), ValueError, r"cosine reduction needs a positively homogeneous activation.*'tanh'"),
    (dict(similarity="euclid"), ValueError, r"similarity must be 'exact' or 'cosine'"),
    (dict(theta=torch.zeros(3)), ValueError, r"needs a last dimension of 10 parameters"),
    (dict(theta=torch.zeros(2, 10)), ValueError, r"one parameter vector, not a batch"),
    (dict(x=torch.zeros(5, 3)), ValueError, r"expected \(n, 1\) inputs"),
    (dict(net="1-3-1"), TypeError, r"net must be an MLP"),
    (dict(n_probe=0), ValueError, r"n_probe must be >= 1"),
])
def test_bad_inputs(kwargs, exc, match):
    net = kwargs.pop("net", MLP((1, 3, 1), "tanh"))
    theta = kwargs.pop("theta", torch.zeros(10, dtype=D))
    with pytest.raises(exc, match=match):
        reduce(net, theta, **kwargs)


@pytest.mark.parametrize("kwargs,match", [(dict(threshold=0.0), r"threshold .* must be in \(0, 1\]"),
                                          (dict(threshold=1.5), r"threshold"),
                                          (dict(amplitude_tol=1.0), r"amplitude_tol must be in \[0, 1\)")])
def test_bad_cosine_options(kwargs, match):
    net = MLP((1, 3, 1), "relu")
    with pytest.raises(ValueError, match=match):
        reduce(net, net.init(0, 1.0), similarity="cosine", **kwargs)
