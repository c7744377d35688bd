"""Odd symmetry and condensation along a training trajectory (paper A Fig. 1 = paper B Fig. 4.3).

The Fig. 1 problem is symmetric. The data are odd (x_i = -x_{51-i}, y(-x) = -y(x)) and tanh is odd, so the
reflection rho, which negates every bias b^[l] of theta, satisfies f_{rho theta}(x) = -f_theta(-x) and
R_S(rho theta) = R_S(theta). Hence:

* the fixed subspace Fix(rho) = {all biases 0} (the networks with odd outputs built from b = 0) is invariant under
  gradient flow and gradient descent: nabla R_S is rho-equivariant, so its bias part vanishes there;
* at a point of Fix(rho) the Hessian commutes with rho and splits into two blocks: the "even" sector (weights W^[l],
  which rho fixes) and the "odd" sector (the biases, which rho negates). Near Fix(rho) the biases obey the linear
  recursion b <- (I - lr H_bb) b + O(|b|^3), so only a negative eigenvalue of the bias block H_bb can make them grow.

This module measures how far a parameter vector is from Fix(rho) (:func:`odd_distance`, :func:`bias_ratio`,
:func:`even_part`) and the two sectors' curvatures (:func:`sector_curvature`). It also gives two tools for the
embedding principle's view of a trajectory. :func:`share_split` is the splitting embedding of a width-1 net into
copies with given output shares (paper B Def. 5.2). :func:`effective_width` is a condensation-aware reduction that
counts how many distinct neurons the wide net is using (paper A section 3.2 and Fig. 5, made for tanh).

Layers and neurons follow :mod:`embedding_principle.network`: hidden layer 1, 0-based neuron indices.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .embeddings import Embedding, general_compatible
from .landscape import Landscape
from .network import MLP, Activation, as_tensor, check_mlp
from .reduction import Reduction, reduce

__all__ = ["is_odd", "bias_indices", "reflect", "odd_distance", "bias_ratio", "even_part", "SectorCurvature",
           "sector_curvature", "share_split", "canonical_signs", "Condensation", "condense", "effective_width",
           "bias_growth_exponent"]

D = torch.float64


# ----------------------------------------------------------------------------- checks
_check_net = check_mlp  # the library's one MLP argument check (network.check_mlp)


def _check_two_layer(net: MLP, what: str) -> MLP:
    _check_net(net)
    if net.L != 2 or net.widths[-1] != 1 or net.output_bias:
        raise ValueError(f"{what} needs a two-layer net with one output and no output bias (paper A's "
                         f"f = sum_k a_k sigma(w_k . x + b_k)), got {net}")
    return net


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def is_odd(activation: Activation, atol: float = 1e-14) -> bool:
    """Whether sigma(-u) = -sigma(u), checked on 201 points of [-10, 10] (to ``atol`` max(1, |sigma(u)|))."""
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be an Activation (e.g. net.activation), got {type(activation).__name__}")
    u = torch.linspace(-10, 10, 201, dtype=D)
    s = activation(u)
    return bool(((activation(-u) + s).abs() <= atol * s.abs().clamp_min(1.0)).all())


def _require_odd(net: MLP, what: str) -> None:
    if not is_odd(net.activation):
        raise ValueError(f"{what} uses the odd symmetry sigma(-u) = -sigma(u); {net.activation.name} is not odd")


# ----------------------------------------------------------------------------- the reflection rho
def bias_indices(net: MLP) -> Tensor:
    """Positions of every bias b^[l] (l = 1..L, b^[L] only with an output bias) in the flat theta."""
    idx = [torch.arange(b.start, b.stop) for _, b in _check_net(net).layer_slices if b is not None]
    return torch.cat(idx)


def reflect(net: MLP, theta) -> Tensor:
    """rho(theta): every bias negated. For an odd sigma, f_{rho theta}(x) = -f_theta(-x) for every x.

    Proof by induction over layers: if f^[l-1]_{rho theta}(x) = -f^[l-1]_theta(-x), then
    f^[l]_{rho theta}(x) = sigma(-W f^[l-1]_theta(-x) - b) = -sigma(W f^[l-1]_theta(-x) + b).
    So R_S(rho theta) = R_S(theta) for data with odd targets on a symmetric set of inputs (the Fig. 1 data).
    Accepts a batch theta (..., P).
    """
    theta = _check_net(net).check_theta(theta).clone()
    theta[..., bias_indices(net)] *= -1
    return theta


def odd_distance(net: MLP, theta) -> Tensor:
    """The distance ||theta - P theta||_2 from theta to Fix(rho) = {all biases 0}, with P = (I + rho) / 2.

    That distance is the norm of the bias vector. Fix(rho) is the largest invariant subspace of the symmetry;
    smaller ones exist (mirror pairs of neurons, (w, b, a) and (w, -b, a)), so a zero distance is sufficient for
    an odd output but not necessary (:func:`even_part` measures the output). Shape (...,) for theta (..., P).
    """
    theta = _check_net(net).check_theta(theta)
    return torch.linalg.vector_norm(theta[..., bias_indices(net)], dim=-1)


def bias_ratio(net: MLP, theta) -> Tensor:
    """max_k |b^[1]_k| / mean_k ||W^[1]_{k,:}||_2: the hidden biases against the input weights, shape (...,)."""
    W, b = _check_net(net).unflatten(theta)[0]
    return b.abs().amax(-1) / torch.linalg.vector_norm(W, dim=-1).mean(-1)


def even_part(net: MLP, theta, x) -> Tensor:
    """RMS over the inputs x of the even part (f_theta(x) + f_theta(-x)) / 2 of the output, shape (...,).

    It is zero for an odd output (every theta in Fix(rho) when sigma is odd). For the odd Fig. 1 target it is the
    part of the output that fitting can only lose on: R_S = E|odd part - y|^2 + E|even part|^2 on a symmetric grid.
    """
    net = _check_net(net)
    x = net.check_x(x)
    f = net.forward(theta, x) + net.forward(theta, -x)
    return torch.sqrt((0.5 * f).square().mean(dim=(-2, -1)))


# ----------------------------------------------------------------------------- the two Hessian sectors
@dataclass(frozen=True)
class SectorCurvature:
    """The Hessian at theta split into rho's sectors (exactly block diagonal on Fix(rho); see the module docstring).

    Attributes:
        bias_min, bias_max: the extreme eigenvalues of the bias block H_bb (the odd sector). A negative bias_min
            is the only source of growth of the biases near Fix(rho): b <- (I - lr H_bb) b.
        sharpness: the largest eigenvalue of the whole Hessian (gradient descent with step lr is stable only
            while sharpness < 2 / lr).
        cross: max |H_{b, rest}|, the coupling between the sectors (0 on Fix(rho); O(|b|) near it).
    """

    bias_min: float
    bias_max: float
    sharpness: float
    cross: float


def sector_curvature(landscape: Landscape, theta) -> SectorCurvature:
    """The :class:`SectorCurvature` of R_S at theta (exact float64 Hessian; deterministic LOBPCG for the top)."""
    if not isinstance(landscape, Landscape):
        raise TypeError(f"landscape must be a Landscape, got {type(landscape).__name__}")
    theta = landscape.check_theta(theta)
    if theta.ndim != 1:
        raise ValueError("sector_curvature takes one parameter vector (P,), not a batch")
    H = landscape.hessian(theta)
    H = 0.5 * (H + H.T)
    bi = bias_indices(landscape.net)
    rest = torch.ones(H.shape[0], dtype=torch.bool)
    rest[bi] = False
    lam_b = torch.linalg.eigvalsh(H[bi][:, bi])
    if H.shape[0] > 100:
        X0 = torch.randn(H.shape[0], 1, generator=torch.Generator().manual_seed(0), dtype=H.dtype)
        top = torch.lobpcg(H, k=1, X=X0, largest=True, tol=1e-10)[0].item()
    else:
        top = torch.linalg.eigvalsh(H)[-1].item()
    return SectorCurvature(lam_b[0].item(), lam_b[-1].item(), top, H[bi][:, rest].abs().max().item())


def bias_growth_exponent(steps, bias_min, lr: float) -> np.ndarray:
    """An upper bound on ln(||b(t)|| / ||b(0)||) from the linearised bias dynamics, at each of ``steps``.

    Near Fix(rho), b_{t+1} = (I - lr H_bb(t)) b_t + O(|b|^3), and ||I - lr H_bb||_2 = 1 + lr max(0, -bias_min)
    while lr * bias_max < 2. Multiplying over the steps, with bias_min(t) held constant between the given steps
    (its value at the left end), gives sum lr max(0, -bias_min) (t_{i+1} - t_i), accumulated. Returns an array
    shaped like ``steps`` that starts at 0.
    """
    steps = np.asarray(steps, dtype=np.float64)
    lam = np.asarray(bias_min, dtype=np.float64)
    lr = _check_positive(lr, "lr")
    if steps.ndim != 1 or lam.shape != steps.shape or steps.size == 0:
        raise ValueError(f"steps and bias_min must be 1-D arrays of the same nonzero length, got shapes "
                         f"{steps.shape} and {lam.shape}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    rate = lr * np.maximum(0.0, -lam[:-1]) * np.diff(steps)
    return np.concatenate([[0.0], np.cumsum(rate)])


# ----------------------------------------------------------------------------- splitting with shares
def share_split(net: MLP, shares) -> Embedding:
    """Split the single hidden neuron of a width-1 two-layer net into len(shares) copies with these output shares.

    This is the general compatible embedding T^alpha_I of paper B Def. 5.2 with I_1 = (0, ..., 0). Every copy
    keeps the input weights and bias (alpha^[1] = 1, alpha_b^[1] = 0). Copy k gets the output weight
    shares[k] * W^[2] (alpha^[2] = shares). Condition 1 asks sum(shares) = 1. It maps a critical point to a
    critical point (Thm. 5.1). The width-500 net of Fig. 1 sits near such a point on its plateau, with
    shares a_k / sum(a).
    """
    net = _check_two_layer(net, "share_split")
    if net.widths[1] != 1:
        raise ValueError(f"share_split splits the neuron of a width-1 net, got {net}")
    shares = as_tensor(shares, "shares").to(D).reshape(-1)
    if shares.numel() < 1:
        raise ValueError("shares must hold at least one number")
    if abs(shares.sum().item() - 1.0) > 1e-10:
        raise ValueError(f"shares must sum to 1 (paper B Condition 1), got sum {shares.sum().item():.12g}")
    m, d = shares.numel(), net.widths[0]
    alpha = [(torch.ones(m, d, dtype=D), torch.zeros(m, dtype=D)), (shares[None, :], None)]
    return general_compatible(net, [[0] * m], alpha)


# ----------------------------------------------------------------------------- condensation and effective width
def canonical_signs(net: MLP, theta) -> Tensor:
    """For an odd sigma, flip every hidden neuron whose first input weight is negative (a trivial critical transform).

    a sigma(w.x + b) = (-a) sigma(-w.x - b), so negating the input weights, bias and output weight of a neuron
    changes nothing in the function. After the flip, neurons that differ only by this sign coincide, and a
    clustering of (w_k, b_k) sees them together. (Paper A App. A.1 lists such symmetry transforms: permutations and
    the rescalings of homogeneous sigma. The sign flip is the one for odd sigma.) theta (P,) or (..., P).
    """
    net = _check_two_layer(net, "canonical_signs")
    _require_odd(net, "canonical_signs")
    (W, b), (A, _) = net.unflatten(theta)
    flip = torch.where(W[..., 0] < 0, -1.0, 1.0).to(W.dtype)
    return net.flatten([(W * flip[..., None], b * flip), (A * flip[..., None, :], None)])


@dataclass(frozen=True)
class Condensation:
    """The wide net seen as k condensed neurons (:func:`condense`).

    Attributes:
        k: the number of clusters asked for.
        width: the width of the reduced net (< k when a cluster's output weights sum to ~0 and it is dropped).
        reduction: :func:`embedding_principle.reduction.reduce` of the snapped parameters. It holds the reduced
            net and theta, and the general compatible embedding back.
        output_error: max_i |f_wide(x_i) - f_reduced(x_i)| against the ORIGINAL (unsnapped) wide parameters.
        labels: cluster label (0..k-1) of every wide neuron.
    """

    k: int
    width: int
    reduction: Reduction
    output_error: float
    labels: np.ndarray


def condense(net: MLP, theta, k: int, x) -> Condensation:
    """Merge the hidden neurons of a two-layer net into (at most) k condensed neurons, then reduce it exactly.

    Steps:

    1. canonical signs (:func:`canonical_signs`; odd sigma only);
    2. Ward clustering of the rows u_j = (W^[1]_{j,:}, b^[1]_j) into k clusters (scipy ``linkage(..., "ward")``);
    3. snap each cluster to its output-weighted mean u_c = sum_j a_j u_j / sum_j a_j (the plain mean when
       |sum_j a_j| <= 1e-12 sum_j |a_j|). This keeps the function to first order:
       sum_j a_j sigma(u_j.x~) = A sigma(u_c.x~) + sigma'(u_c.x~) x~.sum_j a_j (u_j - u_c) + O(|u_j - u_c|^2),
       with A = sum_j a_j, and the middle term is 0;
    4. :func:`~embedding_principle.reduction.reduce` (exact mode, tol 1e-12). The snapped net is exactly a split
       embedding of the reduced one, so reduce recovers that narrow net and the embedding back.

    The paper's Fig. 5 uses cosine similarity instead. That would merge every tanh neuron with b = 0 into one
    direction, though their functions differ, because tanh is not homogeneous. So here the clusters are in
    (w, b) itself.
    """
    net = _check_two_layer(net, "condense")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    from scipy.cluster.hierarchy import fcluster, linkage

    theta = net.check_theta(theta).to(D)
    if theta.ndim != 1:
        raise ValueError("condense takes one parameter vector (P,), not a batch")
    x = net.check_x(x, like=theta)
    canon = canonical_signs(net, theta)
    (W, b), (A, _) = net.unflatten(canon)
    U = torch.cat([W, b[:, None]], 1).numpy()
    a = A[0].numpy()
    m = U.shape[0]
    labels = np.zeros(m, dtype=np.int64) if m == 1 or k == 1 else fcluster(linkage(U, "ward"), int(k), "maxclust") - 1
    snapped = U.copy()
    for c in np.unique(labels):
        idx = labels == c
        total = a[idx].sum()
        weights = a[idx] / total if abs(total) > 1e-12 * np.abs(a[idx]).sum() else np.full(idx.sum(), 1 / idx.sum())
        snapped[idx] = weights @ U[idx]
    snapped_t = torch.as_tensor(snapped)
    theta_snap = net.flatten([(snapped_t[:, :-1], snapped_t[:, -1]), (A, None)])
    red = reduce(net, theta_snap, tol=1e-12, x=x)
    error = (net.forward(theta, x) - red.net.forward(red.theta, x)).abs().max().item()
    return Condensation(int(k), red.net.widths[1], red, error, labels)


def effective_width(net: MLP, theta, x, eps: float, k_max: int = 10) -> tuple[Condensation, bool]:
    """The smallest k <= k_max whose :func:`condense` reproduces the output on x to max-abs error <= eps.

    Returns (condensation, met). ``met`` is False when even k_max clusters miss eps; the k_max condensation is
    returned then. The effective width is ``condensation.width`` and depends on eps, which the caller must state.
    """
    eps = _check_positive(eps, "eps")
    if isinstance(k_max, bool) or not isinstance(k_max, numbers.Integral) or k_max < 1:
        raise ValueError(f"k_max must be an integer >= 1, got {k_max!r}")
    best = None
    for k in range(1, int(k_max) + 1):
        best = condense(net, theta, k, x)
        if best.output_error <= eps:
            return best, True
    return best, False
