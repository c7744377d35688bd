"""Condensation of two-layer networks: neuron directions, amplitudes, groups (paper A section 3.2, Fig. 5).

With a small initialization, the input weights of the hidden neurons of a two-layer ReLU network
f_theta(x) = sum_k a_k sigma(w_k . x~), x~ = [x; 1], *condense*: many neurons point in a few directions
(Luo, Xu, Ma, Zhang, JMLR 2021; Zhou et al., NeurIPS 2022). Paper A (Fig. 5) reads such a network as a
narrow network embedded into the wide one: it groups the neurons whose input weights u_k = (w_k, b_k)
have cosine similarity >= 0.9, drops the neurons of low amplitude, and merges each group with
:func:`embedding_principle.reduction.reduce` (``similarity="cosine"``). The helpers here describe that
reading without changing it:

* :func:`input_weights` and :func:`amplitudes` -- u_k and A_k = ||W^[2]_{:,k}||_2 ||u_k||_2 (the
  amplitude of neuron k; for one output |a_k| ||u_k||, the measure used by paper A and its lecture notes);
* :func:`dead_neurons` -- ReLU neurons inactive on every training input: they receive no gradient, so
  they keep their initial (tiny) size and are the low-amplitude neurons of a small-initialization run;
* :func:`cosine_similarity` -- the matrix of paper A Fig. 5(b);
* :func:`group_labels` and :func:`group_order` -- the groups of a reduction per neuron, and a neuron
  order that makes the groups visible as blocks of the similarity matrix (low-amplitude neurons last);
* :func:`effective_width` -- the number of groups, i.e. the width of the reduced network;
* :func:`prediction_pairs` -- paper A Fig. 5(d): agreement of two classifiers and their 10x10 histogram;
* :func:`plateau_ratio` and :func:`first_drop` -- plateau and drop measures of a logged loss curve.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .network import MLP
from .reduction import reduce

__all__ = ["input_weights", "amplitudes", "dead_neurons", "cosine_similarity", "group_labels", "group_order", "effective_width",
           "prediction_pairs", "plateau_ratio", "first_drop"]


def _two_layer(net: MLP, theta) -> tuple[Tensor, Tensor]:
    if not isinstance(net, MLP):
        raise TypeError(f"net must be an MLP, got {type(net).__name__}")
    if net.L != 2:
        raise ValueError(f"condensation helpers take a two-layer net (L = 2), got {net}")
    theta = net.check_theta(theta).to(torch.float64)
    if theta.ndim != 1:
        raise ValueError("pass one parameter vector (P,), not a batch")
    (W1, b1), (W2, _) = net.unflatten(theta)
    return torch.cat([W1, b1[:, None]], dim=1), W2


def input_weights(net: MLP, theta) -> Tensor:
    """u_k = (W^[1]_{k,:}, b^[1]_k) for every hidden neuron k: shape (m_1, m_0 + 1), float64.

    Paper A Fig. 5 folds the bias into the input, x~ = [x; 1], so u_k is the neuron's weight on x~.
    """
    return _two_layer(net, theta)[0]


def amplitudes(net: MLP, theta) -> Tensor:
    """A_k = ||W^[2]_{:,k}||_2 ||u_k||_2 for every hidden neuron k (shape (m_1,), float64).

    By ReLU homogeneity a_k sigma(u_k . x~) = (a_k ||u_k||) sigma(u_k/||u_k|| . x~): A_k is the size of
    neuron k's contribution to f. This is the amplitude that ``reduce(similarity="cosine")`` compares
    with ``amplitude_tol * max_k A_k``.
    """
    U, W2 = _two_layer(net, theta)
    return W2.norm(dim=0) * U.norm(dim=1)


def dead_neurons(net: MLP, theta, x) -> Tensor:
    """Boolean mask of the hidden neurons whose pre-activation u_k . x~ is <= 0 on every input in ``x``.

    With sigma = ReLU and sigma'(0) = 0 such a neuron contributes nothing to f on the data and gets zero
    gradient in its input and output weights (paper B's recursions: e^[1]_k = 0 and f^[1]_k = 0), so
    gradient descent and Adam never move it.
    """
    U, _ = _two_layer(net, theta)
    if net.activation.name != "relu":
        raise ValueError(f"dead_neurons is about ReLU networks, got activation {net.activation.name!r}")
    x = net.check_x(x, like=U)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (n >= 1, {net.widths[0]}), got {tuple(x.shape)}")
    return ~((x @ U[:, :-1].T + U[:, -1]) > 0).any(dim=0)


def cosine_similarity(U) -> Tensor:
    """The matrix of cosine similarities u_i . u_j / (||u_i|| ||u_j||) of the rows of U (paper A Fig. 5(b)).

    A zero row has similarity 0 with every row, itself included.
    """
    U = torch.as_tensor(U).to(torch.float64)
    if U.ndim != 2 or U.shape[0] == 0:
        raise ValueError(f"U must be a non-empty matrix (neurons, features), got shape {tuple(U.shape)}")
    if not torch.isfinite(U).all():
        raise ValueError("U contains NaN or infinite entries")
    norms = U.norm(dim=1)
    V = U / torch.where(norms > 0, norms, 1.0)[:, None]
    return (V @ V.T).clamp(-1.0, 1.0)


def group_labels(groups: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """Label of each of ``width`` neurons: the index of its group in ``groups``, or -1 if it is in none.

    ``groups`` is one layer of :attr:`Reduction.groups`: neurons that appear in no group were dropped
    (low amplitude, or a merged output weight ~0).
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    labels = np.full(int(width), -1, dtype=np.int64)
    for g, members in enumerate(groups):
        for k in members:
            if not 0 <= k < width:
                raise ValueError(f"group {g} names neuron {k}, outside [0, {width})")
            if labels[k] != -1:
                raise ValueError(f"neuron {k} is in groups {labels[k]} and {g}; groups must be disjoint")
            labels[k] = g
    return labels


def group_order(labels, amplitude) -> np.ndarray:
    """A permutation of the neurons that puts each group in one contiguous block (paper A Fig. 5(b)).

    Groups come in order of decreasing total amplitude, members of a group by decreasing amplitude,
    and the neurons with label -1 (dropped) last, by decreasing amplitude.
    """
    labels, amplitude = np.asarray(labels), np.asarray(amplitude, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != amplitude.shape:
        raise ValueError(f"labels and amplitude must be 1-D of one length, got {labels.shape} and {amplitude.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels < -1).any():
        raise ValueError("labels must be integers >= -1 (-1: in no group)")
    if not np.isfinite(amplitude).all():
        raise ValueError("amplitude must be finite")
    kept = labels[labels >= 0]
    total = np.bincount(kept, weights=amplitude[labels >= 0]) if kept.size else np.zeros(0)
    rank = np.empty_like(total)
    rank[np.argsort(-total, kind="stable")] = np.arange(total.size)
    group_key = np.where(labels >= 0, rank[np.maximum(labels, 0)] if total.size else 0, np.inf)
    return np.lexsort((np.arange(labels.size), -amplitude, group_key))


def effective_width(net: MLP, theta, threshold: float = 0.9, amplitude_tol: float = 1e-3, x=None) -> int:
    """The number of groups of paper A's cosine reduction: the width of ``reduce(..., similarity="cosine")``."""
    _two_layer(net, theta)
    red = reduce(net, theta, x=x, similarity="cosine", threshold=threshold, amplitude_tol=amplitude_tol)
    return int(red.net.widths[1])


def prediction_pairs(pred_a, pred_b, classes: int) -> tuple[float, np.ndarray]:
    """Agreement of two classifiers and the histogram of their prediction pairs (paper A Fig. 5(d)).

    Returns (fraction of inputs where pred_a == pred_b, counts) with counts[i, j] = #{pred_a = i, pred_b = j}.
    """
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}")
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"predictions must be 1-D of one nonzero length, got {a.shape} and {b.shape}")
    if not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
        raise TypeError("predictions must be integer class indices")
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= classes:
        raise ValueError(f"predictions must lie in [0, {classes})")
    counts = np.bincount(a * classes + b, minlength=classes * classes).reshape(classes, classes)
    return float(np.trace(counts) / a.size), counts


def _curve(steps, loss) -> tuple[np.ndarray, np.ndarray]:
    steps, loss = np.asarray(steps, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != loss.shape or steps.size < 2:
        raise ValueError(f"steps and loss must be 1-D of one length >= 2, got {steps.shape} and {loss.shape}")
    if not (np.isfinite(steps).all() and np.isfinite(loss).all()) or (loss <= 0).any():
        raise ValueError("steps must be finite and loss finite and positive")
    if (np.diff(steps) <= 0).any():
        raise ValueError("steps must be strictly increasing")
    return steps, np.log(loss)


def plateau_ratio(steps, loss, center: float, half_width: float) -> float:
    """L(center - half_width) / L(center + half_width) on a logged curve (log-linear interpolation).

    A plateau around ``center`` has a ratio near 1; 10 means a decade lost within the window.
    """
    s, logl = _curve(steps, loss)
    lo, hi = center - half_width, center + half_width
    if not (half_width > 0 and s[0] <= lo and hi <= s[-1]):
        raise ValueError(f"the window [{lo}, {hi}] must be non-empty and inside the logged steps [{s[0]}, {s[-1]}]")
    return float(math.exp(np.interp(lo, s, logl) - np.interp(hi, s, logl)))


def first_drop(steps, loss, window: float, min_ratio: float = 1.1, start: float | None = None) -> tuple[float, float]:
    """The first drop of a logged loss curve: (t, L(t - window) / L(t + window)).

    The fall ratio r(t) = L(t - window) / L(t + window) is evaluated at the logged steps t with
    t - window >= max(start, first step) and t + window <= last step (L interpolated log-linearly). The
    first drop is the first run of consecutive steps with r >= ``min_ratio``; t is the step of the largest
    r in that run. If r never reaches ``min_ratio`` (no drop), t is the step of the largest r, whose ratio
    then says how flat the curve is.
    """
    s, logl = _curve(steps, loss)
    first = s[0] if start is None else max(float(start), s[0])
    if not (window > 0 and min_ratio > 1):
        raise ValueError(f"need window > 0 and min_ratio > 1, got {window} and {min_ratio}")
    t = s[(s - window >= first) & (s + window <= s[-1])]
    if t.size == 0:
        raise ValueError(f"no logged step t with [t - {window}, t + {window}] inside [{first}, {s[-1]}]")
    ratio = np.exp(np.interp(t - window, s, logl) - np.interp(t + window, s, logl))
    above = np.flatnonzero(ratio >= min_ratio)
    if above.size == 0:
        i = int(np.argmax(ratio))
    else:
        run_end = above[0]
        while run_end + 1 < ratio.size and ratio[run_end + 1] >= min_ratio:
            run_end += 1
        i = above[0] + int(np.argmax(ratio[above[0]:run_end + 1]))
    return float(t[i]), float(ratio[i])
