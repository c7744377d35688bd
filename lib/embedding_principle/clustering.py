"""Grouping empirical critical points of two-layer nets into classes (paper A Fig. 4 and App. B).

Paper A's "empirical diagram of the loss landscape" (Fig. 4; paper B Fig. 4.4(c)) collects the
critical points reached by many training runs of widths 1, 2 and 3 and clusters them "by loss, output
function and neuron input parameters". Two critical points belong to the same class when they compute
the same function; for a two-layer net f_theta(x) = sum_k a_k sigma(w_k . x + b_k) (+ b^[2]) the same
function is computed by many parameter vectors, related by

* permutations of the hidden neurons (paper A App. A.1),
* for an **odd** sigma (tanh, identity), the sign flip (w_k, b_k, a_k) -> (-w_k, -b_k, -a_k) of one neuron,
* critical embeddings (paper A Def. 5, paper B Defs. 4.3-4.4): a neuron split into copies with the same
  input parameters u_k = (w_k, b_k) whose output weights add up, and neurons with zero output
  (a_k = 0, or u_k = 0 when sigma(0) = 0).

This module removes all three: :func:`canonical_signs` fixes the sign of every neuron of an odd sigma,
:func:`effective_neurons` merges copies and drops zero-output neurons (the reduced, "effective" neurons;
their number is the width m_0 of the narrowest net with the same function, the origin of the critical
point in the hierarchy of paper B Cor. 4.1), :func:`neuron_set_distance` compares two neuron sets up to
permutation, and :func:`cluster_critical_points` links critical points whose losses, outputs on a grid
and effective neurons all agree (single linkage). For sigma = tanh a reduced net is determined by its
function up to these symmetries (Sussmann 1992), so the three criteria should agree; requiring all of
them makes a disagreement visible as a split class instead of a silent merge.

Tables of neurons have one row per hidden neuron k: [W^[1]_{k,:}, b^[1]_k, W^[2]_{:,k}] (d + 1 + d'
entries). Parameters are the flat vectors of :class:`~embedding_principle.network.MLP`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .network import MLP

__all__ = ["ODD_ACTIVATIONS", "neuron_table", "canonical_signs", "effective_neurons", "neuron_set_distance",
           "cluster_critical_points"]

ODD_ACTIVATIONS = ("tanh", "identity")
"""Activations with sigma(-u) = -sigma(u): (w, b, a) and (-w, -b, -a) give the same neuron output."""


def _check_two_layer(net: MLP) -> MLP:
    if not isinstance(net, MLP):
        raise TypeError(f"net must be an MLP, not {type(net).__name__}")
    if net.L != 2:
        raise ValueError(f"neuron tables are defined for two-layer nets (L = 2), got {net}")
    return net


def neuron_table(net: MLP, theta) -> Tensor:
    """The hidden neurons of a two-layer net as rows [w_k, b_k, a_k], shape (..., m, d + 1 + d').

    w_k = W^[1]_{k,:}, b_k = b^[1]_k, a_k = W^[2]_{:,k}; an output bias b^[2] is not part of the table.
    """
    net = _check_two_layer(net)
    (W1, b1), (W2, _) = net.unflatten(net.check_theta(theta))
    return torch.cat([W1, b1[..., None], W2.transpose(-1, -2)], dim=-1)


def _from_table(net: MLP, theta: Tensor, table: Tensor) -> Tensor:
    d = net.widths[0]
    layers = net.unflatten(theta)
    W2 = table[..., d + 1:].transpose(-1, -2)
    return net.flatten([(table[..., :d], table[..., d]), (W2, layers[1][1])])


def _is_odd(net: MLP, odd: bool | None) -> bool:
    return net.activation.name in ODD_ACTIVATIONS if odd is None else bool(odd)


def canonical_signs(net: MLP, theta, tol: float = 1e-9, odd: bool | None = None) -> Tensor:
    """theta with every neuron of an odd sigma flipped, (w_k, b_k, a_k) -> -(w_k, b_k, a_k), so that the first
    entry of u_k = (w_k, b_k) with |entry| > ``tol`` is positive (neurons with u_k ~ 0: the first entry of a_k).

    The flip keeps f_theta, R_S and the Hessian spectrum (it is a linear isometry of parameter space that
    leaves R_S invariant), so it maps critical points to critical points of the same inertia.

    Args:
        net: a two-layer :class:`MLP`.
        theta: parameters (P,) or (R, P).
        tol: entries with |.| <= tol do not decide the sign.
        odd: whether sigma is odd; None infers it from the activation's name (``ODD_ACTIVATIONS``).
            For a non-odd sigma theta is returned unchanged.
    """
    theta = _check_two_layer(net).check_theta(theta)
    if not _is_odd(net, odd):
        return theta.clone()
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    table = neuron_table(net, theta)
    d = net.widths[0]
    decides = table.abs() > tol
    u_decides = decides[..., :d + 1]
    first_u = torch.argmax(u_decides.to(torch.int8), dim=-1)            # first deciding entry of u_k
    first_a = d + 1 + torch.argmax(decides[..., d + 1:].to(torch.int8), dim=-1)
    pick = torch.where(u_decides.any(-1), first_u, first_a)
    sign = torch.where(torch.gather(table, -1, pick[..., None]) < 0, -1.0, 1.0).to(table.dtype)
    return _from_table(net, theta, table * sign)


def _scaled_gap(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """max_e |A_ie - B_je| / max(1, |A_ie|, |B_je|) for all pairs (i, j): absolute below 1, relative above."""
    a, b = A[:, None, :], B[None, :, :]
    return (np.abs(a - b) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))).max(-1, initial=0.0)


def _groups(U: np.ndarray, tol: float) -> list[list[int]]:
    """Connected components of the graph 'scaled gap of u_i and u_j <= tol' (single linkage)."""
    close = _scaled_gap(U, U) <= tol
    label = list(range(len(U)))
    for i in range(len(U)):
        for j in range(i):
            if close[i, j]:
                old, new = label[i], label[j]
                label = [new if v == old else v for v in label]
    return [[i for i in range(len(U)) if label[i] == g] for g in sorted(set(label))]


def effective_neurons(net: MLP, theta, tol: float = 1e-6, odd: bool | None = None) -> np.ndarray:
    """The effective neurons of one two-layer net: the rows [w, b, a] of the narrowest equivalent net.

    Steps: (1) :func:`canonical_signs` (odd sigma); (2) merge neurons whose input parameters u = (w, b) agree
    to ``tol`` (scaled: absolute for entries of size <= 1, relative above), adding their output weights
    (the inverse of splitting, paper A Def. 5); (3) drop merged neurons with zero output: ||a||_inf <= tol *
    max(1, max|a|) (an output weight split with shares adding to zero, or a_k = 0), or u ~ 0 when
    sigma(0) = 0 (then the neuron outputs 0: tanh); (4) sort rows lexicographically (keys rounded to 6 decimals).

    Returns an array of shape (m_0, d + 1 + d'); m_0 = 0 for the constant-zero function (no output bias).
    """
    net = _check_two_layer(net)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    theta = net.check_theta(theta)
    if theta.ndim != 1:
        raise ValueError(f"effective_neurons takes one parameter vector (P,), got shape {tuple(theta.shape)}")
    table = neuron_table(net, canonical_signs(net, theta, tol=tol * 1e-3, odd=odd)).numpy()
    d = net.widths[0]
    merged = [np.concatenate([table[g[0], :d + 1], table[g, d + 1:].sum(0)]) for g in _groups(table[:, :d + 1], tol)]
    sigma0 = float(net.activation(torch.zeros(1, dtype=torch.float64)))
    a_scale = max(1.0, float(np.abs(table[:, d + 1:]).max(initial=0.0)))
    keep = [row for row in merged if np.abs(row[d + 1:]).max() > tol * a_scale
            and not (np.abs(row[:d + 1]).max() <= tol and abs(sigma0) <= tol)]
    out = np.array(keep, dtype=np.float64).reshape(len(keep), table.shape[1])
    return out[np.lexsort(np.round(out, 6).T[::-1])] if len(out) else out   # rounded keys: round-off does not reorder


def neuron_set_distance(A: np.ndarray, B: np.ndarray) -> float:
    """Distance of two neuron tables up to permutation of rows: min over bijections pi of max_i gap(A_i, B_pi(i)).

    gap is the scaled max-norm of :func:`effective_neurons` (absolute below 1, relative above). This is the
    bottleneck assignment, solved exactly: the smallest threshold t among the pairwise gaps for which the
    pairs with gap <= t contain a perfect matching. Tables of different sizes are at distance inf;
    two empty tables at distance 0.
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"neuron tables must be 2-D, got shapes {A.shape} and {B.shape}")
    if A.shape != B.shape:
        if len(A) and len(B) and A.shape[1] != B.shape[1]:
            raise ValueError(f"neuron tables of different networks: rows of length {A.shape[1]} and {B.shape[1]}")
        return float("inf")
    if len(A) == 0:
        return 0.0
    gap = _scaled_gap(A, B)
    for t in np.unique(gap):
        rows, cols = linear_sum_assignment(gap > t)
        if not (gap[rows, cols] > t).any():
            return float(t)
    raise AssertionError("unreachable: the largest gap admits every matching")  # pragma: no cover


def cluster_critical_points(loss: Sequence[float], outputs, neurons: Sequence[np.ndarray], *,
                            loss_tol: float = 1e-8, output_tol: float = 1e-6,
                            neuron_tol: float = 1e-5) -> np.ndarray:
    """Class labels for critical points: single-linkage clusters of the relation "same loss, output and neurons".

    Points i and j are linked when all three hold:
    |loss_i - loss_j| <= ``loss_tol`` * max(1, |loss_i|);
    max_x |f_i(x) - f_j(x)| <= ``output_tol`` * max(1, max |f_i|) on the grid of ``outputs``;
    :func:`neuron_set_distance` of the effective neurons <= ``neuron_tol`` (in particular the same m_0).
    Classes are the connected components (paper A App. B: "clustered by loss, output function and neuron
    input parameters").

    Args:
        loss: R_S at each of N points.
        outputs: array (N, G) of each point's output on a common grid of G inputs (one output coordinate,
            or flattened outputs).
        neurons: N tables from :func:`effective_neurons`.

    Returns:
        int labels (N,), numbered 0, 1, ... in order of decreasing class loss (the order of the diagram).
    """
    loss = np.asarray(loss, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    N = loss.shape[0] if loss.ndim == 1 else -1
    if loss.ndim != 1 or outputs.ndim != 2 or outputs.shape[0] != N or len(neurons) != N:
        raise ValueError(f"need loss (N,), outputs (N, G) and N neuron tables; got shapes {loss.shape}, "
                         f"{outputs.shape} and {len(neurons)} tables")
    if not (np.isfinite(loss).all() and np.isfinite(outputs).all()):
        raise ValueError("loss and outputs must be finite")
    if min(loss_tol, output_tol, neuron_tol) < 0:
        raise ValueError("tolerances must be >= 0")
    parent = list(range(N))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = np.argsort(loss, kind="stable")
    scale = np.maximum(1.0, np.abs(outputs).max(1))
    for p, i in enumerate(order):                       # only pairs within the loss window are compared
        for j in order[p + 1:]:
            if loss[j] - loss[i] > loss_tol * max(1.0, abs(loss[i])):
                break
            if root(i) != root(j) and np.abs(outputs[i] - outputs[j]).max() <= output_tol * scale[i] \
                    and neuron_set_distance(neurons[i], neurons[j]) <= neuron_tol:
                parent[root(j)] = root(i)
    roots = np.array([root(i) for i in range(N)])
    ids = np.unique(roots)
    class_loss = {r: loss[roots == r].mean() for r in ids}
    ranked = sorted(ids, key=lambda r: (-class_loss[r], int(np.argmax(roots == r))))
    relabel = {r: k for k, r in enumerate(ranked)}
    return np.array([relabel[r] for r in roots], dtype=np.int64)
