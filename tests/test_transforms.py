"""Tests of embedding_principle.transforms (paper A App. A.1) against independent references.

References: parameter vectors written out by hand; torch.nn modules built from the permuted or rescaled
weights (a second forward pass); gradients and Hessians of R_S by torch.func on a risk written here;
central finite differences of beta -> S^beta theta for the tangent; exact critical points obtained by
choosing targets y = f_theta(x) - r with r orthogonal to the output Jacobian.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian

from embedding_principle.degeneracy import critical_data
from embedding_principle.network import MLP, Activation
from embedding_principle.transforms import (homogeneity_degree, min_abs_preactivation, permute, rescale,
                                           rescale_tangent, rescale_tangents)

D = torch.float64


def risk(net, x, y):
    return lambda t: ((net.forward(t, x) - y) ** 2).mean()


def exact_critical_data(net, theta, seed=0):
    """Inputs x and targets y making theta an exact critical point of the MSE risk (nonzero loss): the library's
    construction (tested in test_representation / test_degeneracy) on n = 2 P / d' + 10 samples."""
    return critical_data(net, theta, n=2 * net.num_params // net.widths[-1] + 10, seed=seed)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


LEAKY = Activation("leaky", lambda u: torch.where(u > 0, u, 0.1 * u))
SQUARED = Activation("relu2", lambda u: torch.relu(u) ** 2)


# ----------------------------------------------------------------------------- hand-computed cases
def test_permute_hand_computed_1_2_1():
    net = MLP((1, 2, 1), "tanh")
    theta = torch.tensor([1.5, -2.0, 0.25, 0.75, 3.0, -4.0, 0.5], dtype=D)  # w0 w1 c0 c1 a0 a1 d
    expected = torch.tensor([-2.0, 1.5, 0.75, 0.25, -4.0, 3.0, 0.5], dtype=D)
    assert torch.equal(permute(net, theta, 1, [1, 0]), expected)


def test_rescale_hand_computed_relu_and_squared_relu():
    theta = torch.tensor([1.5, -2.0, 0.25, 0.75, 3.0, -4.0, 0.5], dtype=D)
    out = rescale(MLP((1, 2, 1), "relu"), theta, 1, 1, 2.0)
    assert torch.equal(out, torch.tensor([1.5, -4.0, 0.25, 1.5, 3.0, -2.0, 0.5], dtype=D))
    out = rescale(MLP((1, 2, 1), SQUARED), theta, 1, 0, 2.0)  # p = 2: output weight / 4
    assert torch.equal(out, torch.tensor([3.0, -2.0, 0.5, 0.75, 0.75, -4.0, 0.5], dtype=D))


# ----------------------------------------------------------------------------- output unchanged
@pytest.mark.parametrize("net,layer,perm", [
    (MLP((2, 3, 1), "tanh"), 1, [2, 0, 1]),
    (MLP((3, 4, 3, 2), "sigmoid", output_bias=False), 2, [1, 2, 0]),
    (MLP((3, 4, 3, 2), "relu"), 1, torch.tensor([3, 1, 0, 2])),
], ids=repr)
def test_permute_keeps_the_function_by_a_torch_module(net, layer, perm):
    theta = net.init(1, 1.0)
    x = torch.randn(13, net.widths[0], generator=torch.Generator().manual_seed(2), dtype=D)
    reference = net.to_torch(theta)(x)  # an nn.Sequential, a second implementation of the forward pass
    permuted = net.to_torch(permute(net, theta, layer, perm))
    assert rel(permuted(x).detach(), reference.detach()) <= 1e-15
    W = net.unflatten(theta)[layer - 1][0]
    assert torch.equal(net.unflatten(permute(net, theta, layer, perm))[layer - 1][0], W[torch.as_tensor(perm)])


@pytest.mark.parametrize("net", [MLP((2, 3, 1), "relu"), MLP((3, 4, 3, 2), "relu", output_bias=False),
                                 MLP((2, 3, 2, 1), "identity"), MLP((2, 3, 1), LEAKY), MLP((2, 3, 1), SQUARED)],
                         ids=repr)
def test_rescale_keeps_the_function_for_homogeneous_activations(net):
    theta = net.init(3, 1.0)
    x = torch.randn(17, net.widths[0], generator=torch.Generator().manual_seed(4), dtype=D)
    ref = net.forward(theta, x)
    for layer in range(1, net.L):
        for beta in (0.05, 0.7, 3.0, 40.0):
            out = rescale(net, theta, layer, net.widths[layer] - 1, beta)
            assert rel(net.forward(out, x), ref) <= 1e-13
            assert not torch.equal(out, theta)


def test_rescale_is_a_group_action_and_permute_has_an_inverse():
    net = MLP((2, 3, 2, 1), "relu")
    theta = net.init(5, 1.0)
    two = rescale(net, rescale(net, theta, 1, 2, 3.0), 1, 2, 0.5)
    assert torch.allclose(two, rescale(net, theta, 1, 2, 1.5), rtol=1e-15, atol=0)
    perm, inverse = [2, 0, 1], [1, 2, 0]
    assert torch.equal(permute(net, permute(net, theta, 1, perm), 1, inverse), theta)
    batch = torch.stack([theta, 2 * theta])
    assert torch.equal(permute(net, batch, 1, perm)[1], permute(net, 2 * theta, 1, perm))
    assert torch.equal(rescale(net, batch, 2, 0, 2.0)[1], rescale(net, 2 * theta, 2, 0, 2.0))


# ----------------------------------------------------------------------------- criticality and curvature
def test_permutation_conjugates_gradient_and_hessian():
    net = MLP((2, 3, 2, 1), "tanh")
    theta = net.init(6, 1.0)
    x, y = exact_critical_data(net, theta)
    perm = [1, 2, 0]
    P = permute(net, torch.eye(net.num_params, dtype=D), 1, perm)  # permute(theta) = P theta (rows)
    P = P.T  # the rows of eye were permuted as parameter vectors: P theta = permute(theta)
    assert torch.equal(P @ theta, permute(net, theta, 1, perm))
    R = risk(net, x, y)
    moved = permute(net, theta, 1, perm)
    assert grad(R)(moved).abs().max() <= 1e-14  # criticality preserved
    H, H_moved = hessian(R)(theta), hessian(R)(moved)
    assert rel(H_moved, P @ H @ P.T) <= 1e-12
    ev, ev_moved = torch.linalg.eigvalsh(H), torch.linalg.eigvalsh(H_moved)
    assert rel(ev_moved, ev) <= 1e-12  # a discrete symmetry: the same spectrum, no new zero eigenvalue


@pytest.mark.parametrize("net", [MLP((3, 4, 1), "relu"), MLP((3, 3, 2, 2), "relu"), MLP((2, 3, 1), "identity")],
                         ids=repr)
def test_rescaling_tangent_is_a_finite_difference_and_in_the_hessian_kernel(net):
    theta = net.init(7, 1.0)
    x, y = exact_critical_data(net, theta, seed=8)
    feats = net.features(theta, x)
    for l, (W, b) in enumerate(net.unflatten(theta)[:-1], start=1):  # stay away from the ReLU kink
        assert (feats[l - 1] @ W.T + b).abs().min() > 1e-6
    R = risk(net, x, y)
    H = hessian(R)(theta)
    h = 1e-5
    for layer in range(1, net.L):
        for s in range(net.widths[layer]):
            t = rescale_tangent(net, theta, layer, s)
            fd = (rescale(net, theta, layer, s, 1 + h) - rescale(net, theta, layer, s, 1 - h)) / (2 * h)
            assert rel(t, fd) <= 1e-8
            assert (H @ t).norm() <= 1e-12 * H.norm() * t.norm()
            assert grad(R)(rescale(net, theta, layer, s, 2.5)).abs().max() <= 1e-13  # critical again


def test_rescale_tangents_stack_and_count_and_min_preactivation():
    net = MLP((2, 3, 2, 1), "relu")
    theta = net.init(9, 1.0)
    V = rescale_tangents(net, theta)
    assert V.shape == (net.num_params, 5)
    assert torch.equal(V[:, 3], rescale_tangent(net, theta, 2, 0))
    assert torch.linalg.matrix_rank(V).item() == 5
    dead = theta.clone()
    W1, b1 = net.layer_slices[0]
    dead[W1.start:W1.start + 2] = 0.0  # neuron 0 of layer 1: zero input row and bias, and zero output column
    dead[b1.start] = 0.0
    W2 = net.layer_slices[1][0]
    dead[W2.start] = dead[W2.start + 3] = 0.0
    assert torch.linalg.matrix_rank(rescale_tangents(net, dead)).item() == 4  # its tangent is zero
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(10), dtype=D)
    feats = net.features(theta, x)
    u = [feats[l - 1] @ W.T + b for l, (W, b) in enumerate(net.unflatten(theta)[:-1], start=1)]
    assert min_abs_preactivation(net, theta, x) == min(v.abs().min().item() for v in u)
    assert min_abs_preactivation(net, rescale(net, theta, 1, 0, 1e-3), x) < min_abs_preactivation(net, theta, x)
    with pytest.raises(ValueError, match="not a batch"):
        min_abs_preactivation(net, torch.stack([theta, theta]), x)


# ----------------------------------------------------------------------------- homogeneity
def test_homogeneity_degree_known_custom_and_rejected():
    assert homogeneity_degree(MLP((1, 1, 1), "relu").activation) == 1.0
    assert homogeneity_degree(MLP((1, 1, 1), "identity").activation) == 1.0
    assert homogeneity_degree(LEAKY) == 1.0
    assert homogeneity_degree(SQUARED) == 2.0
    for name in ("tanh", "sigmoid", "softplus", "gelu"):
        with pytest.raises(ValueError, match="not positively homogeneous"):
            homogeneity_degree(MLP((1, 1, 1), name).activation)
    with pytest.raises(ValueError, match="not positively homogeneous"):
        homogeneity_degree(Activation("shifted", lambda u: torch.relu(u) + 0.1))
    with pytest.raises(TypeError, match="Activation"):
        homogeneity_degree("relu")


# ----------------------------------------------------------------------------- bad inputs
NET = MLP((2, 3, 2, 1), "relu")
THETA = NET.init(0, 1.0)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: permute(NET, THETA, 0, [0, 1, 2]), ValueError, r"hidden layer in 1\.\.2"),
    (lambda: permute(NET, THETA, 3, [0, 1]), ValueError, r"hidden layer in 1\.\.2"),
    (lambda: permute(NET, THETA, 1.0, [0, 1, 2]), TypeError, "layer must be an integer"),
    (lambda: permute(NET, THETA, 1, [0, 1]), ValueError, r"permutation of 0\.\.2"),
    (lambda: permute(NET, THETA, 1, [0, 1, 1]), ValueError, r"permutation of 0\.\.2"),
    (lambda: permute(NET, THETA, 1, [0, 1, 2.0]), TypeError, "perm must contain integers"),
    (lambda: permute(NET, THETA, 1, "012"), TypeError, "perm must be a sequence"),
    (lambda: permute(NET, THETA[:-1], 1, [0, 1, 2]), ValueError, "last dimension"),
    (lambda: permute("net", THETA, 1, [0, 1, 2]), TypeError, "net must be an MLP"),
    (lambda: rescale(NET, THETA, 1, 0, 0.0), ValueError, "beta must be a finite positive"),
    (lambda: rescale(NET, THETA, 1, 0, -1.0), ValueError, "beta must be a finite positive"),
    (lambda: rescale(NET, THETA, 1, 0, float("nan")), ValueError, "beta must be a finite positive"),
    (lambda: rescale(NET, THETA, 1, 0, "2"), TypeError, "beta must be a real number"),
    (lambda: rescale(NET, THETA, 1, 3, 2.0), ValueError, r"neuron must be in 0\.\.2"),
    (lambda: rescale(NET, THETA, 2, -1, 2.0), ValueError, r"neuron must be in 0\.\.1"),
    (lambda: rescale(NET, THETA, 2, True, 2.0), TypeError, "neuron must be an integer"),
    (lambda: rescale(MLP((2, 3, 1), "tanh"), MLP((2, 3, 1)).init(0, 1.0), 1, 0, 2.0), ValueError,
     "'tanh' is not positively homogeneous"),
    (lambda: rescale_tangent(MLP((2, 3, 1), "sigmoid"), MLP((2, 3, 1)).init(0, 1.0), 1, 0), ValueError,
     "'sigmoid' is not positively homogeneous"),
    (lambda: rescale(NET, torch.full_like(THETA, float("nan")), 1, 0, 2.0), ValueError, "NaN"),
])
def test_bad_inputs_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
