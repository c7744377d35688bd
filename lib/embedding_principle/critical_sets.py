"""The critical sets swept out by general compatible embeddings (paper B section 5 and section 6.1).

Fix a narrow net NN({m_l}), a total pull-back index mapping I (paper B Def. 5.1) and a critical point
theta_c. Every tuple alpha satisfying Conditions 1-2 gives a critical point T^alpha_I(theta_c) of the wide
net (Thm. 5.1), so the *compatible set* A_I = {alpha : Conditions 1-2 hold} is mapped onto a set of critical
points {T^alpha_I(theta_c) : alpha in A_I}. Since T^alpha_I(theta) = (alpha^[l] o W^[l]_inter,
alpha^[l]_b + b^[l]_inter)_l is linear in alpha for fixed theta (Def. 5.2) and injective when every narrow
weight is nonzero, that set is a linear image of A_I: it has the dimension of A_I and is curved exactly
when A_I is.

This module makes A_I concrete and measurable:

* :class:`CompatibleFamily` -- a smooth *constructive* parameterization p -> alpha(p) of A_I for a fixed I
  (every compatible alpha is reached), with :meth:`~CompatibleFamily.sample` drawing random members;
  :func:`random_compatible_alpha` is the one-line sampler.
* :func:`compatibility_multipliers` -- the auxiliary scalars beta^[l]_j of Condition 1 and the effective
  biases b*^[l]_i of Condition 2 of an existing embedding (``Embedding.beta`` and ``Embedding.b_star``, read
  off its alpha by the library's checker in :mod:`~embedding_principle.embeddings`).
* :func:`heuristic_dimension` -- paper B section 6.1's estimate K + sum_l K_l K_{l-1}; :func:`dimension_count`
  -- the same count with the Condition-2 equations of effective neurons subtracted (our derivation, not the
  paper's).
* :func:`numerical_rank`, :func:`sampled_dimension` -- the local dimension of the embedded set measured
  from differences of sampled points; :func:`kernel_excess` -- the part of the Hessian kernel outside its
  tangent space; :func:`zero_output_freedom`, :func:`zero_output_critical_point` -- critical directions of
  "dead" null neurons that no compatible alpha produces (our observation).
* :func:`chord_midpoint` -- the curvature test (the midpoint of two embedded critical points is not critical
  when A_I is curved).
* :func:`lemma_5_1_check` -- the hypotheses of paper B Lemma 5.1 (copied features, errors scaled by beta).
* :func:`draw_compatible` -- paper B Figs. 5.1-5.5 drawn from actual parameters (alpha on the edges, beta
  or b* on the neurons, the sums of the conditions with their values).

How the parameterization works (notation of paper B: copies(l, k) = I_l^{-1}(k), c = |copies|).
beta: for each narrow neuron k of a hidden layer, shares beta_{copies(l,k)} = 1/c + (r - mean r); they sum
to 1, which Condition 1 forces (sum the backward equation over the copies of s and use beta^[L] = 1).
alpha^[l], block by block, with beta^[0] = beta^[L] = 1:

* effective rows copies(l,k) x effective columns copies(l-1,s): 1 beta_cols^T + P_beta Z P_1 with
  P_beta = I - beta beta^T / |beta|^2 (rows) and P_1 = I - 11^T / c (columns). Row sums are 1 (forward),
  beta_rows^T block = beta_cols^T (backward), and the (c_k - 1)(c_s - 1) free entries of Z cover all solutions;
* null rows x copies(l-1,s): zero-sum rows (forward for a null neuron);
* effective rows x null columns: columns beta-orthogonal per copy group (backward for a null neuron), then
  projected so that the constants sigma(b*) coming from the null neurons cancel in every effective row
  (Condition 2);
* null rows x null columns and the biases alpha_b of null neurons: free (they set b*);
* alpha_b = 0 for effective neurons (Condition 2).

With ``condition2="sum"`` the last two items are replaced by the weaker rule that only the total constant
sum_null alpha_ij sigma(b*_j) + alpha_b_i received by an effective neuron vanishes (no projection; alpha_b absorbs
the constants). Theorem 5.1's proof still goes through, and this larger set has exactly the dimension of paper
B's heuristic; the library's checker follows the paper literally and flags these tuples.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .diagrams import draw_network, neuron_positions
from .embeddings import NULL, Embedding, check_index_map, general_compatible
from .landscape import Landscape
from .network import MLP, as_tensor, check_int, check_mlp, check_real
from .plotting import PALETTE
from .representation import copy_residuals

__all__ = ["CompatibleFamily", "random_compatible_alpha", "Multipliers", "compatibility_multipliers",
           "DimensionCount", "heuristic_dimension", "dimension_count", "zero_output_freedom", "LocalDimension",
           "numerical_rank", "sampled_dimension", "KernelExcess", "kernel_excess", "zero_output_critical_point",
           "ChordMidpoint", "chord_midpoint", "Lemma51", "lemma_5_1_check", "draw_compatible"]

D = torch.float64


# ----------------------------------------------------------------------------- the compatible set A_I
class CompatibleFamily:
    """A smooth parameterization p -> alpha(p) of all alpha satisfying Conditions 1-2 for a fixed total I.

    Args:
        net: the narrow architecture NN({m_l}).
        index_map: the pull-back index mapping, one sequence I_l per hidden layer l = 1..L-1 with entries in
            0..m_l-1 or ``NULL`` (paper B Def. 5.1); it must be total.
        condition2: ``"paper"`` (Condition 2 as in paper B: alpha_b = 0 and cancelling constants for effective
            neurons) or ``"sum"`` (only their total vanishes; see the module docstring).

    Attributes: ``net``, ``target`` (the wide MLP), ``index_map`` (validated tuples), ``num_params`` (length
    of p; larger than the dimension of A_I because the construction is redundant, see the module docstring).
    p = 0 gives equal shares beta = 1/c, alpha = 1 beta^T blocks and null neurons with zero weights and bias 0.
    The map is smooth except where every null neuron of a layer has sigma(b*) = 0 (there Condition 2 is void).
    Without an output bias, null neurons of layer L-1 with sigma(b*) != 0 are still produced; the library flags
    them (paper B Prop. 4.1 needs b^[L]), so use nets with an output bias for Thm. 5.1.
    """

    def __init__(self, net: MLP, index_map: Sequence[Sequence[int]], condition2: str = "paper") -> None:
        if condition2 not in ("paper", "sum"):
            raise ValueError(f"condition2 must be 'paper' or 'sum', got {condition2!r}")
        self.condition2 = condition2
        self.net = check_mlp(net)
        self.index_map = check_index_map(net, index_map)
        self.target = net.with_widths([net.widths[0], *map(len, self.index_map), net.widths[-1]])
        I = [list(range(net.widths[0])), *map(list, self.index_map), list(range(net.widths[-1]))]
        self._I = I
        self._copies = [[[i for i, v in enumerate(I_l) if v == k] for k in range(m)] for I_l, m in zip(I, net.widths)]
        self._nulls = [[i for i, v in enumerate(I_l) if v == NULL] for I_l in I]
        self._eff = [[i for i, v in enumerate(I_l) if v != NULL] for I_l in I]
        self._layout = self._make_layout()
        self.num_params = sum(size for _, size in self._layout)
        self._ones = None  # (inter embedding) built lazily by points()

    def __repr__(self) -> str:
        return f"CompatibleFamily({self.net} -> {self.target}, I={self.index_map}, {self.num_params} parameters)"

    # --- layout of p ------------------------------------------------------------------
    def _make_layout(self) -> list[tuple[tuple, int]]:
        L, m = self.net.L, self.net.widths
        out = []
        for l in range(1, L):
            out += [(("beta", l, k), len(self._copies[l][k])) for k in range(m[l])]
        for l in range(1, L + 1):
            for k in range(m[l]):
                for s in range(m[l - 1]):
                    out.append((("block", l, k, s), len(self._copies[l][k]) * len(self._copies[l - 1][s])))
            n_eff_prev, n_eff = len(self._eff[l - 1]), len(self._eff[l])
            out += [(("null_row", l, i), n_eff_prev) for i in self._nulls[l]]
            out += [(("null_col", l, j), n_eff) for j in self._nulls[l - 1]]
            out += [(("null_null", l), len(self._nulls[l]) * len(self._nulls[l - 1]))]
            out += [(("null_bias", l), len(self._nulls[l]))]
        return [(key, size) for key, size in out if size > 0]

    def _unpack(self, p) -> dict:
        p = as_tensor(p, "p").to(D)
        if p.shape != (self.num_params,):
            raise ValueError(f"p must have shape ({self.num_params},) for {self!r}, got {tuple(p.shape)}")
        out, start = {}, 0
        for key, size in self._layout:
            out[key] = p[start:start + size]
            start += size
        return out

    # --- beta, alpha, b* --------------------------------------------------------------
    def _beta(self, parts: dict) -> list[Tensor]:
        beta = [torch.ones(len(self._I[0]), dtype=D)]
        for l in range(1, self.net.L):
            b = torch.zeros(len(self._I[l]), dtype=D)
            for k, rows in enumerate(self._copies[l]):
                r = parts.get(("beta", l, k), torch.zeros(len(rows), dtype=D))
                b[rows] = r - r.mean() + 1.0 / len(rows)
            beta.append(b)
        beta.append(torch.ones(len(self._I[-1]), dtype=D))
        return beta

    def beta(self, p) -> list[Tensor]:
        """beta^[l] for l = 0..L (beta^[0] = beta^[L] = 1, 0 on null neurons): Condition 1's auxiliary scalars."""
        return self._beta(self._unpack(p))

    def _build(self, p) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor], list[Tensor]]:
        parts = self._unpack(p)
        beta = self._beta(parts)
        sigma, L = self.net.activation, self.net.L
        layers, b_star = [], [torch.zeros(len(self._I[0]), dtype=D)]
        for l in range(1, L + 1):
            A = torch.zeros(len(self._I[l]), len(self._I[l - 1]), dtype=D)
            for k, rows in enumerate(self._copies[l]):
                br = beta[l][rows]
                P_beta = torch.eye(len(rows), dtype=D) - torch.outer(br, br) / br.dot(br)
                for s, cols in enumerate(self._copies[l - 1]):
                    Z = parts.get(("block", l, k, s), torch.zeros(len(rows) * len(cols), dtype=D))
                    P_1 = torch.eye(len(cols), dtype=D) - 1.0 / len(cols)
                    block = torch.outer(torch.ones(len(rows), dtype=D), beta[l - 1][cols])
                    A[np.ix_(rows, cols)] = block + P_beta @ Z.reshape(len(rows), len(cols)) @ P_1
                for j in self._nulls[l - 1]:
                    v = parts[("null_col", l, j)].reshape(len(self._eff[l]), 1)
                    A[np.ix_(rows, [j])] = P_beta @ v[[self._eff[l].index(i) for i in rows]]
            eff, nul, nul_prev = self._eff[l], self._nulls[l], self._nulls[l - 1]
            for i in nul:
                v = parts[("null_row", l, i)] if self._eff[l - 1] else torch.zeros(0, dtype=D)
                for s, cols in enumerate(self._copies[l - 1]):
                    idx = [self._eff[l - 1].index(j) for j in cols]
                    A[i, cols] = v[idx] - v[idx].mean()
            if nul and nul_prev:
                A[np.ix_(nul, nul_prev)] = parts[("null_null", l)].reshape(len(nul), len(nul_prev))
            const = sigma(b_star[l - 1][nul_prev]) if nul_prev else torch.zeros(0, dtype=D)
            ab = torch.zeros(len(self._I[l]), dtype=D)
            if nul_prev and self.condition2 == "sum":  # effective biases absorb the constants from null neurons
                ab[eff] = -(A[np.ix_(eff, nul_prev)] @ const)
            elif nul_prev and const.dot(const) > 0:  # Condition 2: constants from null neurons cancel
                block = A[np.ix_(eff, nul_prev)]
                A[np.ix_(eff, nul_prev)] = block - torch.outer(block @ const, const) / const.dot(const)
            new_b_star = torch.zeros(len(self._I[l]), dtype=D)
            if nul:
                ab[nul] = parts[("null_bias", l)]
                new_b_star[nul] = ab[nul] + (A[np.ix_(nul, nul_prev)] @ const if nul_prev else 0.0)
            layers.append((A, ab))
            b_star.append(new_b_star)
        return layers, beta, b_star

    def alpha(self, p) -> list[tuple[Tensor, Tensor | None]]:
        """The compatible tuple alpha(p) as [(alpha^[l], alpha_b^[l])] (alpha_b^[L] None without output bias)."""
        layers = self._build(p)[0]
        return [(A, ab if self.net.has_bias(l) else None) for l, (A, ab) in enumerate(layers, 1)]

    def b_star(self, p) -> list[Tensor]:
        """The effective biases b*^[l] of Condition 2 for l = 0..L (nonzero only on null neurons)."""
        return self._build(p)[2]

    def embedding(self, p, strict: bool = True) -> Embedding:
        """T^alpha(p)_I, built and checked against Conditions 1-2 by :func:`~embedding_principle.general_compatible`."""
        return general_compatible(self.net, self.index_map, self.alpha(p), strict=strict)

    def sample(self, seed: int, scale: float = 1.0) -> Tensor:
        """p ~ N(0, scale^2 I): a random point of the parameterization (scale 0 is allowed: equal shares)."""
        seed = check_int(seed, "seed")
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale must be a finite non-negative number, got {scale!r}")
        gen = torch.Generator().manual_seed(seed)
        return scale * torch.randn(self.num_params, generator=gen, dtype=D)

    def points(self, ps, theta) -> Tensor:
        """T^alpha(p)_I(theta) for every row p of ``ps`` (shape (N, num_params) or (num_params,)).

        Uses linearity in alpha (Def. 5.2): weights alpha o W_inter, biases alpha_b + b_inter, with
        (W_inter, b_inter) = T^1_I(theta) computed once by the library's embedding with alpha = 1 weights.
        """
        theta = self.net.check_one_theta(theta, "points (of one narrow theta)")
        ps = as_tensor(ps, "ps").to(D)
        single = ps.ndim == 1
        ps = ps.reshape(-1, ps.shape[-1])
        if self._ones is None:
            ones = [(torch.ones(len(self._I[l]), len(self._I[l - 1]), dtype=D),
                     torch.zeros(len(self._I[l]), dtype=D) if self.net.has_bias(l) else None)
                    for l in range(1, self.net.L + 1)]
            mask = torch.zeros(self.target.num_params, dtype=torch.bool)
            for _, b in self.target.layer_slices:
                if b is not None:
                    mask[b] = True
            self._ones = (general_compatible(self.net, self.index_map, ones, strict=False), mask)
        T1, is_bias = self._ones
        inter = T1(theta)
        flat = torch.stack([self.target.flatten(self.alpha(p)) for p in ps])
        out = torch.where(is_bias, flat + inter, flat * inter)
        return out[0] if single else out


def random_compatible_alpha(net: MLP, index_map: Sequence[Sequence[int]], seed: int,
                            scale: float = 1.0) -> list[tuple[Tensor, Tensor | None]]:
    """A random tuple alpha satisfying Conditions 1-2 of paper B for the total index map I.

    ``CompatibleFamily(net, index_map).alpha(p)`` at p ~ N(0, scale^2): random shares beta around 1/c, random
    blocks, random null-neuron weights and biases. Pass it to :func:`~embedding_principle.general_compatible`.
    """
    family = CompatibleFamily(net, index_map)
    return family.alpha(family.sample(seed, scale))


# ----------------------------------------------------------------------------- beta and b* of an embedding
class Multipliers(NamedTuple):
    """beta^[l] (Condition 1) and b*^[l] (Condition 2) per layer l = 0..L; index 0 (the input) holds None."""

    beta: list
    b_star: list


def compatibility_multipliers(T: Embedding) -> Multipliers:
    """The auxiliary scalars of Conditions 1-2 of a general compatible embedding, read off its alpha.

    beta^[L] = 1 and beta^[l-1]_j = sum_{i in I_l^{-1}(k)} beta^[l]_i alpha^[l]_{ij} (the common value over k
    when Condition 1 holds; 0 on null neurons); b*^[l]_i = sum_{null j} alpha^[l]_{ij} sigma(b*^[l-1]_j) +
    alpha_b^[l]_i on null neurons i, 0 on effective ones. Both are computed by the same helpers that check
    the conditions in :mod:`~embedding_principle.embeddings` (:attr:`Embedding.beta`, :attr:`Embedding.b_star`);
    they are meaningful when T has no violations.
    """
    if not isinstance(T, Embedding):
        raise TypeError(f"T must be an Embedding, got {type(T).__name__}")
    return Multipliers([None, *T.beta[1:]], [None, *T.b_star[1:]])


# ----------------------------------------------------------------------------- dimension counts
class DimensionCount(NamedTuple):
    """Free parameters of the compatible set A_I for a fixed I (paper B section 6.1, and our refinement).

    ``beta`` = K - m_null shares, ``alpha`` = sum_l K_l K_{l-1} entries of alpha given beta (Condition 1),
    ``null_biases`` = m_null, ``condition2`` = minus the number of independent Condition-2 equations of
    effective neurons that receive constants from null neurons (not subtracted in the paper's estimate);
    ``heuristic`` = K + sum_l K_l K_{l-1} (paper B) and ``total`` = heuristic + condition2.
    """

    K: int
    beta: int
    alpha: int
    null_biases: int
    condition2: int
    heuristic: int
    total: int


def dimension_count(net: MLP, index_map: Sequence[Sequence[int]]) -> DimensionCount:
    """Count the dimension of A_I (and of the embedded critical set) at a generic compatible alpha.

    The paper's heuristic (section 6.1) counts K - m_null free beta's, sum_l K_l K_{l-1} free entries of alpha
    given beta (m'_l m'_{l-1} unknowns minus m'_l m_{l-1} + m_l m'_{l-1} - m_l m_{l-1} independent equations of
    Condition 1 per layer) and m_null free effective biases: K + sum_l K_l K_{l-1} with K_0 = K_L = 0.
    Condition 2 also asks every effective neuron of layer l to cancel the constants sigma(b*) of the null
    neurons of layer l-1; given Condition 1 these are e_l - m_l independent equations (e_l = effective
    neurons of layer l) whenever layer l-1 has a null neuron with sigma(b*) != 0 -- our count, derived in the
    chapter "General compatible embeddings", subtracts them (``condition2``).
    """
    I = check_index_map(check_mlp(net), index_map)
    L, m = net.L, net.widths
    wide = [m[0], *map(len, I), m[-1]]
    nulls = [0, *(sum(v == NULL for v in I_l) for I_l in I), 0]
    K_l = [w - n for w, n in zip(wide, m)]
    K, m_null = sum(K_l), sum(nulls)
    alpha = sum(K_l[l] * K_l[l - 1] for l in range(1, L + 1))
    cond2 = -sum(wide[l] - nulls[l] - m[l] for l in range(2, L + 1) if nulls[l - 1] > 0)
    heuristic = K + alpha
    return DimensionCount(K, K - m_null, alpha, m_null, cond2, heuristic, heuristic + cond2)


def heuristic_dimension(net: MLP, index_map: Sequence[Sequence[int]]) -> int:
    """Paper B section 6.1: K + sum_{l in [L]} K_l K_{l-1}, K_l = m'_l - m_l, K_0 = K_L = 0 (a heuristic)."""
    return dimension_count(net, index_map).heuristic


def zero_output_freedom(T: Embedding, theta, rtol: float = 1e-12) -> int:
    """Extra critical directions at T(theta) that no compatible alpha produces (our observation, not the paper's).

    Call a hidden neuron *dead* if no path of nonzero weights leads from it to the output (layer L-1: all its
    outgoing weights vanish; layer l < L-1: all its weights into live neurons of layer l+1 vanish). A dead null
    neuron j of layer l does not influence f, so its incoming weights may move until its output is *no longer
    constant*; the point stays critical as long as the gradient entries E_S e^[l+1]_i f^[l]_j of its (zero)
    weights into the live effective neurons i vanish. Those errors are copies of the m_(l+1) narrow errors and
    f^[l-1] spans the m_(l-1) narrow features plus constants (constants are harmless: E_S e^[l+1] = 0 at a
    critical point), so generically max(m_(l-1) - m_(l+1), 0) new directions survive per dead null neuron
    (m_L = d'). They break representation preservation, so no critical embedding produces them. Returns their
    total count (see :func:`zero_output_critical_point` to follow one). Dead *effective* copies (a split share of
    exactly 0, a non-generic alpha) are not counted: they add even more zero eigenvalues, from a singular point
    of the critical set.
    """
    if not isinstance(T, Embedding):
        raise TypeError(f"T must be an Embedding, got {type(T).__name__}")
    rtol = check_real(rtol, "rtol", positive=True)
    wide = T.target.unflatten(T(T.source.check_theta(theta)))
    m, L = T.source.widths, T.source.L
    tol = rtol * max(W.abs().max().item() for W, _ in wide)
    live = [True] * m[L]  # the outputs
    total = 0
    for l in range(L - 1, 0, -1):
        W_next = wide[l][0][torch.tensor(live)]  # weights from layer l into the live neurons of layer l+1
        dead = (W_next.abs() <= tol).all(0).tolist() if W_next.shape[0] else [True] * W_next.shape[1]
        total += sum(max(m[l - 1] - m[l + 1], 0) for j, d in enumerate(dead) if d and T.index_map[l - 1][j] == NULL)
        live = [not d for d in dead]
    return total


# ----------------------------------------------------------------------------- measured dimension
@dataclass(frozen=True)
class LocalDimension:
    """Numerical rank of a set of difference vectors.

    ``dimension``: number of singular values above ``tol`` = rtol * max; ``singular_values``: all of them,
    descending; ``gap``: s_d / s_(d+1), the separation between the last counted and the first dropped value
    (inf if none is dropped); ``basis``: orthonormal rows (dimension, M') spanning the differences.
    """

    dimension: int
    singular_values: Tensor
    tol: float
    gap: float
    basis: Tensor


def numerical_rank(differences, rtol: float = 1e-6) -> LocalDimension:
    """The numerical rank of the rows of ``differences`` (N, M'): singular values > rtol * largest."""
    d = as_tensor(differences, "differences").to(D)
    if d.ndim != 2 or d.shape[0] < 1:
        raise ValueError(f"differences must be a non-empty matrix (N, M'), got shape {tuple(d.shape)}")
    rtol = check_real(rtol, "rtol", positive=True)
    _, s, Vh = torch.linalg.svd(d, full_matrices=False)
    tol = rtol * s.max().item()
    rank = int((s > tol).sum()) if s.max() > 0 else 0
    gap = math.inf if rank >= s.numel() else (s[rank - 1] / s[rank]).item() if rank else 0.0
    return LocalDimension(rank, s, tol, gap, Vh[:rank])


def sampled_dimension(family: CompatibleFamily, theta, p0=None, n_samples: int | None = None, eps: float = 1e-4,
                      seed: int = 0, rtol: float = 1e-6) -> LocalDimension:
    """Local dimension of the embedded set {T^alpha_I(theta) : alpha in A_I} at T^alpha(p0)_I(theta).

    Draws ``n_samples`` directions xi ~ N(0, I) of the parameterization (default 2 * num_params, enough to
    exhaust every tangent direction), maps the nearby compatible alphas p0 +- eps xi, and returns the numerical
    rank of the chords (T^alpha(p0 + eps xi)(theta) - T^alpha(p0 - eps xi)(theta)) / (2 eps). The symmetric
    difference cancels the curvature of the set to second order, so the chords span the tangent space up to
    O(eps^2) and the rank is the dimension of the set at that point.
    """
    if not isinstance(family, CompatibleFamily):
        raise TypeError(f"family must be a CompatibleFamily, got {type(family).__name__}")
    p0 = family.sample(seed) if p0 is None else as_tensor(p0, "p0").to(D)
    n = 2 * family.num_params if n_samples is None else check_int(n_samples, "n_samples", 1)
    eps = check_real(eps, "eps", positive=True)
    xi = torch.randn(n, family.num_params, generator=torch.Generator().manual_seed(int(seed) + 1), dtype=D)
    plus, minus = family.points(p0 + eps * xi, theta), family.points(p0 - eps * xi, theta)
    return numerical_rank((plus - minus) / (2 * eps), rtol)


class KernelExcess(NamedTuple):
    """The Hessian kernel at an embedded point compared with the tangent space of the embedded set.

    ``kernel_dim``: zero eigenvalues (|lambda| <= rtol max |lambda|); ``tangent_dim``: rows of the tangent basis;
    ``tangent_in_kernel``: max_u ||H u|| / max |lambda| over the orthonormal tangent basis (0: the tangent space
    lies in the kernel, as it must on a set of critical points); ``excess``: orthonormal rows spanning the part of
    the kernel orthogonal to the tangent space (kernel_dim - tangent_dim rows when the tangent lies in the kernel).
    """

    kernel_dim: int
    tangent_dim: int
    tangent_in_kernel: float
    excess: Tensor


def kernel_excess(hessian, tangent, rtol: float = 1e-8) -> KernelExcess:
    """Split the kernel of a symmetric ``hessian`` (M', M') into the span of ``tangent`` (rows) and the rest."""
    H = as_tensor(hessian, "hessian").to(D)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"hessian must be a square matrix, got shape {tuple(H.shape)}")
    U = as_tensor(tangent, "tangent").to(D)
    if U.ndim != 2 or U.shape[1] != H.shape[0]:
        raise ValueError(f"tangent must have shape (d, {H.shape[0]}), got {tuple(U.shape)}")
    rtol = check_real(rtol, "rtol", positive=True)
    lam, vec = torch.linalg.eigh(0.5 * (H + H.T))
    scale = lam.abs().max().item()
    kernel = vec[:, lam.abs() <= rtol * scale].T
    Q = torch.linalg.qr(U.T).Q if U.shape[0] else U.T  # orthonormal columns spanning the tangent
    rest = kernel - (kernel @ Q) @ Q.T
    excess = numerical_rank(rest, 1e-6).basis if rest.shape[0] and rest.abs().max() > 1e-10 else rest[:0]
    in_kernel = (H @ Q).norm(dim=0).max().item() / scale if Q.shape[1] else 0.0
    return KernelExcess(kernel.shape[0], U.shape[0], in_kernel, excess)


def zero_output_critical_point(landscape: Landscape, theta, layer: int, neuron: int, direction, t: float,
                               tol: float = 1e-13, max_iter: int = 30) -> Tensor:
    """Move the incoming weights of a hidden neuron whose outgoing weights are all zero, staying critical.

    If W^[l+1]_{:,j} = 0, neither f_theta nor any gradient entry except nabla_{W^[l+1]_{:,j}} R_S =
    E_S e^[l+1] sigma(W^[l]_{j,:} f^[l-1] + b^[l]_j) depends on the incoming parameters (W^[l]_{j,:}, b^[l]_j)
    of neuron j. Starting from theta with those parameters shifted by t * direction (a vector of length
    m_{l-1} + 1), minimum-norm Gauss-Newton steps on these m_{l+1} equations return a critical point with the
    same output function (to ``tol`` in the Euclidean norm of the gradient). Raises ValueError if the outgoing
    weights are not zero or the iteration does not converge.
    """
    if not isinstance(landscape, Landscape):
        raise TypeError(f"landscape must be a Landscape, got {type(landscape).__name__}")
    net = landscape.net
    theta = landscape.check_theta(theta).clone()
    layer = net.check_layer(layer)
    neuron = net.check_neuron(layer, neuron)
    (w, b), (w_next, _) = net.layer_slices[layer - 1], net.layer_slices[layer]
    m_in, m_next = net.widths[layer - 1], net.widths[layer + 1]
    incoming = torch.tensor([w.start + neuron * m_in + k for k in range(m_in)] + [b.start + neuron])
    outgoing = torch.tensor([w_next.start + i * net.widths[layer] + neuron for i in range(m_next)])
    if theta[outgoing].abs().max() > 1e-12 * theta.abs().max():
        raise ValueError(f"neuron {neuron} of layer {layer} has nonzero outgoing weights; its incoming weights matter")
    theta[outgoing] = 0.0
    direction = as_tensor(direction, "direction").to(D)
    if direction.shape != (m_in + 1,):
        raise ValueError(f"direction must have {m_in + 1} entries (incoming weights and bias), "
                         f"got {tuple(direction.shape)}")
    t = float(t)

    def equations(v: Tensor) -> Tensor:
        return landscape.grad(theta.index_put((incoming,), v))[outgoing]

    v = theta[incoming] + t * direction
    for _ in range(max_iter):
        F = equations(v)
        if F.norm() <= tol:
            return theta.index_put((incoming,), v)
        J = torch.func.jacrev(equations)(v)
        v = v - torch.linalg.pinv(J) @ F
    raise ValueError(f"zero_output_critical_point did not converge: ||equations|| = {equations(v).norm().item():.2e}")


# ----------------------------------------------------------------------------- curvature
@dataclass(frozen=True)
class ChordMidpoint:
    """The chord test between two embedded points theta_a = T_a(theta), theta_b = T_b(theta) (same I).

    ``grad_a``, ``grad_b``, ``grad_mid``: ||nabla R_S|| at the ends and at the midpoint (theta_a + theta_b)/2;
    ``output_gap_mid``: max |f_mid - f_theta| on the landscape's inputs; ``length``: ||theta_a - theta_b||;
    ``violations_mid``: the library's verdict on the midpoint's alpha = (alpha_a + alpha_b)/2.
    """

    grad_a: float
    grad_b: float
    grad_mid: float
    output_gap_mid: float
    length: float
    violations_mid: tuple[str, ...]


def chord_midpoint(T_a: Embedding, T_b: Embedding, theta, landscape: Landscape) -> ChordMidpoint:
    """Is the midpoint of two embedded critical points still critical? (curvature test of paper B section 6.1)

    T^alpha_I(theta) is linear in alpha, so the midpoint of T_a(theta) and T_b(theta) is T^alpha_mid_I(theta) with
    alpha_mid = (alpha_a + alpha_b)/2. Condition 1 forward and Condition 2 (without null neurons) are linear in
    alpha, so the midpoint keeps the output; Condition 1 backward couples alpha with beta and is not convex, so
    when the compatible set is curved the midpoint is generally not critical.
    ``landscape`` is the wide net's R_S (its net must be ``T_a.target``).
    """
    for name, T in (("T_a", T_a), ("T_b", T_b)):
        if not isinstance(T, Embedding):
            raise TypeError(f"{name} must be an Embedding, got {type(T).__name__}")
    if T_a.source != T_b.source or T_a.index_map != T_b.index_map:
        raise ValueError("T_a and T_b must embed the same narrow net with the same index map")
    if not isinstance(landscape, Landscape) or landscape.net != T_a.target:
        raise ValueError(f"landscape must be a Landscape of the wide net {T_a.target}")
    theta = T_a.source.check_theta(theta)
    a, b = T_a(theta), T_b(theta)
    mid = 0.5 * (a + b)
    alpha_mid = [(0.5 * (Wa + Wb), None if ba is None else 0.5 * (ba + bb))
                 for (Wa, ba), (Wb, bb) in zip(T_a.alpha, T_b.alpha)]
    verdict = general_compatible(T_a.source, T_a.index_map, alpha_mid, strict=False).violations
    x = landscape.x
    gap = (T_a.target.forward(mid, x) - T_a.source.forward(theta, x)).abs().max().item()
    return ChordMidpoint(landscape.grad(a).norm().item(), landscape.grad(b).norm().item(),
                         landscape.grad(mid).norm().item(), gap, (a - b).norm().item(), tuple(verdict))


# ----------------------------------------------------------------------------- Lemma 5.1
@dataclass(frozen=True)
class Lemma51:
    """Residuals of the hypotheses of paper B Lemma 5.1 at T(theta) on inputs x (the proof of Thm. 5.1).

    Over the hidden layers l = 1..L-1: ``features``: max |(f^[l]_wide)_j - (f^[l]_narr)_(I_l(j))| over effective
    wide neurons; ``null_features``: max over null neurons of the spread max - min of (f^[l]_wide)_j over the inputs
    (0: constant); ``errors``: max |(e^[l]_wide)_j - beta^[l]_j (e^[l]_narr)_(I_l(j))|; ``null_errors``:
    max |(e^[l]_wide)_j| over null neurons; ``pairs``: per hidden layer l (list index l-1), the flattened
    (e_wide, beta e_narr) over samples and effective neurons, for plotting (Fig. 5.4).
    """

    features: float
    null_features: float
    errors: float
    null_errors: float
    pairs: list


def lemma_5_1_check(T: Embedding, theta, x, y, loss: str = "mse") -> Lemma51:
    """Compare features f^[l] and errors e^[l] = z^[l] o g^[l] of the wide and narrow nets (paper B Lemma 5.1).

    The residuals are those of :func:`~embedding_principle.representation.copy_residuals` (the same copy pattern,
    which there also covers g, z and the output layer) on the hidden layers: both nets run through the library's
    literal back-propagation (:func:`~embedding_principle.backprop.backprop`), beta is ``T.beta``.
    """
    if not isinstance(T, Embedding):
        raise TypeError(f"T must be an Embedding, got {type(T).__name__}")
    r = copy_residuals(T, theta, x, y, loss)
    hidden = [r.per_layer[l] for l in range(1, T.source.L)]
    return Lemma51(*(max(h[key] for h in hidden) for key in ("f", "null_f", "e", "null_e")),
                   pairs=[(e_wide.flatten(), e_pred.flatten()) for e_wide, e_pred in r.error_pairs[1:T.source.L]])


# ----------------------------------------------------------------------------- diagrams (paper B Figs. 5.1-5.5)
_NULL_FILL = "0.75"
_FILLS = [PALETTE[k] for k in (1, 2, 4, 8, 9, 5, 6)]
_BOX = {"boxstyle": "round,pad=0.12", "fc": "white", "ec": "0.6", "lw": 0.5}


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) >= 0.005 else "0"


def _condition_lines(T: Embedding, theta, into, out_of) -> list[str]:
    """The equations of Conditions 1-2 at the selected neuron, with the actual numbers."""
    alpha = [(W, torch.zeros(W.shape[0], dtype=D) if b is None else b) for W, b in T.alpha]
    I = [list(range(T.source.widths[0])), *map(list, T.index_map), list(range(T.source.widths[-1]))]
    beta, b_star = T.beta, T.b_star
    lines = []
    if into is not None:
        l, i = into
        A = alpha[l - 1][0]
        is_null = I[l][i] == NULL
        narrow = None if theta is None else T.source.unflatten(theta)[l - 1][0]
        wide = None if theta is None else T.target.unflatten(T(theta))[l - 1][0]
        for s in range(T.source.widths[l - 1]):
            cols = [j for j, v in enumerate(I[l - 1]) if v == s]
            terms = " + ".join(_fmt(A[i, j].item()) for j in cols)
            line = f"s={s}: Σα = {terms} = {_fmt(A[i, cols].sum().item())}"
            if wide is not None and not is_null:
                line += (f";  ΣW' = {_fmt(wide[i, cols].sum().item())},"
                         f" narrow W[{l}][{I[l][i]},{s}] = {_fmt(narrow[I[l][i], s].item())}")
            lines.append(line)
        nulls = [j for j, v in enumerate(I[l - 1]) if v == NULL]
        if nulls:
            const = sum(A[i, j].item() * T.source.activation(b_star[l - 1][j]).item() for j in nulls)
            total = const + alpha[l - 1][1][i].item()
            target = "b*" if is_null else "0"
            lines.append(f"Σ_null α σ(b*) + α_b = {_fmt(total)} (= {target})")
    if out_of is not None:
        l_prev, j = out_of
        l = l_prev + 1
        A = alpha[l - 1][0]
        beta_l = beta[l]
        for k in range(T.source.widths[l]):
            rows = [i for i, v in enumerate(I[l]) if v == k]
            terms = " + ".join(f"{_fmt(beta_l[i].item())}·{_fmt(A[i, j].item())}" for i in rows)
            value = sum(beta_l[i].item() * A[i, j].item() for i in rows)
            lines.append(f"k={k}: Σβα = {terms} = {_fmt(value)}")
        target = "0 (null)" if I[l_prev][j] == NULL else f"β_j = {_fmt(beta[l_prev][j].item())}"
        lines.append(f"common value {target}")
    return lines


def draw_compatible(ax: plt.Axes, T: Embedding, theta=None, *, neurons: str = "beta",
                    into: tuple[int, int] | None = None, out_of: tuple[int, int] | None = None,
                    equations: bool = True, title: str | None = None) -> plt.Axes:
    """Draw the wide net of T with the numbers of Conditions 1-2 (paper B Figs. 5.1-5.5).

    Without a selection, every edge is drawn from the actual wide parameters T(theta) (width ~ |weight|,
    colour by sign; from alpha when theta is None) and neurons are filled by the narrow neuron they copy
    (grey: null neurons). With ``into=(l, i)`` only the edges entering wide neuron i of layer l are drawn in
    colour and labelled with alpha^[l]_{ij} (forward rule, Fig. 5.1 left; Condition 2, Fig. 5.2); with
    ``out_of=(l-1, j)`` the edges leaving neuron j are labelled with alpha and the neurons with beta (backward
    rule, Fig. 5.1 right). ``equations`` prints the corresponding sums with their actual values under the net.

    Args:
        ax: axes to draw on.
        T: a general compatible embedding.
        theta: narrow parameters (optional; needed for the sums of wide weights, Fig. 5.3).
        neurons: label hidden neurons with ``"beta"``, ``"b_star"`` (effective biases of null neurons),
            ``"both"`` or ``"none"``.
        into, out_of: the selected neuron (at most one of them), as (layer, 0-based wide index).
        equations: print the sums of the selected neuron's conditions.
        title: axes title (default: the wide architecture).
    """
    if not isinstance(T, Embedding):
        raise TypeError(f"T must be an Embedding, got {type(T).__name__}")
    if neurons not in ("beta", "b_star", "both", "none"):
        raise ValueError(f"neurons must be 'beta', 'b_star', 'both' or 'none', got {neurons!r}")
    if into is not None and out_of is not None:
        raise ValueError("give at most one of into and out_of")
    net = T.target
    for name, sel, lo, hi in (("into", into, 1, net.L), ("out_of", out_of, 1, net.L - 1)):
        if sel is not None and (not isinstance(sel, tuple) or len(sel) != 2 or not lo <= sel[0] <= hi
                                or not 0 <= sel[1] < net.widths[sel[0]]):
            raise ValueError(f"{name} must be a (layer, neuron) pair of {net} with layer in {lo}..{hi}, got {sel!r}")
    theta = None if theta is None else T.source.check_theta(theta)
    alpha = [W for W, _ in T.alpha]
    wide = T(theta) if theta is not None else net.flatten(
        [(W, None if b is None else b) for W, b in T.alpha])
    colors = {}
    for l, I_l in enumerate(T.index_map, start=1):
        for j, s in enumerate(I_l):
            colors[(l, j)] = _NULL_FILL if s == NULL else _FILLS[int(s) % len(_FILLS)]
    selected = into is not None or out_of is not None
    draw_network(ax, net, None if selected else wide, colors=colors,
                 title=title if title is not None else f"wide: {'-'.join(map(str, net.widths))}")
    pos = neuron_positions(net.widths)
    if selected:
        weights = [W for W, _ in net.unflatten(wide)]
        w_max = max(W.abs().max().item() for W in weights)
        signs = {True: PALETTE[3], False: PALETTE[0]}
        if into is not None:
            l, i = into
            edges = [(l, i, j) for j in range(net.widths[l - 1])]
        else:
            l = out_of[0] + 1
            edges = [(l, i, out_of[1]) for i in range(net.widths[l])]
        for l, i, j in edges:
            (x0, y0), (x1, y1) = pos[l - 1][j], pos[l][i]
            w = weights[l - 1][i, j].item()
            ax.plot([x0, x1], [y0, y1], color=signs[w > 0] if w else "0.5", lw=0.8 + 3.0 * abs(w) / w_max,
                    ls="-" if w else (0, (3, 3)), zorder=2)
            t = 0.42 if into is not None else 0.58  # where the edges are still apart
            ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), _fmt(alpha[l - 1][i, j].item()), fontsize=7,
                    ha="center", va="center", zorder=5, bbox=_BOX)
    if neurons != "none":
        beta, b_star = T.beta, T.b_star
        for l in range(1, net.L):
            for j in range(net.widths[l]):
                is_null = T.index_map[l - 1][j] == NULL
                label = None
                if neurons in ("beta", "both") and not is_null:
                    label = f"β={_fmt(beta[l][j].item())}"
                if neurons in ("b_star", "both") and is_null:
                    label = f"b*={_fmt(b_star[l][j].item())}"
                if label:
                    x, y = pos[l][j]
                    ax.text(x, y + 0.22, label, fontsize=7, ha="center", va="bottom", zorder=6,
                            bbox={**_BOX, "ec": "none", "alpha": 0.85})
    if equations and selected:
        lines = _condition_lines(T, theta, into, out_of)
        ax.text(0.5, 0.0, "\n".join(lines), transform=ax.transAxes, ha="center", va="top", fontsize=7,
                family="monospace")
    return ax
