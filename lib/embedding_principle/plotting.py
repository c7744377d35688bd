"""One plotting style for the whole book: seaborn theme, colorblind palette, fixed figure sizes.

Call :func:`set_style` once at the top of a notebook; use :data:`FIGSIZE` (one panel) or
:func:`figsize` (a row of panels) so every figure of the book has the same width.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = ["FIGSIZE", "FIG_WIDTH", "PALETTE", "set_style", "figsize", "sign_colors", "plot_spectrum"]

FIG_WIDTH = 7.0
"""Width in inches of every figure in the book."""

FIGSIZE = (FIG_WIDTH, 4.0)
"""Size of a single-panel figure."""

PALETTE = sns.color_palette("colorblind")
"""The book's colours, in order (seaborn 'colorblind')."""


def set_style() -> None:
    """Apply the book's matplotlib/seaborn style (idempotent)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=0.95)
    matplotlib.rcParams.update({
        "figure.figsize": FIGSIZE,
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "axes.titlesize": "medium",
        "legend.frameon": False,
        "image.cmap": "viridis",
    })


def figsize(ncols: int = 1, nrows: int = 1) -> tuple[float, float]:
    """Figure size for a grid of panels, keeping the book's fixed width (panels get shorter as columns grow)."""
    if ncols < 1 or nrows < 1:
        raise ValueError(f"ncols and nrows must be >= 1, got {ncols}, {nrows}")
    panel_height = {1: 4.0, 2: 3.4}.get(ncols, 2.8)
    return (FIG_WIDTH, panel_height * nrows)


def sign_colors() -> dict[str, tuple[float, float, float]]:
    """Colours for positive / negative / zero eigenvalues, used by every spectrum plot."""
    return {"positive": PALETTE[3], "negative": PALETTE[0], "zero": PALETTE[7]}


def plot_spectrum(ax: plt.Axes, eigenvalues, tol: float, label: str = "", offset: float = 0.0) -> None:
    """Paper A Fig. 3 style: |lambda| on a log scale, coloured by sign, zero band below ``tol``.

    Eigenvalues with |lambda| <= tol are drawn at ``tol``-level in grey so the log axis can show them.
    """
    lam = np.asarray(eigenvalues, dtype=float)
    order = np.argsort(-np.abs(lam))
    lam = lam[order]
    idx = np.arange(1, lam.size + 1) + offset
    colors = sign_colors()
    floor = np.maximum(np.abs(lam), np.finfo(float).tiny)
    for kind, mask in (("positive", lam > tol), ("negative", lam < -tol), ("zero", np.abs(lam) <= tol)):
        if mask.any():
            ax.scatter(idx[mask], floor[mask], s=22, color=colors[kind],
                       label=f"{label} {kind}".strip(), zorder=3)
    ax.axhline(tol, ls="--", lw=1, color="0.4")
    ax.set_yscale("log")
    ax.set_xlabel("index (sorted by |eigenvalue|)")
    ax.set_ylabel("|eigenvalue|")
