"""The embedding principle in one picture: the book's landing figure, computed in the setting of paper A, Fig. 1.

One panel per sentence of the principle, all on the Fig. 1 data (50 points, a two-layer tanh net without output
bias, R_S = mean (f - y)^2):

(a) **Same function.** The width-1 global minimum theta_1 is split into the width-500 net with the output shares that
    the trained net has on its plateau (a general compatible embedding, paper B Def. 5.2 / Thm. 5.1). The wide
    output equals the narrow one everywhere (paper A Prop. 1), and the trained net on its plateau computes nearly
    the same function.
(b) **Critical, more degenerate, a saddle.** Equal splits of theta_1 into widths 1, 2, ..., k stay critical
    (paper A Thm. 1); the counts of negative, zero and positive Hessian eigenvalues never decrease (paper B
    Thm. 6.2), zero eigenvalues appear (paper A Lemma 2), and the narrow minimum becomes a strict saddle
    (paper B Lemma 6.1 / Thm. 6.3).
(c) **Training stalls there.** The width-500 training loss of the cached ``fig1_two_stages`` experiment sits on the
    loss value R_S(theta_1) of the narrow critical point (paper A Fig. 1). The literal protocol stays there; a
    bias kick (our addition, chapter "Paper A, Fig. 1") moves on towards the interpolant.

Nothing here is an algorithm of its own: it calls :mod:`.embeddings`, :mod:`.symmetry`, :mod:`.landscape` and the
cached Fig. 1 experiment, and collects the residuals the landing page prints and asserts.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from . import cache, plotting, symmetry
from .data import fig1_data
from .embeddings import equal_split
from .experiments import fig1
from .landscape import Inertia, Landscape, inertia
from .network import MLP, check_int

__all__ = ["Principle", "principle_in_one_picture", "plot_principle"]

GRID = (-16.0, 16.0, 401)
"""Where panel (a) compares the functions: beyond the data range [-15, 15] (Prop. 1 holds for every input)."""


@dataclass(frozen=True)
class Principle:
    """The numbers and curves of the landing figure (see the module docstring for the three panels)."""

    x: Tensor
    y: Tensor
    grid: Tensor
    f_narrow: Tensor
    f_embedded: Tensor
    f_plateau: Tensor
    narrow_risk: float
    output_gap: float
    plateau_gap: float
    widths: tuple[int, ...]
    inertias: tuple[Inertia, ...]
    grad_norms: tuple[float, ...]
    risk_gaps: tuple[float, ...]
    wide_width: int
    plateau_step: int
    plateau_loss: float
    runs: dict[str, tuple[np.ndarray, np.ndarray]]

    def residuals(self) -> dict[str, tuple[float, float]]:
        """``name -> (value, tolerance)`` for every identity panel (a) and (b) rest on (all float64 round-off)."""
        return {"max |f_wide - f_narrow| on the grid": (self.output_gap, 1e-12),
                "max_k ||grad R_S(T_k theta_1)||": (max(self.grad_norms), 1e-11),
                "max_k |R_S(T_k theta_1) - R_S(theta_1)|": (max(self.risk_gaps), 1e-14)}

    def check(self) -> None:
        """Assert the residuals and Thm. 6.2 / Lemma 2 on the inertia sequence; raise AssertionError naming the failure."""
        for name, (value, tol) in self.residuals().items():
            assert value <= tol, f"{name} = {value:.3g} exceeds {tol:g}"
        for a, b, k in zip(self.inertias, self.inertias[1:], self.widths[1:]):
            assert b.negative >= a.negative and b.positive >= a.positive, f"inertia decreased at width {k}"
            assert b.zero >= a.zero + 1, f"no new zero eigenvalue at width {k} (paper A Lemma 2)"

    def numbers(self) -> dict[str, float | int]:
        """Scalars for the landing page's prose (glued into it, never typed)."""
        last = self.inertias[-1]
        return {"narrow_risk": self.narrow_risk, "output_gap": self.output_gap, "plateau_gap": self.plateau_gap,
                "max_grad": max(self.grad_norms), "wide_width": self.wide_width, "max_width": self.widths[-1],
                "narrow_negative": self.inertias[0].negative, "narrow_zero": self.inertias[0].zero,
                "wide_negative": last.negative, "wide_zero": last.zero, "wide_positive": last.positive,
                "plateau_step": self.plateau_step, "plateau_loss": self.plateau_loss,
                "final_loss": float(self.runs["literal"][1][-1]), "kicked_final_loss": float(self.runs["kicked"][1][-1])}


def _plateau(run: dict, epoch: int) -> tuple[int, Tensor, float]:
    """The snapshot of ``run`` nearest to ``epoch`` (log scale): its step, parameters and loss."""
    i = fig1.nearest_index(run["snap_steps"], epoch)
    return int(run["snap_steps"][i]), torch.as_tensor(run["snapshots"][i]), float(run["snap_loss"][i])


def _splits(narrow: MLP, theta1: Tensor, x: Tensor, y: Tensor,
            max_width: int) -> tuple[float, tuple[Inertia, ...], tuple[float, ...], tuple[float, ...]]:
    """R_S(theta_1), then the inertia, ||grad R_S|| and |R_S - R_S(theta_1)| at theta_1 (width 1) and at its equal
    splits into widths 2..max_width (paper A Thm. 1; paper B Thm. 6.2)."""
    land1 = Landscape(narrow, x, y)
    risk1 = land1.risk(theta1).item()
    inertias, grads, gaps = [inertia(land1.hessian(theta1))], [land1.grad(theta1).norm().item()], [0.0]
    for k in range(2, max_width + 1):
        T = equal_split(narrow, layer=1, neuron=0, k=k)
        land, theta = Landscape(T.target, x, y), T(theta1)
        inertias.append(inertia(land.hessian(theta)))
        grads.append(land.grad(theta).norm().item())
        gaps.append(abs(land.risk(theta).item() - risk1))
    return risk1, tuple(inertias), tuple(grads), tuple(gaps)


def principle_in_one_picture(max_width: int = 8, plateau_epoch: int = 5000) -> Principle:
    """Compute the landing figure's content from the cached ``fig1_two_stages`` experiment (loaded, or run if stale).

    ``max_width``: panel (b) splits theta_1 into widths 1..max_width. ``plateau_epoch``: the snapshot of the literal
    run compared in panel (a) (the paper's blue dot is at 5x10^3).
    """
    max_width = check_int(max_width, "max_width", minimum=2)
    result = cache.run("fig1_two_stages")
    lit, kicked = result["runs"]["literal_s0"], result["runs"]["kick_0.3"]
    x, y = fig1_data()
    narrow = MLP((1, 1, 1), "tanh", output_bias=False)
    theta1 = torch.as_tensor(result["references"]["width1"]["theta"])
    grid = torch.linspace(*GRID, dtype=torch.float64)[:, None]

    step, theta_plat, plateau_loss = _plateau(lit, plateau_epoch)
    wide = MLP((1, theta_plat.numel() // 3, 1), "tanh", output_bias=False)
    (_, _), (a, _) = wide.unflatten(symmetry.canonical_signs(wide, theta_plat))
    T = symmetry.share_split(narrow, a[0] / a.sum())                     # the plateau's own output shares
    f_narrow, f_embedded = narrow.forward(theta1, grid)[:, 0], wide.forward(T(theta1), grid)[:, 0]
    plateau_gap = (wide.forward(theta_plat, x) - narrow.forward(theta1, x)).abs().max().item()
    risk1, inertias, grads, gaps = _splits(narrow, theta1, x, y, max_width)

    after_kick = np.asarray(kicked["steps"]) >= fig1.DEFAULT["kick_epoch"]
    return Principle(x=x, y=y, grid=grid, f_narrow=f_narrow, f_embedded=f_embedded,
                     f_plateau=wide.forward(theta_plat, grid)[:, 0], narrow_risk=risk1,
                     output_gap=(f_embedded - f_narrow).abs().max().item(), plateau_gap=plateau_gap,
                     widths=tuple(range(1, max_width + 1)), inertias=inertias, grad_norms=grads, risk_gaps=gaps,
                     wide_width=wide.widths[1], plateau_step=step, plateau_loss=plateau_loss,
                     runs={"literal": (np.asarray(lit["steps"]), np.asarray(lit["loss"])),
                           "kicked": (np.asarray(kicked["steps"])[after_kick], np.asarray(kicked["loss"])[after_kick])})


def plot_principle(p: Principle) -> plt.Figure:
    """Draw the three panels of :func:`principle_in_one_picture` in the book's style."""
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(plotting.FIG_WIDTH, 3.4),
                                           gridspec_kw={"width_ratios": [1.15, 1, 1.15]})
    g = p.grid[:, 0].numpy()
    ax_a.plot(p.x[:, 0], p.y[:, 0], "o", ms=2.5, color="0.55", label="data")
    ax_a.plot(g, p.f_narrow.numpy(), color=plotting.PALETTE[0], lw=3, alpha=0.6, label="width-1 critical")
    ax_a.plot(g, p.f_embedded.numpy(), "--", color="black", lw=1.2, label=f"embedded, width {p.wide_width}")
    ax_a.plot(g, p.f_plateau.numpy(), ":", color=plotting.PALETTE[1], lw=1.6, label=f"trained, epoch {p.plateau_step}")
    ax_a.set(xlabel="$x$", ylabel="output $f(x)$", ylim=(-6.5, 4), title="(a) embedding keeps\nthe function")
    ax_a.legend(fontsize=6.5, loc="lower right", handlelength=1.5)

    w = np.array(p.widths)
    neg, zero, pos = (np.array([getattr(i, k) for i in p.inertias]) for k in ("negative", "zero", "positive"))
    colors = plotting.sign_colors()
    ax_b.bar(w, neg, color=colors["negative"], label="negative")
    ax_b.bar(w, zero, bottom=neg, color=colors["zero"], label="zero")
    ax_b.bar(w, pos, bottom=neg + zero, color=colors["positive"], label="positive")
    ax_b.set(xlabel="width after splitting", ylabel="Hessian eigenvalues", xticks=w,
             title="(b) splitting: more zero\nand negative curvature")
    ax_b.legend(fontsize=6.5, loc="upper left")

    for (name, label, color) in (("kicked", "bias kick (ours)", plotting.PALETTE[4]),
                                 ("literal", "paper's protocol", "black")):
        steps, loss = p.runs[name]
        ax_c.plot(np.maximum(steps, 1), loss, color=color, lw=1.1, label=label)
    ax_c.axhline(p.narrow_risk, ls="--", lw=1, color=plotting.PALETTE[0], label="width-1 critical value")
    ax_c.set(xscale="log", yscale="log", xlabel="epoch", ylabel=f"loss of the width-{p.wide_width} net", ylim=(1e-4, 10),
             title="(c) a wide net stalls\nat the narrow value")
    ax_c.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    return fig
