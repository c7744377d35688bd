"""Network diagrams drawn from actual parameters (paper A Figs. 2, 6, 7; paper B Figs. 4.1, 4.2, 5.x).

:func:`draw_network` draws one layered network: neurons as circles, layer l at horizontal position l,
edges W^[l]_{ij} with a width proportional to |W^[l]_{ij}| and a colour by sign (the book's
:func:`~embedding_principle.plotting.sign_colors`); zero weights are thin dashed lines.
:func:`draw_embedding` draws a narrow network and its image under an embedding side by side: every
copy of a narrow neuron shares that neuron's colour (the pull-back index map I of paper B Def. 5.1),
null neurons are grey.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np

from .network import MLP
from .plotting import PALETTE, figsize, sign_colors

__all__ = ["draw_network", "draw_embedding", "neuron_positions", "layer_spacing"]

EdgeLabels = Union[bool, Literal["output"]]
_NULL_COLOR = "0.75"
_IO_COLOR = "0.92"


def layer_spacing(widths: Sequence[int]) -> float:
    """Horizontal distance between layers: wide enough for the tallest layer to stay readable."""
    return max(1.6, 0.45 * max(widths))


def neuron_positions(widths: Sequence[int]) -> list[np.ndarray]:
    """(x, y) of every neuron: layer l at x = l * spacing, its m_l neurons centred on y = 0, neuron 0 on top."""
    dx = layer_spacing(widths)
    return [np.stack([np.full(m, l * dx), (m - 1) / 2.0 - np.arange(m)], axis=1) for l, m in enumerate(widths)]


def _layers(net: MLP, theta) -> list[tuple[np.ndarray, np.ndarray | None]]:
    if theta is None:
        return [(np.ones((net.widths[l], net.widths[l - 1])), None) for l in range(1, net.L + 1)]
    layers = net.unflatten(theta)
    if layers[0][0].ndim != 2:
        raise ValueError("draw_network draws one parameter vector, not a batch")
    return [(W.detach().cpu().numpy(), None if b is None else b.detach().cpu().numpy()) for W, b in layers]


def _edge_style(w: float, w_max: float, signed: bool) -> dict:
    if not signed:
        return {"color": "0.6", "lw": 1.0, "ls": "-"}
    if w == 0.0:
        return {"color": "0.8", "lw": 0.8, "ls": (0, (3, 3))}
    colors = sign_colors()
    return {"color": colors["positive" if w > 0 else "negative"], "lw": 0.6 + 3.0 * abs(w) / w_max, "ls": "-"}


def _draw_edges(ax, pos, layers, signed: bool, edge_labels: EdgeLabels) -> None:
    w_max = max(max(float(np.abs(W).max()), 1e-300) for W, _ in layers)
    L = len(layers)
    for l, (W, _) in enumerate(layers, start=1):
        label_this = edge_labels is True or (edge_labels == "output" and l == L)
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                (x0, y0), (x1, y1) = pos[l - 1][j], pos[l][i]
                ax.plot([x0, x1], [y0, y1], zorder=1, **_edge_style(float(W[i, j]), w_max, signed))
                if label_this and signed:
                    t = 0.3  # near the source neuron, where its edges are still apart
                    ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), f"{W[i, j]:.3g}", fontsize=7, ha="center",
                            va="center", zorder=4, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})


def _draw_neurons(ax, pos, layers, colors: Mapping, bias_labels: bool, radius: float) -> None:
    L = len(pos) - 1
    for l, layer_pos in enumerate(pos):
        for i, (x, y) in enumerate(layer_pos):
            face = colors.get((l, i), _IO_COLOR if l in (0, L) else "white")
            ax.add_patch(plt.Circle((x, y), radius, fc=face, ec="0.2", lw=1.0, zorder=3))
            b = layers[l - 1][1] if l >= 1 else None
            if bias_labels and b is not None:
                ax.text(x, y - 1.6 * radius, f"b={b[i]:.3g}", fontsize=7, ha="center", va="top", zorder=4)


def draw_network(ax: plt.Axes, net: MLP, theta=None, *, colors: Mapping[tuple[int, int], object] | None = None,
                 edge_labels: EdgeLabels = False, bias_labels: bool = False, title: str | None = None) -> plt.Axes:
    """Draw NN({m_l}) with parameters ``theta`` (or its bare architecture when theta is None).

    Args:
        ax: the axes to draw on.
        net: the architecture.
        theta: a flat parameter vector; edges are then scaled by |weight| and coloured by sign.
        colors: fill colours of neurons, keyed by (layer, neuron) with layers 0..L and 0-based neurons.
        edge_labels: True to print every weight on its edge, "output" for the last layer only.
        bias_labels: print b^[l]_i under each neuron.
        title: the axes title (default: the architecture).
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be an MLP, not {type(net).__name__}")
    if edge_labels not in (True, False, "output"):
        raise ValueError(f"edge_labels must be True, False or 'output', got {edge_labels!r}")
    pos = neuron_positions(net.widths)
    layers = _layers(net, theta)
    _draw_edges(ax, pos, layers, theta is not None, edge_labels)
    _draw_neurons(ax, pos, layers, dict(colors or {}), bias_labels and theta is not None, radius=0.18)
    half = max(net.widths) / 2.0
    ax.set_xlim(-0.4, net.L * layer_spacing(net.widths) + 0.4)
    ax.set_ylim(-half - 0.3, half + 0.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(str(net) if title is None else title)
    return ax


# Neuron fills avoid the two sign colours of the edges (PALETTE[0], PALETTE[3]) and grey (PALETTE[7]).
_NEURON_COLORS = [PALETTE[k] for k in (1, 2, 4, 8, 9, 5, 6)]


def _neuron_color(s: int):
    return _NEURON_COLORS[s % len(_NEURON_COLORS)]


def _narrow_colors(net: MLP) -> dict[tuple[int, int], object]:
    return {(l, i): _neuron_color(i) for l in range(1, net.L) for i in range(net.widths[l])}


def _wide_colors(T) -> dict[tuple[int, int], object]:
    colors = {}
    for l, I_l in enumerate(T.index_map, start=1):
        for j, s in enumerate(I_l):
            colors[(l, j)] = _NULL_COLOR if s < 0 else _neuron_color(int(s))
    return colors


def _short(net: MLP) -> str:
    return "-".join(map(str, net.widths))


def draw_embedding(T, theta, axes: Sequence[plt.Axes] | None = None, edge_labels: EdgeLabels = "output",
                   bias_labels: bool = False) -> Sequence[plt.Axes]:
    """Draw theta on T.source and T(theta) on T.target side by side.

    Copies of narrow neuron s (I_l(j) = s) share its colour; null neurons (I_l(j) = NULL) are grey.
    Returns the two axes; creates a figure of the book's width when ``axes`` is None.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=figsize(2))
    if len(axes) != 2:
        raise ValueError(f"draw_embedding needs two axes, got {len(axes)}")
    draw_network(axes[0], T.source, theta, colors=_narrow_colors(T.source), edge_labels=edge_labels,
                 bias_labels=bias_labels, title=f"narrow: {_short(T.source)}")
    draw_network(axes[1], T.target, T(theta), colors=_wide_colors(T), edge_labels=edge_labels,
                 bias_labels=bias_labels, title=f"wide: {_short(T.target)}")
    return axes
