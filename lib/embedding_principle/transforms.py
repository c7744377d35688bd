"""Trivial critical transforms: neuron permutations and rescalings (paper A App. A.1).

Besides the critical embeddings, which change the widths, two families of maps act on the parameters
of one network NN({m_l}) and keep its output function, hence map critical points to critical points:

* **permutation** of the neurons of a hidden layer l by a permutation pi of [m_l]: rows of W^[l], entries
  of b^[l] and columns of W^[l+1] are reordered together, f_{P theta} = f_theta. P is a permutation
  matrix, so H_S(P theta) = P H_S(theta) P^T has the same spectrum: a *discrete* symmetry adds no
  zero eigenvalue.
* **rescaling** S^beta_{l,s} for a p-homogeneous activation, sigma(beta u) = beta^p sigma(u) for every
  beta > 0 (ReLU and the identity: p = 1): input weights W^[l]_{s,:} and bias b^[l]_s of neuron s are
  multiplied by beta, its output column W^[l+1]_{:,s} divided by beta^p. This is a one-parameter
  *continuous* group: at a critical point theta, beta -> S^beta_{l,s} theta is a curve of critical points,
  so its tangent at beta = 1 (:func:`rescale_tangent`) lies in the kernel of the Hessian, one degenerate
  direction per neuron whose tangent is nonzero.

Both are defined for a single parameter vector or a batch (..., P). Layers are numbered 1..L-1 as in
the papers; neuron indices are 0-based.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor

from .network import ACTIVATIONS, MLP, Activation, check_mlp

__all__ = ["permute", "rescale", "rescale_tangent", "rescale_tangents", "homogeneity_degree", "min_abs_preactivation",
           "KNOWN_HOMOGENEOUS"]

KNOWN_HOMOGENEOUS = {"relu": 1.0, "identity": 1.0}
"""Degrees p of the library's positively homogeneous activations (sigma(beta u) = beta^p sigma(u), beta > 0)."""

_PROBE = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64)
_BETAS = (0.5, 2.0, 3.7)


# ----------------------------------------------------------------------------- layout
def _slices(net: MLP, layer: int) -> tuple[Tensor, Tensor, Tensor]:
    """Flat indices of W^[l] (m_l, m_{l-1}), b^[l] (m_l) and W^[l+1] (m_{l+1}, m_l) in theta."""
    idx = torch.arange(net.num_params)
    (w, b), (w_next, _) = net.layer_slices[layer - 1], net.layer_slices[layer]
    m_prev, m, m_next = net.widths[layer - 1], net.widths[layer], net.widths[layer + 1]
    return idx[w].view(m, m_prev), idx[b], idx[w_next].view(m_next, m)


# ----------------------------------------------------------------------------- permutation
def permute(net: MLP, theta, layer: int, perm: Sequence[int]) -> Tensor:
    """Reorder the neurons of hidden layer l: new neuron i is old neuron perm[i] (paper A App. A.1).

    Row i of the new W^[l] and entry i of the new b^[l] are row/entry perm[i] of the old ones, and column i
    of the new W^[l+1] is column perm[i] of the old one, so f_theta is unchanged everywhere.

    Args:
        net: the architecture.
        theta: parameters (P,) or a batch (..., P).
        layer: hidden layer l in 1..L-1.
        perm: a permutation of 0..m_l-1 (list, tuple or integer tensor).
    """
    layer = check_mlp(net).check_layer(layer)
    theta = net.check_theta(theta)
    m = net.widths[layer]
    values = perm.tolist() if hasattr(perm, "tolist") else perm
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"perm must be a sequence of integers, got {type(perm).__name__}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
        raise TypeError(f"perm must contain integers, got {list(values)}")
    if sorted(values) != list(range(m)):
        raise ValueError(f"perm must be a permutation of 0..{m - 1} (layer {layer} of {net} has {m} neurons), "
                         f"got {list(values)}")
    p = torch.tensor(values, dtype=torch.long)
    W, b, W_next = _slices(net, layer)
    source = torch.arange(net.num_params)
    source[W.flatten()] = W[p].flatten()
    source[b] = b[p]
    source[W_next.flatten()] = W_next[:, p].flatten()
    return theta[..., source]


# ----------------------------------------------------------------------------- rescaling
def homogeneity_degree(activation: Activation) -> float:
    """The degree p with sigma(beta u) = beta^p sigma(u) for all beta > 0, or ValueError if there is none.

    Known activations (:data:`KNOWN_HOMOGENEOUS`: relu, identity) return their degree; any other activation
    is tested numerically on u in [-3, 3] and beta in {0.5, 2, 3.7}: p is read off sigma(2u) / sigma(u) and
    must reproduce sigma(beta u) for every probe to 1e-12 relative (so a custom leaky ReLU or squared ReLU
    is accepted, tanh, sigmoid, softplus and gelu are not).
    """
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be an Activation (net.activation), got {type(activation).__name__}")
    if activation.name in KNOWN_HOMOGENEOUS and activation.fn is ACTIVATIONS[activation.name].fn:
        return KNOWN_HOMOGENEOUS[activation.name]
    s = activation(_PROBE)
    s2 = activation(2 * _PROBE)
    mask = s.abs() > 1e-8
    if not mask.any() or ((s2[mask] / s[mask]) <= 0).any():
        raise ValueError(f"activation {activation.name!r} is not positively homogeneous: sigma(2u)/sigma(u) is "
                         f"not a positive constant on [-3, 3]")
    p = math.log2((s2[mask] / s[mask]).median().item())
    if abs(p - round(p)) < 1e-9:  # an integer degree read off in floating point
        p = float(round(p))
    for beta in _BETAS:
        gap = (activation(beta * _PROBE) - beta ** p * s).abs().max().item()
        if gap > 1e-12 * max(1.0, s.abs().max().item() * beta ** p):
            raise ValueError(f"activation {activation.name!r} is not positively homogeneous: "
                             f"max |sigma(beta u) - beta^p sigma(u)| = {gap:.3g} for beta = {beta}, p = {p:.6g}")
    return p


def _check_beta(beta) -> float:
    if isinstance(beta, Tensor) and beta.numel() == 1:
        beta = beta.item()
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a real number, got {beta!r}")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite positive number (sigma(beta u) = beta^p sigma(u) needs beta > 0), "
                         f"got {beta}")
    return float(beta)


def rescale(net: MLP, theta, layer: int, neuron: int, beta: float) -> Tensor:
    """The rescaling S^beta_{l,s} of paper A App. A.1 for a p-homogeneous activation.

    Input weights W^[l]_{s,:} and bias b^[l]_s are multiplied by beta > 0, the output column W^[l+1]_{:,s}
    is divided by beta^p; then sigma(beta u) / beta^p = sigma(u) keeps f_theta unchanged everywhere.

    Raises ValueError when the activation is not positively homogeneous (see :func:`homogeneity_degree`)
    or beta <= 0.
    """
    beta = _check_beta(beta)
    return _scale_neuron(net, theta, layer, neuron, 1.0, lambda p: (beta, beta ** -p))


def rescale_tangent(net: MLP, theta, layer: int, neuron: int) -> Tensor:
    """d/dbeta S^beta_{l,s} theta at beta = 1: (W^[l]_{s,:}, b^[l]_s) on the input side, -p W^[l+1]_{:,s} on the
    output side, zero elsewhere. At a critical point it lies in the kernel of the Hessian (module docstring)."""
    return _scale_neuron(net, theta, layer, neuron, 0.0, lambda p: (1.0, -p))


def _scale_neuron(net: MLP, theta, layer, neuron, rest: float, factors) -> Tensor:
    """theta times a coefficient vector: ``factors(p) = (inner, outer)`` on the input weights and bias of neuron s of
    layer l and on its output column W^[l+1]_{:,s} (p the homogeneity degree), ``rest`` on every other entry."""
    layer = check_mlp(net).check_layer(layer)
    neuron = net.check_neuron(layer, neuron)
    inner, outer = factors(homogeneity_degree(net.activation))
    theta = net.check_theta(theta)
    W, b, W_next = _slices(net, layer)
    coef = torch.full((net.num_params,), rest, dtype=theta.dtype, device=theta.device)
    coef[W[neuron]] = inner
    coef[b[neuron]] = inner
    coef[W_next[:, neuron]] = outer
    return theta * coef


def rescale_tangents(net: MLP, theta) -> Tensor:
    """The tangents of :func:`rescale_tangent` for every hidden neuron (l, s), l = 1..L-1, as columns (P, sum_l m_l).

    Their number of linearly independent columns is the number of neurons with a nonzero tangent, i.e. whose
    input weights and bias or output column are nonzero (paper A App. A.1 counts neurons with both nonzero).
    """
    check_mlp(net)
    return torch.stack([rescale_tangent(net, theta, l, s) for l in range(1, net.L) for s in range(net.widths[l])], 1)


def min_abs_preactivation(net: MLP, theta, x) -> float:
    """min over hidden layers l, neurons and samples of |W^[l] f^[l-1](x) + b^[l]|.

    For ReLU, a value > 0 means no sample sits on a kink, so sigma' and sigma'' are the classical derivatives on the
    data (the library's subgradient convention sigma'(0) = 0 plays no role). A rescaling S^beta (beta > 0) multiplies
    the pre-activations of neuron s by beta and leaves all others unchanged, so it never moves a sample onto a kink.
    """
    theta = check_mlp(net).check_one_theta(theta, "min_abs_preactivation")
    feats, layers = net.features(theta, x), net.unflatten(theta)
    return min((feats[l - 1] @ W.T + b).abs().min().item() for l, (W, b) in enumerate(layers[:-1], start=1))
