"""Irreversibility and strict saddles: how embeddings turn minima into saddles (paper B section 6).

* :func:`inertia_atlas` (with :func:`format_atlas`, :func:`plot_atlas`) -- Thm. 6.2 (irreversibility) on a grid of
  (narrow critical point, critical embedding) pairs: the inertia before and after, the sandwich
  A^T H_S(A theta + c) A = H_S(theta), and the kernel inclusion H_S(T theta) A ker H_S(theta) = 0 behind the zero
  count.
* :func:`splitting_matrix` -- the splitting matrix S^[l]_s of a neuron (digest section 2c; the matrix of
  Fukumizu & Amari 2000 and of splitting steepest descent, Liu et al. 2019): splitting s with output shares
  (lambda, 1 - lambda) and moving the copies' input weights by (1 - lambda) delta and -lambda delta changes R_S by
  lambda (1 - lambda) delta^T S delta + O(|delta|^3). :func:`split_direction` builds that direction in the wide
  layout, :func:`split_quadratic_coefficient` the prediction, :func:`split_saddle` the most negative one,
  :func:`split_rayleigh` / :func:`split_min_eigenvalues` the curvature as a function of the split ratio.
* :func:`t_global_direction`, :func:`t_global_copy_basis`, :func:`lemma61_direction`, :func:`lemma62_direction` --
  the negative directions of the proofs of Lemmas 6.1 and 6.2 in the layout of the three-fold global splitting
  T_global (Example 5.1).
* :func:`random_compatible` -- a random general compatible critical embedding T^alpha_I (Def. 5.2) with extra
  copies and null neurons; :func:`synthetic_critical_point` -- an exact critical point on chosen data.
* :func:`second_difference` -- a Hessian-free quadratic coefficient from risk values (the tests' oracle);
  :func:`descent_check` -- R_S(theta +- t u) - R_S(theta) against lambda t^2 / 2.

Layers are numbered 1..L as in the papers; neuron indices are 0-based.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from .backprop import backprop
from .embeddings import NULL, Embedding, general_compatible, splitting, t_global
from .landscape import Inertia, Landscape, inertia
from .network import MLP, as_tensor, check_int, check_mlp, check_real

__all__ = ["synthetic_critical_point", "splitting_matrix", "split_direction", "split_quadratic_coefficient",
           "split_min_eigenvalues", "split_rayleigh", "second_difference", "SaddleDirection", "split_saddle",
           "t_global_direction", "t_global_copy_basis", "lemma61_direction", "lemma62_direction", "random_compatible",
           "AtlasRow", "inertia_atlas", "format_atlas", "plot_atlas", "most_negative_direction", "DescentRow",
           "descent_check"]

D = torch.float64


# ----------------------------------------------------------------------------- argument checks
def _check_landscape(landscape) -> Landscape:
    if not isinstance(landscape, Landscape):
        raise TypeError(f"landscape must be a Landscape, got {type(landscape).__name__}")
    return landscape


def _one_theta(landscape: Landscape, theta) -> Tensor:
    return landscape.check_theta(theta)


def _direction(theta: Tensor, u) -> Tensor:
    """u as a flat float64 vector with the length of theta."""
    u = as_tensor(u, "u").to(D).reshape(-1)
    if u.numel() != theta.numel():
        raise ValueError(f"u has {u.numel()} entries, the landscape has {theta.numel()} parameters")
    return u


# ----------------------------------------------------------------------------- synthetic critical points
def synthetic_critical_point(widths: Sequence[int], activation: str, loss: str = "mse", residual: float = 0.5,
                             seed: int = 0, std: float = 1.0, output_bias: bool = True) -> tuple[Landscape, Tensor]:
    """(landscape, theta): theta ~ N(0, std^2) on ``MLP(widths, activation)`` made an exact critical point with
    nonzero loss by choosing the data (:func:`embedding_principle.degeneracy.critical_data`, which takes its targets
    from :func:`embedding_principle.representation.critical_targets`).

    A small MSE ``residual`` keeps H_S close to the Gauss-Newton part H^(1) (usually a local minimum), a large
    one lets H^(2) create negative eigenvalues (a saddle); cross-entropy ignores ``residual``.
    """
    from .degeneracy import critical_data

    net = MLP(widths, activation, output_bias=output_bias)
    theta = net.init(check_int(seed, "seed"), check_real(std, "std"))
    x, y = critical_data(net, theta, loss=loss, seed=seed, residual=check_real(residual, "residual"))
    return Landscape(net, x, y, loss), theta


# ----------------------------------------------------------------------------- the splitting matrix
def splitting_matrix(landscape: Landscape, theta, layer: int, neuron: int | None = None) -> Tensor:
    """The splitting matrix S^[l]_s = 1/2 E_S[ z^[l]_s sigma''(u^[l]_s) ftil ftil^T ] of neuron s of layer l.

    Here u^[l] = W^[l] f^[l-1] + b^[l], ftil = [f^[l-1]; 1] (inputs then the constant of the bias) and
    z^[l]_s = d l / d f^[l]_s is the papers' back-propagated error. For a two-layer net with the MSE
    l = (f - y)^2 (one output, no 1/2) this is the digest's S_j = a_j E_S[r sigma''(w_j . x~) x~ x~^T], r = f - y,
    and in general (L = 2) it is half the j-th diagonal block of H^(2),[L-1]_S (paper B section 3.3).

    Meaning (digest section 2c): split s into copies with output shares lambda and 1 - lambda and move their
    input weights by (1 - lambda) delta and -lambda delta; the first-order change of every downstream feature
    cancels and R_S changes by lambda (1 - lambda) delta^T S delta + O(|delta|^3), for any depth.

    Args:
        landscape: the narrow R_S; theta: its parameters (P,); layer: a hidden layer l in 1..L-1;
        neuron: s in 0..m_l-1, or None for all neurons at once.

    Returns:
        (m_{l-1} + 1, m_{l-1} + 1), or (m_l, m_{l-1} + 1, m_{l-1} + 1) for ``neuron=None``.
    """
    land = _check_landscape(landscape)
    net = land.net
    layer = net.check_layer(layer)
    if neuron is not None:
        neuron = net.check_neuron(layer, neuron)
    theta = _one_theta(land, theta)
    bp = backprop(net, theta, land.x, land.y, land.loss)
    W, b = net.unflatten(theta)[layer - 1]
    f_prev = bp.f[layer - 1]
    s2 = net.activation.second_derivative(f_prev @ W.T + b)
    ftil = torch.cat([f_prev, torch.ones_like(f_prev[:, :1])], 1)
    weight = bp.z[layer] * s2 / (2 * land.n)  # (n, m_l)
    S = torch.einsum("nj,np,nq->jpq", weight, ftil, ftil)
    return S if neuron is None else S[neuron]


def split_direction(net: MLP, layer: int, neuron: int, alpha: float, delta) -> Tensor:
    """The direction of digest section 2c in the wide layout of ``splitting(net, layer, neuron, alpha)``.

    T^alpha_{l,s} keeps the output share 1 - alpha on neuron s and gives alpha to the copy appended last in
    layer l. With lambda = 1 - alpha the share of neuron s, the input weights and bias of s move by
    (1 - lambda) delta = alpha delta and those of the copy by -lambda delta = -(1 - alpha) delta; every other
    entry is zero. delta has m_{l-1} + 1 entries (input weights, then the bias).
    """
    layer = check_mlp(net).check_layer(layer)
    neuron = net.check_neuron(layer, neuron)
    alpha = check_real(alpha, "alpha")
    delta = as_tensor(delta, "delta").to(D).reshape(-1)
    if delta.numel() != net.widths[layer - 1] + 1:
        raise ValueError(f"delta must have m_{layer - 1} + 1 = {net.widths[layer - 1] + 1} entries (input weights "
                         f"and bias of a neuron of layer {layer}), got {delta.numel()}")
    target = splitting(net, layer, neuron, alpha).target
    zero = target.unflatten(torch.zeros(target.num_params, dtype=D))
    layers = [[W.clone(), None if b is None else b.clone()] for W, b in zero]
    W, b = layers[layer - 1]
    new = net.widths[layer]  # the copy is appended last
    for row, coef in ((neuron, alpha), (new, -(1.0 - alpha))):
        W[row] = coef * delta[:-1]
        b[row] = coef * delta[-1]
    return target.flatten(layers)


def split_quadratic_coefficient(S, alpha: float, delta) -> float:
    """The predicted second-order change lambda (1 - lambda) delta^T S delta, lambda = 1 - alpha (digest 2c).

    It equals R_S(T theta + t u) - R_S(T theta) = c t^2 + O(t^3) for u = :func:`split_direction`, i.e.
    u^T H_S(T theta) u = 2 c.
    """
    S = as_tensor(S, "S").to(D)
    alpha = check_real(alpha, "alpha")
    delta = as_tensor(delta, "delta").to(D).reshape(-1)
    if S.ndim != 2 or S.shape != (delta.numel(), delta.numel()):
        raise ValueError(f"S must be square with the size of delta ({delta.numel()}), got shape {tuple(S.shape)}")
    return alpha * (1.0 - alpha) * float(delta @ S @ delta)


def split_min_eigenvalues(landscape: Landscape, theta, layer: int, neuron: int, alphas: Sequence[float]) -> Tensor:
    """The smallest eigenvalue of H_S(T^alpha_{l,s} theta) for each alpha (the wide Hessian after the split)."""
    land = _check_landscape(landscape)
    theta = _one_theta(land, theta)
    out = []
    for a in alphas:
        T = splitting(land.net, layer, neuron, check_real(a, "alpha"))
        wide = Landscape(T.target, land.x, land.y, land.loss)
        out.append(torch.linalg.eigvalsh(wide.hessian(T(theta)))[0])
    return torch.stack(out) if out else torch.zeros(0, dtype=D)


def split_rayleigh(eigenvalue: float, alphas) -> Tensor:
    """u^T H u / |u|^2 = 2 alpha (1 - alpha) s / (alpha^2 + (1 - alpha)^2) for u = split_direction with delta the
    eigenvector of S of eigenvalue s (|u|^2 = (alpha^2 + (1 - alpha)^2) |delta|^2): an upper bound on the smallest
    eigenvalue of H_S(T^alpha theta) (Courant-Fischer)."""
    a = as_tensor(alphas, "alphas").to(D)
    return 2 * a * (1 - a) * check_real(eigenvalue, "eigenvalue") / (a ** 2 + (1 - a) ** 2)


def second_difference(landscape: Landscape, theta, u, t: float = 3e-3, richardson: bool = True) -> float:
    """The quadratic coefficient c of R_S(theta + t u) = R_S(theta) + t u.grad + c t^2 + ... from risk values only.

    The central difference D(t) = (R_S(theta + t u) + R_S(theta - t u) - 2 R_S(theta)) / (2 t^2) = c + O(t^2);
    with ``richardson`` (default) the estimate is (4 D(t/2) - D(t)) / 3 = c + O(t^4). Round-off adds about
    1e-16 R_S / t^2. c = u^T H_S u / 2: an oracle independent of every Hessian in the library.
    """
    land = _check_landscape(landscape)
    theta = _one_theta(land, theta)
    u = _direction(theta, u)
    t = check_real(t, "t", positive=True)

    def central(h: float) -> float:
        r = land.risk(torch.stack([theta + h * u, theta - h * u, theta]))
        return float((r[0] + r[1] - 2 * r[2]) / (2 * h * h))

    return (4 * central(t / 2) - central(t)) / 3 if richardson else central(t)


# ----------------------------------------------------------------------------- saddle directions
@dataclass(frozen=True)
class SaddleDirection:
    """A direction u in a wide parameter space along which the embedded critical point curves downward.

    Attributes:
        embedding: the critical embedding T (the wide point is ``embedding(theta)``).
        u: the direction in the wide layout (M',).
        eigenvalue: the eigenvalue it is built from (of S, of H^(2),[L-1], or of the (theta^[L-1], W^[L])
            block of H^(2)).
        predicted: the paper's value of u^T H_S(T theta) u.
        kind: which construction ("split", "lemma 6.1, lambda > 0", "lemma 6.1, lambda < 0", "lemma 6.2").
    """

    embedding: Embedding
    u: Tensor
    eigenvalue: float
    predicted: float
    kind: str


def split_saddle(landscape: Landscape, theta, layer: int, neuron: int, alpha: float) -> SaddleDirection:
    """The most negative split direction for the splitting T^alpha_{l,s} (digest section 2c).

    For 0 < alpha < 1 (lambda (1 - lambda) > 0) delta is the eigenvector of S's smallest eigenvalue, outside
    [0, 1] that of the largest; ``predicted`` = u^T H u = 2 alpha (1 - alpha) delta^T S delta (|delta| = 1).
    """
    land = _check_landscape(landscape)
    alpha = check_real(alpha, "alpha")
    S = splitting_matrix(land, theta, layer, neuron)
    lam, vec = torch.linalg.eigh(S)
    k = 0 if alpha * (1 - alpha) > 0 else -1
    delta = vec[:, k]
    T = splitting(land.net, layer, neuron, alpha)
    u = split_direction(land.net, layer, neuron, alpha, delta)
    return SaddleDirection(T, u, lam[k].item(), 2 * split_quadratic_coefficient(S, alpha, delta), "split")


def t_global_direction(net: MLP, hidden: Sequence, output: Sequence | None = None) -> Tensor:
    """A vector in the layout of ``t_global(net).target`` from per-copy blocks (paper B Example 5.1).

    T_global has three copies of the hidden part theta^[L-1]: copy k (k = 0, 1, 2) owns rows k m_1..(k+1) m_1 - 1
    of W'^[1] and b'^[1], the k-th diagonal block of W'^[l] (2 <= l <= L-1) and the k-th part of b'^[l]; the
    output matrix W'^[L] = [W, W, -W] has one column block per copy. ``hidden[k]`` (length M^[L-1]) is placed on
    copy k and ``output[k]`` (m_L x m_{L-1}, optional) in column block k of W'^[L]; everything else (the
    cross-copy blocks of W'^[l] and b'^[L]) is zero.
    """
    k_hidden = check_mlp(net).num_hidden_params
    hidden = [as_tensor(h, "hidden block").to(D).reshape(-1) for h in hidden]
    if len(hidden) != 3 or any(h.numel() != k_hidden for h in hidden):
        raise ValueError(f"hidden must hold 3 vectors of length M^[L-1] = {k_hidden}, got "
                         f"{[h.numel() for h in hidden]}")
    zero_out = torch.zeros(net.widths[-1], net.widths[-2], dtype=D)
    output = [zero_out] * 3 if output is None else [as_tensor(o, "output block").to(D) for o in output]
    if len(output) != 3 or any(o.shape != zero_out.shape for o in output):
        raise ValueError(f"output must hold 3 matrices of shape {tuple(zero_out.shape)} (m_L x m_(L-1))")
    target = t_global(net).target
    pad = torch.zeros(net.num_params - k_hidden, dtype=D)
    copies = [net.unflatten(torch.cat([h, pad])) for h in hidden]
    layers = []
    for l in range(1, net.L):
        Ws = [c[l - 1][0] for c in copies]
        W = torch.cat(Ws) if l == 1 else torch.block_diag(*Ws)
        layers.append((W, torch.cat([c[l - 1][1] for c in copies])))
    b_out = torch.zeros(net.widths[-1], dtype=D) if net.output_bias else None
    layers.append((torch.cat(output, dim=1), b_out))
    return target.flatten(layers)


def t_global_copy_basis(net: MLP) -> Tensor:
    """The matrix E (M' x 3 M^[L-1]) whose column (k, p) is the unit vector e_p of theta^[L-1] placed on copy k of
    T_global (:func:`t_global_direction`); E^T H_S(T_global theta) E is the principal sub-Hessian of Lemma 6.1's
    proof, [[H1, H1, -H1], [H1, H1, -H1], [-H1, -H1, H1]] + diag(H2, H2, -H2)."""
    k = check_mlp(net).num_hidden_params
    eye, zero = torch.eye(k, dtype=D), torch.zeros(k, dtype=D)
    cols = [t_global_direction(net, [eye[p] if c == copy else zero for c in range(3)])
            for copy in range(3) for p in range(k)]
    return torch.stack(cols, dim=1)


def lemma61_direction(landscape: Landscape, theta, which: str = "auto", rtol: float = 1e-10) -> SaddleDirection:
    """The negative direction of the proof of paper B Lemma 6.1 under T_global.

    With H2 = H^(2),[L-1]_S(theta) and a unit eigenvector v of eigenvalue lambda: for lambda > 0 the copies move
    by u = (v/2, v/2, v) and u^T H_S(T_global theta) u = -lambda / 2; for lambda < 0 by u = (v, -v, 0) and
    u^T H u = 2 lambda (the Gauss-Newton part cancels in both). ``which``: "max" (largest lambda, needs
    lambda > 0), "min" (smallest, needs lambda < 0) or "auto" (whichever gives the more negative u^T H u).

    Raises:
        ValueError: H^(2),[L-1] = 0 (|lambda| <= rtol max(1, ||H||)): Lemma 6.1 does not apply (see Lemma 6.2),
        or the requested sign does not occur.
    """
    land = _check_landscape(landscape)
    if which not in ("auto", "max", "min"):
        raise ValueError(f"which must be 'auto', 'max' or 'min', got {which!r}")
    theta = _one_theta(land, theta)
    h1, h2 = land.hessian_parts(theta, hidden_only=True)
    lam, vec = torch.linalg.eigh(0.5 * (h2 + h2.T))
    tol = rtol * max(1.0, h1.abs().max().item())
    candidates = []  # (predicted, eigenvalue, v, kind)
    if lam[-1] > tol and which in ("auto", "max"):
        candidates.append((-lam[-1].item() / 2, lam[-1].item(), vec[:, -1], "lemma 6.1, lambda > 0"))
    if lam[0] < -tol and which in ("auto", "min"):
        candidates.append((2 * lam[0].item(), lam[0].item(), vec[:, 0], "lemma 6.1, lambda < 0"))
    if not candidates:
        if lam.abs().max() <= tol:
            raise ValueError(f"H^(2),[L-1] = 0 at theta (max |eigenvalue| {lam.abs().max().item():.1e}): Lemma 6.1 "
                             f"does not apply; if H^(2) != 0 use lemma62_direction (Lemma 6.2)")
        raise ValueError(f"H^(2),[L-1] has no eigenvalue of the sign requested by which={which!r}")
    predicted, eigenvalue, v, kind = min(candidates, key=lambda c: c[0])
    blocks = (v / 2, v / 2, v) if eigenvalue > 0 else (v, -v, torch.zeros_like(v))
    return SaddleDirection(t_global(land.net), t_global_direction(land.net, blocks), eigenvalue, predicted, kind)


def lemma62_direction(landscape: Landscape, theta, rtol: float = 1e-10) -> SaddleDirection:
    """The negative direction of the proof of paper B Lemma 6.2 under T_global.

    Let H2' be the principal submatrix of H^(2)_S(theta) on (theta^[L-1], W^[L]); its W^[L] block is zero
    (f is linear in W^[L]), so when H^(2),[L-1] = 0 it is a symmetric matrix of zero trace, nonzero iff
    H^(2) != 0, hence with a negative eigenvalue lambda. For its unit eigenvector v = (v_h, v_W) the copies 1 and
    2 of T_global move by (v_h, v_W) and (-v_h, -v_W) (v_W in their column blocks of W'^[L]); the first-order
    change of f cancels and u^T H_S(T_global theta) u = 2 lambda. (The direction works whenever H2' has a
    negative eigenvalue, also if H^(2),[L-1] != 0.)

    Raises:
        ValueError: H2' has no eigenvalue below -rtol max(1, ||H^(1)||) (e.g. H^(2) = 0).
    """
    land = _check_landscape(landscape)
    theta = _one_theta(land, theta)
    net = land.net
    h1, h2 = land.hessian_parts(theta)
    k = net.num_hidden_params
    w_out = net.layer_slices[-1][0]
    idx = torch.cat([torch.arange(k), torch.arange(w_out.start, w_out.stop)])
    sub = h2[idx][:, idx]
    lam, vec = torch.linalg.eigh(0.5 * (sub + sub.T))
    if lam[0] >= -rtol * max(1.0, h1.abs().max().item()):
        raise ValueError(f"the (theta^[L-1], W^[L]) block of H^(2) has no negative eigenvalue (smallest "
                         f"{lam[0].item():.3g}): Lemma 6.2's direction does not exist at this point")
    v = vec[:, 0]
    vh, vW = v[:k], v[k:].reshape(net.widths[-1], net.widths[-2])
    u = t_global_direction(net, (vh, -vh, torch.zeros_like(vh)), (vW, -vW, torch.zeros_like(vW)))
    return SaddleDirection(t_global(net), u, lam[0].item(), 2 * lam[0].item(), "lemma 6.2")


# ----------------------------------------------------------------------------- random general compatible
def random_compatible(net: MLP, copies: Sequence[int], nulls: Sequence[int], seed: int = 0,
                      spread: float = 1.0) -> Embedding:
    """A random general compatible embedding T^alpha_I (paper B Def. 5.2) that is a critical embedding.

    Hidden layer l gets ``copies[l-1]`` extra copies of randomly chosen narrow neurons and ``nulls[l-1]`` null
    neurons (appended in this order); alpha is drawn by
    :func:`embedding_principle.critical_sets.random_compatible_alpha` (Conditions 1-2 by construction, scale
    ``spread``). For a net without output bias the null neurons of layer L-1 must output sigma(b*) = 0 (the
    output-bias caveat of paper B Prop. 4.1): their alpha_b is shifted so that b* = 0, which needs sigma(0) = 0.
    The result is checked by ``general_compatible(strict=True)``.
    """
    from .critical_sets import random_compatible_alpha

    hidden = check_mlp(net).widths[1:-1]
    copies = [check_int(c, "copies entry") for c in copies]
    nulls = [check_int(c, "nulls entry") for c in nulls]
    if len(copies) != len(hidden) or len(nulls) != len(hidden) or min(copies + nulls) < 0:
        raise ValueError(f"copies and nulls need one non-negative integer per hidden layer ({len(hidden)} for {net})")
    fix_last = nulls[-1] > 0 and not net.output_bias
    if fix_last and abs(net.activation(torch.zeros(1, dtype=D)).item()) > 1e-15:
        raise ValueError(f"{net} has no output bias, so null neurons of layer {net.L - 1} need a constant output "
                         f"sigma(b*) = 0; sigma(0) != 0 for {net.activation.name}: put null neurons in other layers")
    gen = torch.Generator().manual_seed(check_int(seed, "seed"))
    index_map = [list(range(m)) + torch.randint(m, (c,), generator=gen).tolist() + [NULL] * z
                 for m, c, z in zip(hidden, copies, nulls)]
    alpha = [list(layer) for layer in random_compatible_alpha(net, index_map, seed, check_real(spread, "spread"))]
    if fix_last:  # b*_i = (constant input from null neurons) + alpha_b_i: subtract the current b*
        b_star = general_compatible(net, index_map, alpha, strict=False).b_star[net.L - 1]
        alpha[net.L - 2][1] = alpha[net.L - 2][1] - b_star
    return general_compatible(net, index_map, [tuple(layer) for layer in alpha], strict=True)


# ----------------------------------------------------------------------------- the inertia atlas
class AtlasRow(NamedTuple):
    """One (narrow critical point, critical embedding) pair of :func:`inertia_atlas`.

    narrow, wide: the inertias (negative, zero, positive) before and after; sandwich: max |A^T H_S(T theta) A -
    H_S(theta)| / max(1, max |H_S(theta)|); kernel: max ||H_S(T theta) A y|| over an orthonormal basis y of the
    numerical kernel of H_S(theta) (relative to max(1, ||H_S(T theta)||); 0 if the kernel is trivial);
    grad_narrow, grad_wide: ||nabla R_S|| at theta and T theta; min_narrow, min_wide: the smallest eigenvalues;
    margin: how clearly the counts are separated, in decades: log10 of the smaller of (smallest |lambda| counted
    nonzero) / tol and tol / (largest |lambda| counted zero, at least 1e-13 max |lambda|, the round-off floor),
    over both spectra (large = robust counts; 5 = only exact zeros and well separated nonzero eigenvalues);
    preserved: no count decreased.
    """

    point: str
    embedding: str
    widths: tuple[int, ...]
    narrow: Inertia
    wide: Inertia
    sandwich: float
    kernel: float
    grad_narrow: float
    grad_wide: float
    min_narrow: float
    min_wide: float
    margin: float
    preserved: bool


def inertia_atlas(points: Sequence[tuple[str, Landscape, Tensor]],
                  embeddings: Sequence[tuple[str, Callable[[MLP], Embedding]]],
                  rtol: float = 1e-8) -> list[AtlasRow]:
    """Paper B Thm. 6.2 on every (point, embedding) pair: inertia before and after, with the identities behind it.

    Args:
        points: (name, narrow landscape, theta) triples, theta a (near-)critical point of the landscape.
        embeddings: (name, factory) pairs; ``factory(net)`` returns a critical embedding of ``net`` (so one list
            serves nets of different shapes). Each wide landscape uses the same data and loss.
        rtol: the zero tolerance of :func:`~embedding_principle.landscape.inertia`, relative to max |lambda|.

    Returns:
        One :class:`AtlasRow` per pair, points outer, embeddings inner.
    """
    rows = []
    for name, land, theta in points:
        land = _check_landscape(land)
        theta = _one_theta(land, theta)
        H = land.hessian(theta)
        lam, vec = torch.linalg.eigh(0.5 * (H + H.T))
        before = inertia(lam, rtol=rtol)
        kernel = vec[:, lam.abs() <= before.tol]
        g_narrow = land.grad(theta).norm().item()
        for emb_name, factory in embeddings:
            T = factory(land.net)
            if not isinstance(T, Embedding) or T.source != land.net:
                raise ValueError(f"embedding {emb_name!r} must return an Embedding of {land.net}")
            wide = Landscape(T.target, land.x, land.y, land.loss)
            theta_w = T(theta)
            Hw = wide.hessian(theta_w)
            lam_w = torch.linalg.eigvalsh(0.5 * (Hw + Hw.T))
            after = inertia(lam_w, rtol=rtol)
            A = T.A
            sandwich = (A.T @ Hw @ A - H).abs().max().item() / max(1.0, H.abs().max().item())
            ker = (Hw @ (A @ kernel)).norm(dim=0).max().item() / max(1.0, lam_w.abs().max().item()) \
                if kernel.shape[1] else 0.0
            ok = after.negative >= before.negative and after.zero >= before.zero and after.positive >= before.positive
            margin = min(_margin(lam, before.tol), _margin(lam_w, after.tol))
            rows.append(AtlasRow(name, emb_name, T.target.widths, before, after, sandwich, ker, g_narrow,
                                 wide.grad(theta_w).norm().item(), lam[0].item(), lam_w[0].item(), margin, ok))
    return rows


def _margin(lam: Tensor, tol: float, floor: float = 1e-13) -> float:
    """log10 of min(smallest |lambda| above tol / tol, tol / largest |lambda| at or below tol); inf if unbounded.

    Zero eigenvalues below ``floor`` max |lambda| are round-off (exact zeros): they are counted at the floor, so the
    result does not depend on round-off (at most log10(tol / (floor max|lambda|)) = 5 decades for rtol = 1e-8).
    """
    a = lam.abs()
    ratios = []
    if (a > tol).any():
        ratios.append(a[a > tol].min().item() / tol)
    if (a <= tol).any():
        ratios.append(tol / max(a[a <= tol].max().item(), floor * a.max().item(), 1e-300))
    return math.log10(min(ratios)) if ratios else math.inf


def format_atlas(rows: Sequence[AtlasRow]) -> str:
    """A plain-text table of :func:`inertia_atlas` rows: inertias (neg, zero, pos) and the residuals."""
    head = (f"{'narrow critical point':<28} {'embedding':<22} {'before':>12} {'after':>12} "
            f"{'sandwich':>9} {'kernel':>9} {'||grad||':>9} {'margin':>7}")
    lines = [head, "-" * len(head)]
    fmt = lambda i: f"({i.negative},{i.zero},{i.positive})"  # noqa: E731
    for r in rows:
        lines.append(f"{r.point:<28} {r.embedding:<22} {fmt(r.narrow):>12} {fmt(r.wide):>12} "
                     f"{r.sandwich:>9.1e} {r.kernel:>9.1e} {r.grad_wide:>9.1e} {r.margin:>7.1f}")
    return "\n".join(lines)


def plot_atlas(rows: Sequence[AtlasRow], family: Callable[[str], str] = lambda name: name):
    """Summary figure of :func:`inertia_atlas`: the change of each count (negative, zero, positive) from theta to
    T(theta), one marker per value and embedding family (area ~ number of pairs), coloured by
    ``family(embedding name)``. Thm. 6.2 says that no marker lies below the dashed zero line."""
    import matplotlib.pyplot as plt

    from .plotting import FIGSIZE, PALETTE

    fams = list(dict.fromkeys(family(r.embedding) for r in rows))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    width = 0.8 / len(fams)
    for c, fam in enumerate(fams):
        for k in range(3):
            hits = Counter(r.wide[k] - r.narrow[k] for r in rows if family(r.embedding) == fam)
            xs = [k - 0.4 + width * (c + 0.5)] * len(hits)
            ax.scatter(xs, list(hits), s=[10 + 6 * n for n in hits.values()], color=PALETTE[c % len(PALETTE)],
                       label=fam if k == 0 else None, zorder=3)
    ax.axhline(0, ls="--", lw=1, color="0.4", zorder=1)
    ax.set_ylim(bottom=-1)
    ax.set_xticks(range(3), ["negative", "zero", "positive"])
    ax.set_xlabel("eigenvalue sign")
    ax.set_ylabel("count at T(theta) minus count at theta")
    ax.legend(loc="upper left", ncol=2, fontsize="small")
    return fig


# ----------------------------------------------------------------------------- descent
def most_negative_direction(landscape: Landscape, theta) -> tuple[float, Tensor]:
    """(lambda_min, v): the smallest eigenvalue of H_S(theta) and a unit eigenvector, signed so that its entry of
    largest magnitude is positive (a machine-independent choice of the sign that eigh leaves open)."""
    land = _check_landscape(landscape)
    H = land.hessian(_one_theta(land, theta))
    lam, vec = torch.linalg.eigh(0.5 * (H + H.T))
    v = vec[:, 0]
    return lam[0].item(), v * torch.sign(v[v.abs().argmax()])


class DescentRow(NamedTuple):
    """R_S(theta +- t u) - R_S(theta) for a unit direction u, and the quadratic prediction lambda t^2 / 2."""

    t: float
    plus: float
    minus: float
    predicted: float


def descent_check(landscape: Landscape, theta, u, steps: Sequence[float]) -> tuple[float, list[DescentRow]]:
    """Move from a critical point along +-u (normalised) and compare the loss change with lambda t^2 / 2.

    lambda = u^T H_S(theta) u / |u|^2 (a Hessian-vector product). At a critical point R_S(theta + t u) =
    R_S(theta) + lambda t^2 / 2 + O(t^3), so along a negative-curvature direction both signs lower the loss.

    Returns:
        (lambda, rows), one :class:`DescentRow` per step size t > 0.
    """
    land = _check_landscape(landscape)
    theta = _one_theta(land, theta)
    u = _direction(theta, u)
    if u.norm() == 0:
        raise ValueError("u must be a nonzero direction")
    u = u / u.norm()
    lam = float(u @ land.hvp(theta, u))
    R0 = land.risk(theta).item()
    rows = []
    for t in steps:
        t = check_real(t, "step size", positive=True)
        rows.append(DescentRow(t, land.risk(theta + t * u).item() - R0, land.risk(theta - t * u).item() - R0,
                               lam * t * t / 2))
    return lam, rows
