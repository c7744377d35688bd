"""Composition embeddings and the degeneracy of embedded critical points (paper A Lemma 2, Thm. 2;
paper B Defs. 4.5-4.6, Thms. 4.2-4.3, Cor. 4.1, Thm. 6.1).

Helpers for the chapters on null embeddings and on composition and degeneracy:

* :func:`critical_data` -- data S for which a given theta is an *exact* critical point with nonzero loss
  (the results hold for every S, so S may be chosen; paper B Assumption (ii)): random inputs and the targets of
  :func:`~embedding_principle.representation.critical_targets`.
* :func:`distinct_critical_points` -- polish many starts and keep one critical point per critical function.
* :func:`embed_steps` / :func:`embedding_to` -- K-step composition embeddings (paper B Def. 4.6), from
  an explicit list of one-step null or splitting steps, or into any K-neuron wider net (the construction
  behind paper B Thm. 4.3).
* :func:`check_embedding` -- the three properties of a critical embedding (paper B Def. 4.2): output,
  representation (spans of features and the constant function) and criticality, as residuals.
* :func:`subspace_residuals` -- worst residuals at random points of the critical affine subspace
  theta_B + span(V) of paper A Thm. 2 (= paper B Thm. 6.1), built by ``critical_subspace``.
* :func:`degeneracy` -- the Hessian inertia with the size of the gap around the zero threshold.
* :func:`degeneracy_sequence` -- the Hessian inertia after each step of a composition: the number of
  zero eigenvalues is the degree of degeneracy of paper A Def. 3.
* :func:`interpolating_minimum` -- an interpolating global minimum (zero loss), for Cooper's m - n.
* :func:`draw_nested_sets`, :func:`draw_width_lattice` -- paper B Fig. 4.4(a)(b).

Layers are numbered 1..L as in the papers; neuron indices are 0-based; a null step is written with
neuron ``NULL`` (= -1, the papers' s = 0).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Ellipse, FancyArrowPatch
from torch import Tensor
from torch.func import jacrev

from .backprop import backprop
from .critical import CriticalPoint, find_critical_point
from .embeddings import NULL, Embedding, compose, null, splitting
from .landscape import Landscape, inertia
from .network import MLP, check_mlp
from .plotting import PALETTE
from .representation import critical_residual, critical_targets, span_residual

__all__ = ["critical_data", "distinct_critical_points", "Step", "embed_steps", "embedding_to", "EmbeddingCheck",
           "check_embedding", "span_residual", "null_lemma_residuals", "null_caveat_gradient", "subspace_residuals",
           "Degeneracy", "degeneracy", "DegeneracyRow", "degeneracy_sequence", "jacobian_rank",
           "interpolating_minimum", "draw_nested_sets", "draw_width_lattice"]

D = torch.float64


# ----------------------------------------------------------------------------- exact critical points
def critical_data(net: MLP, theta, n: int | None = None, loss: str = "mse", seed: int = 0,
                  residual: float = 0.5) -> tuple[Tensor, Tensor]:
    """Data (x, y) for which ``theta`` is an exact critical point of R_S with nonzero loss.

    x has n i.i.d. N(0, 1) rows; the targets come from
    :func:`~embedding_principle.representation.critical_targets` (which explains the construction: the
    per-sample loss gradients are a random residual orthogonal to the output Jacobian), continuing the random
    stream that drew x. MSE: y = f - r with max |r| = ``residual`` (any size here); cross-entropy: probability
    targets y = softmax(f) - r with r at most half the smallest probability (``residual`` is ignored).

    Args:
        net, theta: the network and the parameters (P,) that must become critical.
        n: number of samples; default P // d' + 20 (P // (d' - 1) + 20 for cross-entropy), so the residual has at
            least 20 free dimensions.
        loss: ``"mse"`` or ``"cross_entropy"`` (cross-entropy needs d' >= 2).
        seed: seed of x and of the random residual.
        residual: size of the MSE residual max |f - y|.
    """
    theta = check_mlp(net).check_one_theta(theta, "critical_data")
    if loss not in ("mse", "cross_entropy"):
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    k, P = net.widths[-1], net.num_params
    if loss == "cross_entropy" and k < 2:
        raise ValueError("cross-entropy needs at least 2 outputs")
    n = _positive_int(P // (k - 1 if loss == "cross_entropy" else k) + 20 if n is None else n, "n")
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n, net.widths[0], generator=gen, dtype=D)
    if loss == "cross_entropy":
        return x, critical_targets(net, theta, x, loss, scale=0.5, seed=gen)
    r = critical_residual(net, theta, x, loss, seed=gen)   # MSE: critical_targets with a scale of any size
    return x, net.forward(theta.to(D), x).detach() - r * (residual / r.abs().max())


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def distinct_critical_points(landscape: Landscape, starts, tol: float = 1e-12, max_iter: int = 200,
                             function_tol: float = 1e-6) -> list[CriticalPoint]:
    """Polish every start with :func:`~embedding_principle.critical.find_critical_point` and keep one critical point
    per distinct output function on the data (max |f - f'| > function_tol), sorted by R_S.

    Starts that do not converge to ||nabla R_S|| <= tol are dropped. Mirror images that compute the same function
    (e.g. (w, a) and (-w, -a) for an odd sigma) count once: they are the same critical function.
    """
    found: list[tuple[CriticalPoint, Tensor]] = []
    for theta0 in torch.as_tensor(starts, dtype=D):
        cp = find_critical_point(landscape, theta0, tol=tol, max_iter=max_iter, raise_on_failure=False)
        if not cp.converged:
            continue
        f = landscape.net.forward(cp.theta, landscape.x)
        if all((f - g).abs().max().item() > function_tol for _, g in found):
            found.append((cp, f))
    return sorted((cp for cp, _ in found), key=lambda cp: cp.risk)


# ----------------------------------------------------------------------------- compositions
class Step(NamedTuple):
    """One step of a composition (paper B Def. 4.6): split neuron ``neuron`` of ``layer`` with ratio alpha,
    or, with ``neuron = NULL``, add a null neuron with bias alpha. Indices refer to the net before this step."""

    layer: int
    neuron: int
    alpha: float

    def describe(self) -> str:
        if self.neuron == NULL:
            return f"null T^{self.alpha:g}_({self.layer},0)"
        return f"split T^{self.alpha:g}_({self.layer},{self.neuron})"


def _one_step(net: MLP, step) -> Embedding:
    if not isinstance(step, Sequence) or len(step) != 3:
        raise ValueError(f"each step must be (layer, neuron or NULL, alpha), got {step!r}")
    layer, neuron, alpha = step
    if neuron == NULL:
        return null(net, layer, alpha)
    return splitting(net, layer, neuron, alpha)


def embed_steps(net: MLP, steps: Sequence[Sequence]) -> list[Embedding]:
    """The one-step embeddings T_1, ..., T_K of a K-step composition (paper B Def. 4.6), in order of application.

    ``steps[k] = (l_k, s_k, alpha_k)``: a splitting T^alpha_{l,s} (s >= 0) or a null step T^alpha_{l,0}
    (s = NULL, alpha = the new bias); s_k indexes the net produced by the previous steps. The composition
    T_K ... T_1 itself is ``compose(*reversed(embed_steps(...)))`` (see :func:`embedding_to`).
    """
    out, current = [], check_mlp(net)
    for step in steps:
        out.append(_one_step(current, step))
        current = out[-1].target
    if not out:
        raise ValueError("a composition needs at least one step")
    return out


def embedding_to(net: MLP, widths: Sequence[int], kind: str = "split", alpha: float = 0.5,
                 bias: float = 0.0) -> Embedding:
    """A K-step composition embedding from ``net`` into the K-neuron wider NN(widths) (paper B Thm. 4.3).

    Each hidden layer l gets m'_l - m_l one-step embeddings: ``kind="split"`` splits narrow neurons
    0, 1, 2, ... in turn with ratio alpha; ``kind="null"`` adds null neurons with bias ``bias``;
    ``kind="mixed"`` alternates the two, starting with a split. (Without an output bias, null neurons in
    layer L-1 keep criticality only if sigma(bias) = 0: see ``Embedding.violations``.)
    """
    check_mlp(net)
    widths = tuple(widths)
    if kind not in ("split", "null", "mixed"):
        raise ValueError(f"kind must be 'split', 'null' or 'mixed', got {kind!r}")
    if len(widths) != len(net.widths) or widths[0] != net.widths[0] or widths[-1] != net.widths[-1]:
        raise ValueError(f"widths {widths} must have the depth, input and output sizes of {net} (paper A Def. 4)")
    if any(w < m for w, m in zip(widths, net.widths)) or widths == net.widths:
        raise ValueError(f"widths {widths} must be K-neuron wider than {net.widths}: no layer narrower, K >= 1")
    steps = []
    for l in range(1, net.L):
        for k in range(widths[l] - net.widths[l]):
            as_null = kind == "null" or (kind == "mixed" and k % 2 == 1)
            steps.append((l, NULL, bias) if as_null else (l, k % net.widths[l], alpha))
    return compose(*reversed(embed_steps(net, steps)))


# ----------------------------------------------------------------------------- checks of Def. 4.2
@dataclass(frozen=True)
class EmbeddingCheck:
    """Residuals of the three properties of a critical embedding (paper B Def. 4.2) at one theta.

    output_gap: max |f_T(theta)(x) - f_theta(x)| on the test inputs; risk_gap: |R_S(T theta) - R_S(theta)|;
    span_gaps: per layer l = 1..L, the larger of the two span residuals between {f^[l]_j} u {1} of the narrow
    and of the wide net on the test inputs (0 = equal spans); grad_narrow, grad_wide: ||nabla R_S|| before and
    after; flagged: the embedding's own ``preserves_criticality``.
    """

    output_gap: float
    risk_gap: float
    span_gaps: tuple[float, ...]
    grad_narrow: float
    grad_wide: float
    flagged: bool


def check_embedding(T: Embedding, theta, x, y, loss: str = "mse", x_test=None) -> EmbeddingCheck:
    """Measure output, representation and criticality preservation of T at theta on data (x, y).

    ``x_test`` (default: x) are the inputs where outputs and features are compared; spans are compared as
    column spans of the feature matrices [f^[l](x_test), 1], by
    :func:`~embedding_principle.representation.span_residual` both ways (the ``residual`` of
    ``representation.feature_span_ranks``, which also reports the ranks, on unit-length columns).
    """
    if not isinstance(T, Embedding):
        raise TypeError(f"T must be an Embedding, got {type(T).__name__}")
    theta = T.source.check_theta(theta)
    wide = T(theta)
    narrow_land, wide_land = Landscape(T.source, x, y, loss), Landscape(T.target, x, y, loss)
    xt = narrow_land.x if x_test is None else T.source.check_x(x_test, like=theta)
    fn, fw = T.source.features(theta, xt), T.target.features(wide, xt)
    ones = torch.ones(xt.shape[0], 1, dtype=D)
    spans = []
    for l in range(1, T.source.L + 1):
        a, b = torch.cat([fn[l], ones], 1), torch.cat([fw[l], ones], 1)
        spans.append(max(span_residual(a, b), span_residual(b, a)))
    return EmbeddingCheck(
        output_gap=(fw[-1] - fn[-1]).abs().max().item(),
        risk_gap=abs(wide_land.risk(wide).item() - narrow_land.risk(theta).item()),
        span_gaps=tuple(spans),
        grad_narrow=narrow_land.grad(theta).norm().item(),
        grad_wide=wide_land.grad(wide).norm().item(),
        flagged=T.preserves_criticality)


# ----------------------------------------------------------------------------- null steps (paper B Lemma 4.1)
def _null_neuron(T: Embedding) -> tuple[int, int]:
    nulls = [(l, j) for l, I_l in enumerate(T.index_map, start=1) for j, s in enumerate(I_l) if s == NULL]
    if len(nulls) != 1 or T.K != 1:
        raise ValueError(f"expected a one-step null embedding (one added null neuron), got {T}")
    return nulls[0]


def null_lemma_residuals(T: Embedding, theta, x, y, loss: str = "mse") -> dict[str, float]:
    """Residuals of paper B Lemma 4.1 for a one-step null embedding T = T^alpha_{l,0} at any theta.

    With q the null neuron (bias alpha) of layer l: f^[l]_wide = [f^[l]; sigma(alpha)], g^[l]_wide =
    [g^[l]; sigma'(alpha)], z^[l]_wide = [z^[l]; 0], and every other layer's f, g, z unchanged. Returns the
    max absolute deviation from these predictions over all layers and samples, for f, g and z, from the
    papers' recursions (:func:`~embedding_principle.backprop.backprop`) run on both nets.
    """
    layer, q = _null_neuron(T)
    theta = T.source.check_theta(theta)
    narrow, wide = backprop(T.source, theta, x, y, loss), backprop(T.target, T(theta), x, y, loss)
    alpha = T.target.unflatten(T(theta))[layer - 1][1][q]
    act = T.source.activation
    const = {"f": act(alpha), "g": act.derivative(alpha), "z": torch.zeros_like(alpha)}
    out = {}
    for key in ("f", "g", "z"):
        worst = 0.0
        for l in range(1, T.source.L + 1):
            a, b = getattr(narrow, key)[l], getattr(wide, key)[l]
            if l == layer:
                keep = [j for j in range(b.shape[-1]) if j != q]
                worst = max(worst, (b[:, keep] - a).abs().max().item(),
                            (b[:, q] - const[key]).abs().max().item())
            else:
                worst = max(worst, (b - a).abs().max().item())
        out[key] = worst
    return out


def null_caveat_gradient(net: MLP, theta, x, y, alpha: float, loss: str = "mse") -> float:
    """The predicted ||nabla R_S|| after a null step in layer L-1 of a net **without** output bias, at a critical
    theta: only the new output column W^[L]_{:,q} gets a gradient, E_S e^[L] sigma(alpha), so its norm is
    |sigma(alpha)| ||E_S e^[L]|| (e^[L] = z^[L] = nabla l). With an output bias E_S e^[L] = nabla_{b^[L]} R_S = 0
    (paper B Prop. 4.1); without one it is the gradient an output bias would have, nonzero in general.
    """
    bp = backprop(net, theta, x, y, loss)
    sigma = net.activation(torch.as_tensor(float(alpha), dtype=D)).abs().item()
    return sigma * bp.e[net.L].mean(-2).norm().item()


# ----------------------------------------------------------------------------- critical affine subspace
def subspace_residuals(wide: Landscape, theta_B, V, narrow: MLP, theta, points: int = 50, scale: float = 10.0,
                       seed: int = 0, x_test=None) -> dict[str, float]:
    """Worst residuals over random points theta_B + V a, a ~ N(0, scale^2 I_K), of paper A Thm. 2's subspace.

    Returns a dict with ``grad`` (max ||nabla R_S||), ``risk`` (max |R_S - R_S(theta)|, R_S of the narrow net at
    theta on the same data), ``output`` (max |f_point - f_theta| on x_test, default the data inputs) and
    ``coef`` (the largest |a_i| drawn).
    """
    theta_B, V = wide.check_theta(theta_B), torch.as_tensor(V, dtype=D)
    if V.ndim != 2 or V.shape[0] != theta_B.shape[0]:
        raise ValueError(f"V must have shape ({theta_B.shape[0]}, K), got {tuple(V.shape)}")
    points = _positive_int(points, "points")
    gen = torch.Generator().manual_seed(int(seed))
    a = scale * torch.randn(points, V.shape[1], generator=gen, dtype=D)
    batch = theta_B + a @ V.T
    xt = wide.x if x_test is None else wide.net.check_x(x_test, like=theta_B)
    R0 = Landscape(narrow, wide.x, wide.y, wide.loss).risk(theta).item()
    return {
        "grad": wide.grad(batch).norm(dim=-1).max().item(),
        "risk": (wide.risk(batch) - R0).abs().max().item(),
        "output": (wide.net.forward(batch, xt) - narrow.forward(theta, xt)).abs().max().item(),
        "coef": a.abs().max().item(),
    }


# ----------------------------------------------------------------------------- degeneracy
class Degeneracy(NamedTuple):
    """Inertia of a Hessian with the size of its gap: ``zero_max`` is the largest |lambda| / max |lambda| counted as
    zero, ``nonzero_min`` the smallest one counted as nonzero (nan if every eigenvalue is zero)."""

    negative: int
    zero: int
    positive: int
    zero_max: float
    nonzero_min: float


def degeneracy(h_or_eigenvalues, rtol: float = 1e-8) -> Degeneracy:
    """The inertia of :func:`~embedding_principle.landscape.inertia` (|lambda| <= rtol max |lambda| counts as zero;
    the zero count is the degree of degeneracy of paper A Def. 3) and the gap around the threshold, so a reader can
    see that the count does not depend on rtol."""
    t = torch.as_tensor(h_or_eigenvalues, dtype=D)
    ev = t if t.ndim == 1 else torch.linalg.eigvalsh(0.5 * (t + t.T))
    i = inertia(ev, rtol=rtol)
    rel = (ev.abs() / ev.abs().max().clamp_min(1e-300)).sort().values
    return Degeneracy(i.negative, i.zero, i.positive, rel[i.zero - 1].item() if i.zero else 0.0,
                      rel[i.zero].item() if i.zero < len(rel) else float("nan"))


class DegeneracyRow(NamedTuple):
    """One row of :func:`degeneracy_sequence`: after ``step`` steps (0 = the narrow net)."""

    step: int
    description: str
    widths: tuple[int, ...]
    num_params: int
    grad_norm: float
    negative: int
    zero: int
    positive: int
    zero_max: float
    nonzero_min: float


def degeneracy_sequence(net: MLP, theta, x, y, steps: Sequence[Sequence], loss: str = "mse",
                        rtol: float = 1e-8) -> list[DegeneracyRow]:
    """Apply the steps of a composition one at a time and record the Hessian inertia after each.

    The zero count is the degree of degeneracy (paper A Def. 3), counted by
    :func:`~embedding_principle.landscape.inertia` with |lambda| <= rtol max |lambda| as zero. To show that
    the count is not an accident of the tolerance, each row also holds ``zero_max``, the largest |lambda| counted
    as zero, and ``nonzero_min``, the smallest one counted as nonzero, both relative to max |lambda|.
    """
    rows, current = [], net.check_theta(theta)
    land = Landscape(net, x, y, loss)
    embeddings = embed_steps(net, steps)
    for k, T in enumerate([None, *embeddings]):
        if T is not None:
            current = T(current)
            land = Landscape(T.target, x, y, loss)
        d = degeneracy(land.hessian(current), rtol=rtol)
        desc = "narrow" if T is None else Step(*steps[k - 1]).describe()
        rows.append(DegeneracyRow(k, desc, land.net.widths, land.net.num_params, land.grad(current).norm().item(),
                                  *d))
    return rows


def jacobian_rank(net: MLP, theta, x, rtol: float | None = None) -> int:
    """Numerical rank of the output Jacobian J = d f_theta(x) / d theta (n d' x P) on the inputs x.

    P - rank J is the number of parameter directions that do not change f on the data to first order; at a critical
    point where H^(2) vanishes on them it is the degree of degeneracy. Default tolerance: numpy's
    max(n d', P) * eps * max singular value.
    """
    theta = net.check_theta(theta)
    x = net.check_x(x, like=theta)
    J = jacrev(lambda t: net.forward(t, x))(theta).reshape(-1, net.num_params)
    s = torch.linalg.svdvals(J)
    tol = max(J.shape) * torch.finfo(D).eps if rtol is None else rtol
    return int((s > tol * s.max()).sum()) if s.numel() and s.max() > 0 else 0


def interpolating_minimum(net: MLP, n: int, seed: int = 0, std: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(x, y, theta) with y = f_theta(x): theta is a global minimum (R_S = 0) of the MSE risk.

    theta ~ N(0, std^2), x ~ N(0, 1) of shape (n, m_0). At such a point H_S = (2 / (n d')) J^T J, so the degree
    of degeneracy is P - rank J, which is P - n d' for a Jacobian of full row rank (Cooper 2021: the global
    minima form a manifold of dimension P - n for one output).
    """
    n = _positive_int(n, "n")
    theta = check_mlp(net).init(seed, std)
    x = torch.randn(n, net.widths[0], generator=torch.Generator().manual_seed(int(seed) + 1), dtype=D)
    return x, net.forward(theta, x).detach(), theta


# ----------------------------------------------------------------------------- paper B Fig. 4.4
def draw_nested_sets(ax: plt.Axes, m: int = 4, labels: Callable[[int], str] | None = None) -> plt.Axes:
    """Paper B Fig. 4.4(a): the critical functions of two-layer nets, F^c_1 in F^c_2 in ... in F^c_m.

    Nested ellipses, the smallest for width 1 (Cor. 4.1 applied to widths k < k+1).
    """
    m = _positive_int(m, "m")
    labels = labels or (lambda k: f"$F^c_{{{k}}}$")
    left, right, top = [], [], []
    for k in range(m, 0, -1):
        w, h = 1.0 + 1.1 * (k - 1), 0.7 + 0.55 * (k - 1)  # half-axes: each set contains the previous one
        cx = 0.55 * (k - 1)
        ax.add_patch(Ellipse((cx, 0.0), 2 * w, 2 * h, fc=PALETTE[(k - 1) % 10], alpha=0.25, ec=PALETTE[(k - 1) % 10],
                             lw=1.5))
        ax.text(cx + w - 0.55, 0.0, labels(k), ha="center", va="center", fontsize=11)
        left.append(cx - w), right.append(cx + w), top.append(h)
    ax.set_xlim(min(left) - 0.2, max(right) + 0.2)
    ax.set_ylim(-max(top) - 0.2, max(top) + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def draw_width_lattice(ax: plt.Axes, m1: int = 3, m2: int = 3) -> plt.Axes:
    """Paper B Fig. 4.4(b): the lattice of critical-function sets F^c_{k1,k2} of three-layer nets.

    Node (k1, k2) stands for F^c_{k1,k2}; an arrow A -> B means A is a subset of B (Cor. 4.1: one more neuron
    in layer 1 or in layer 2); the lattice gives no inclusion between, e.g., (1, 2) and (2, 1).
    """
    m1, m2 = _positive_int(m1, "m1"), _positive_int(m2, "m2")
    pos = {(i, j): (i - j, i + j) for i in range(1, m1 + 1) for j in range(1, m2 + 1)}
    for (i, j), (px, py) in pos.items():
        for nxt in ((i + 1, j), (i, j + 1)):
            if nxt in pos:
                qx, qy = pos[nxt]
                ax.add_patch(FancyArrowPatch((px, py), (qx, qy), arrowstyle="-|>", mutation_scale=12, lw=1.2,
                                             color="0.45", shrinkA=16, shrinkB=16, zorder=1))
        ax.text(px, py, f"$F^c_{{{i},{j}}}$", ha="center", va="center", fontsize=10, zorder=2,
                bbox={"boxstyle": "round,pad=0.35", "fc": PALETTE[(i + j - 2) % 10], "alpha": 0.3, "ec": "0.3"})
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
