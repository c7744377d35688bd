"""Reduction: the inverse of a critical embedding (paper A section 3.2 and Fig. 5; paper B Def. 5.2).

Given a wide network theta, :func:`reduce` finds a narrower network computing (nearly) the same
function and the general compatible embedding T^alpha_I that maps the reduced parameters back,
working layer by layer (l = 1..L-1, each layer seen through the already reduced layer l-1):

1. **group** the neurons of layer l whose input weights and bias u_i = (W^[l]_{i,:}, b^[l]_i) agree:
   ``similarity="exact"``: ||u_i - u_j||_inf <= tol * max(1, ||u_i||_inf, ||u_j||_inf) (absolute for
   entries of size <= 1, relative above), each group led by its lowest index;
   ``similarity="cosine"`` (paper A Fig. 5, positively homogeneous sigma only: relu, identity):
   neurons of low amplitude ||W^[l+1]_{:,i}|| ||u_i|| < amplitude_tol * max amplitude are dropped,
   then groups with pairwise cosine similarity of the u_i >= threshold are formed greedily in order
   of decreasing amplitude; paper A keeps a random neuron j of each group, we keep the lowest index;
2. **merge** each group into its first neuron j with output column sum_{k in group} s_k W^[l+1]_{:,k},
   where s_k = 1 (exact) or s_k = ||u_k|| / ||u_j|| (cosine: sigma(u_k.x) = s_k sigma(u_j.x) for a
   homogeneous sigma, so this is paper A's a_j = sum_k a_k ||w_k|| / ||w_j||);
3. **drop** groups whose merged output column is ~0 (||.||_inf <= tol * max(1, max |W^[l+1]|)); this
   includes the papers' null neurons (zero input and output weights);
4. **fold** constant groups (input weights ~0, so f = sigma(b)) into the next bias,
   b^[l+1] += sigma(b_j) * merged column, when layer l+1 has a bias; otherwise keep them.

A layer keeps at least one neuron. The returned embedding is built with ``strict=False``: the index
map sends each wide neuron to its group's reduced neuron (NULL if dropped or folded), and alpha holds
the ratios of each wide output weight (times s_k) to the merged one, 1/|group| where the merged weight
vanishes (<= 1e-12 times the row's largest weight), the wide values themselves for entries touching a
null neuron, and alpha_b = minus the constant input from null neurons. For theta = T(theta_narr) with
a compatible T the violations are empty. Otherwise they say why the map back is not a critical
embedding although the output is kept: a folded neuron has nonzero output weights, so it is no null
neuron of Def. 5.2 (Condition 1 backward, Condition 2); merged copies whose output columns are not
proportional (several outputs) have no common beta (Condition 1 backward); a dropped neuron with live
input weights fails Condition 1 forward.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from .embeddings import NULL, Embedding, constant_inputs, general_compatible
from .network import ACTIVATIONS, MLP, check_int, check_mlp

__all__ = ["Reduction", "reduce"]

HOMOGENEOUS = ("relu", "identity")


@dataclass(frozen=True)
class Reduction:
    """The result of :func:`reduce`.

    net, theta: the reduced network and its parameters; embedding: the general compatible
    embedding with embedding(theta) ~ the wide theta; output_error: max |f_wide(x) - f_reduced(x)|
    on the probe inputs; parameter_error: ||embedding(theta) - theta_wide||_inf; groups: for each
    hidden layer l = 1..L-1, one tuple per reduced neuron of the wide neurons merged into it (its
    first entry is the neuron whose input weights were kept).
    """

    net: MLP
    theta: Tensor
    embedding: Embedding
    output_error: float
    parameter_error: float
    groups: tuple[tuple[tuple[int, ...], ...], ...]


@dataclass
class _Layer:
    """Bookkeeping of one reduced hidden layer: reduced index (or NULL) and scale s_k per wide neuron."""

    index: Tensor
    scale: Tensor
    groups: list[list[int]]
    fold: Tensor  # s_k sigma(b_j) for neurons folded into the next bias, else 0


# ----------------------------------------------------------------------------- grouping
def _close(U: Tensor, tol: float) -> Tensor:
    """Boolean matrix of 'u_i and u_j agree within tol' (scale-aware, see the module docstring)."""
    dist = torch.cdist(U, U, p=float("inf"))
    size = U.abs().amax(1)
    scale = torch.maximum(torch.ones_like(size), torch.maximum(size[:, None], size[None, :]))
    return dist <= tol * scale


def _exact_groups(U: Tensor, tol: float) -> list[list[int]]:
    close, free, groups = _close(U, tol), torch.ones(len(U), dtype=torch.bool), []
    for i in range(len(U)):
        if free[i]:
            members = (close[i] & free).nonzero().squeeze(1).tolist()
            free[members] = False
            groups.append(members)
    return groups


def _cosine_groups(U: Tensor, candidates: list[int], amplitude: Tensor, threshold: float) -> list[list[int]]:
    """Greedy complete-linkage groups: every pair in a group has cosine similarity >= threshold.

    Neurons join in order of decreasing amplitude; each group is returned sorted, groups by first index.
    """
    norms = U.norm(dim=1).clamp_min(torch.finfo(U.dtype).tiny)
    cos = ((U / norms[:, None]) @ (U / norms[:, None]).T).tolist()  # python floats: fast scalar access
    order = sorted(candidates, key=lambda k: -amplitude[k].item())
    groups: list[list[int]] = []
    for k in order:
        for g in groups:
            if all(cos[k][j] >= threshold for j in g):
                g.append(k)
                break
        else:
            groups.append([k])
    return sorted(sorted(g) for g in groups)


# ----------------------------------------------------------------------------- one layer
def _reduce_layer(W: Tensor, b: Tensor, W_next: Tensor, next_has_bias: bool, sigma, opts: dict) -> _Layer:
    """Group, merge, drop and fold the neurons of one hidden layer (steps 1-4 of the module docstring)."""
    tol, m = opts["tol"], len(b)
    U = torch.cat([W, b[:, None]], dim=1)
    scale = torch.ones(m, dtype=W.dtype)
    if opts["similarity"] == "exact":
        groups = _exact_groups(U, tol)
    else:
        amplitude = W_next.norm(dim=0) * U.norm(dim=1)
        keep = (amplitude >= opts["amplitude_tol"] * amplitude.max()) & (amplitude > 0)
        groups = _cosine_groups(U, keep.nonzero().squeeze(1).tolist(), amplitude, opts["threshold"])
        for g in groups:
            scale[g] = U[g].norm(dim=1) / U[g[0]].norm()
    merged = [W_next[:, g] @ scale[g] for g in groups]
    zero_col = tol * max(1.0, W_next.abs().max().item())
    alive = [g for g, col in zip(groups, merged) if col.abs().max() > zero_col]
    const = [g for g in alive if next_has_bias and W[g[0]].abs().max() <= tol * max(1.0, b[g[0]].abs().item())]
    kept = [g for g in alive if g not in const]
    if not kept:  # an MLP layer needs >= 1 neuron: keep the first group (unfolded) or neuron 0
        kept = groups[:1] or [[0]]
        const = [g for g in const if g is not kept[0]]
    index, fold = torch.full((m,), NULL, dtype=torch.long), torch.zeros(m, dtype=W.dtype)
    for r, g in enumerate(kept):
        index[g] = r
    for g in const:
        fold[g] = scale[g] * sigma(b[g[0]])
    return _Layer(index, scale, kept, fold)


def _membership(layer: _Layer, width: int) -> Tensor:
    """S[k, r] = s_k if wide neuron k merges into reduced neuron r: merged columns are W @ S."""
    S = torch.zeros(len(layer.index), width, dtype=layer.scale.dtype)
    eff = (layer.index >= 0).nonzero().squeeze(1)
    S[eff, layer.index[eff]] = layer.scale[eff]
    return S


def _identity_layer(m: int) -> _Layer:
    return _Layer(torch.arange(m), torch.ones(m, dtype=torch.float64), [[k] for k in range(m)],
                  torch.zeros(m, dtype=torch.float64))


# ----------------------------------------------------------------------------- the embedding back
def _alpha_block(W: Tensor, S_prev: Tensor, I_row: Tensor, I_col: Tensor, scale_col: Tensor) -> Tensor:
    """alpha^[l]: W_ij s_j / (wide row i's merged weight on I(j)) where both are effective and that is not ~0,
    1/|group| where it is ~0, and the wide value W_ij itself where i or j is a null neuron."""
    merged = W @ S_prev  # row i's own merged weights, (m'_l, m_red_{l-1})
    eff = (I_row[:, None] >= 0) & (I_col[None, :] >= 0)
    col = I_col.clamp(min=0)
    denom = merged[:, col]
    sizes = (S_prev != 0).sum(0).clamp(min=1).to(W.dtype)[col]
    tiny = denom.abs() <= 1e-12 * W.abs().amax(1, keepdim=True).clamp_min(1e-300)
    ratio = torch.where(tiny, 1.0 / sizes.expand_as(W), W * scale_col / torch.where(tiny, 1.0, denom))
    return torch.where(eff, ratio, W)


def _embedding_back(net: MLP, wide: list, layers: list[_Layer], reduced: MLP) -> Embedding:
    """The general compatible embedding reduced -> wide (strict=False) described in the module docstring."""
    alpha, b_star = [], torch.zeros(net.widths[0], dtype=torch.float64)
    for l, (W, b) in enumerate(wide, start=1):
        prev, cur = layers[l - 1], layers[l]
        aW = _alpha_block(W, _membership(prev, reduced.widths[l - 1]), cur.index, prev.index, prev.scale)
        b_full = torch.zeros(len(cur.index), dtype=torch.float64) if b is None else b
        const_in = constant_inputs(aW, prev.index, b_star, net.activation)
        ab = torch.where(cur.index >= 0, -const_in, b_full)
        b_star = torch.where(cur.index >= 0, 0.0, const_in + ab)
        alpha.append((aW, None if b is None else ab))
    index_map = [tuple(layer.index.tolist()) for layer in layers[1:-1]]
    return general_compatible(reduced, index_map, alpha, strict=False)


# ----------------------------------------------------------------------------- reduce
def _check_options(net, tol, similarity, threshold, amplitude_tol, n_probe, seed) -> None:
    check_mlp(net)
    check_int(n_probe, "n_probe", minimum=1)
    check_int(seed, "seed")
    for name, value in [("tol", tol), ("threshold", threshold), ("amplitude_tol", amplitude_tol)]:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if tol < 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    if similarity not in ("exact", "cosine"):
        raise ValueError(f"similarity must be 'exact' or 'cosine', got {similarity!r}")
    if similarity == "cosine":
        act = net.activation
        if act.name not in HOMOGENEOUS or ACTIVATIONS[act.name] != act:
            raise ValueError(f"cosine reduction needs a positively homogeneous activation {HOMOGENEOUS}, "
                             f"got {act.name!r}: merging parallel neurons changes the function otherwise")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold (a cosine similarity) must be in (0, 1], got {threshold}")
        if not 0 <= amplitude_tol < 1:
            raise ValueError(f"amplitude_tol must be in [0, 1), got {amplitude_tol}")


def _probe(net: MLP, x, n_probe: int, seed: int, like: Tensor) -> Tensor:
    if x is not None:
        return net.check_x(x, like=like)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(int(n_probe), net.widths[0], generator=gen, dtype=torch.float64).to(like)


def reduce(net: MLP, theta, tol: float = 1e-8, x=None, similarity: str = "exact", threshold: float = 0.9,
           amplitude_tol: float = 1e-3, n_probe: int = 256, seed: int = 0) -> Reduction:
    """Reduce a wide network to the narrowest one found by grouping, merging, dropping and folding neurons.

    Args:
        net, theta: the wide network and one parameter vector (P,).
        tol: agreement tolerance of the exact grouping and of the "~0" tests (see the module docstring).
        x: inputs (n, m_0) for ``output_error``; None uses ``n_probe`` standard-normal probe inputs
            drawn from ``torch.Generator().manual_seed(seed)``.
        similarity: "exact" (paper B's inverse of a splitting embedding) or "cosine" (paper A Fig. 5;
            relu or identity only) with ``threshold`` (cosine similarity within a group) and
            ``amplitude_tol`` (neurons with amplitude below amplitude_tol * max amplitude are dropped).
    Returns:
        A :class:`Reduction`. For theta = T(theta_narr) with a compatible embedding T and a generic
        (irreducible) theta_narr it recovers the narrow widths and the same function.
    """
    _check_options(net, tol, similarity, threshold, amplitude_tol, n_probe, seed)
    theta = net.check_one_theta(theta, "reduce").to(torch.float64)
    opts = dict(tol=float(tol), similarity=similarity, threshold=threshold, amplitude_tol=amplitude_tol)
    wide = net.unflatten(theta)
    layers, widths, out = [_identity_layer(net.widths[0])], [net.widths[0]], []
    fold_in = torch.zeros(net.widths[1], dtype=torch.float64)
    for l in range(1, net.L):
        (W, b), W_next = wide[l - 1], wide[l][0]
        W_cur, b_cur = W @ _membership(layers[-1], widths[-1]), b + fold_in
        layer = _reduce_layer(W_cur, b_cur, W_next, net.has_bias(l + 1), net.activation, opts)
        reps = [g[0] for g in layer.groups]
        out.append((W_cur[reps], b_cur[reps]))
        fold_in = W_next @ layer.fold
        layers.append(layer)
        widths.append(len(reps))
    W_L, b_L = wide[-1]
    out.append((W_L @ _membership(layers[-1], widths[-1]), None if b_L is None else b_L + fold_in))
    layers.append(_identity_layer(net.widths[-1]))
    reduced = net.with_widths(widths + [net.widths[-1]])
    theta_red = reduced.flatten(out)
    embedding = _embedding_back(net, wide, layers, reduced)
    xs = _probe(net, x, n_probe, seed, theta)
    output_error = (net(theta, xs) - reduced(theta_red, xs)).abs().max().item()
    parameter_error = (embedding(theta_red) - theta).abs().max().item()
    groups = tuple(tuple(tuple(g) for g in layer.groups) for layer in layers[1:-1])
    return Reduction(reduced, theta_red, embedding, output_error, parameter_error, groups)
