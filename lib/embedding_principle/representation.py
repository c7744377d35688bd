"""Representations, errors and gradients of embedded networks (paper A Lemma 1, Prop. 1; paper B Def. 4.2, Lemma 5.1).

A critical embedding T must be *representation preserving* (paper B Def. 4.2 (ii)): for every layer l,

    span({(f^[l]_narr)_j}_j U {1}) = span({(f^[l]_wide)_j'}_j' U {1}),

as functions of x. On data x_1..x_n both sides are column spaces of n x (m_l + 1) matrices, so the
statement becomes a rank identity, rank[F_narr, 1] = rank[F_wide, 1] = rank[F_narr, F_wide, 1]
(:func:`feature_span_ranks`; its ``residual``, the relative distance of each matrix's columns to the other
span, is :func:`span_residual` taken both ways). Behind criticality preservation sits the copy pattern of
paper A Lemma 1 / paper B Lemmas 4.1, 4.2, 5.1: a wide neuron j that copies narrow neuron I_l(j) carries the
same feature f and feature gradient g, and the error z (and e = z o g) scaled by a factor beta^[l]_j
(:func:`error_factors`, :func:`copy_residuals`); hence every gradient entry of T(theta) is a factor times one
narrow gradient entry (:func:`embedded_gradient`, the proof of paper A Thm. 1).

Also here, as independent references for the chapters: the errors z^[l] = grad_{f^[l]} l and
e^[l] = grad_{u^[l]} l by autograd (:func:`errors_by_autograd`, to check the recursions of
:mod:`~embedding_principle.backprop`), the residual curvature H^(2),[L-1] by its defining formula
(:func:`hidden_residual_curvature`, paper B section 3.3), and data for which a given theta is an
*exact* critical point with a nonzero loss (:func:`critical_residual`, :func:`critical_targets`; the chapters'
``degeneracy.critical_data`` draws the inputs and calls them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor
from torch.func import grad as func_grad
from torch.func import hessian, jacrev, vmap

from .backprop import backprop
from .embeddings import NULL, Embedding
from .losses import Loss, get_loss
from .network import MLP, as_tensor, check_mlp

__all__ = ["k_neuron_wider", "span_residual", "SpanRanks", "feature_span_ranks", "errors_by_autograd",
           "error_factors", "CopyResiduals", "copy_residuals", "embedded_gradient", "hidden_residual_curvature",
           "critical_residual", "critical_targets"]

LossLike = Union[str, Loss, Callable[[Tensor, Tensor], Tensor]]


# ----------------------------------------------------------------------------- argument checks
def _one_theta(net: MLP, theta, caller: str) -> Tensor:
    return net.check_one_theta(theta, caller).to(torch.float64)


def _inputs(net: MLP, x, like: Tensor) -> Tensor:
    x = net.check_x(x, like=like)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, {net.widths[0]}), got {tuple(x.shape)}")
    return x


def _prepare(net: MLP, theta, x, y, loss: LossLike, caller: str) -> tuple[Tensor, Loss, Tensor, Tensor, Tensor]:
    """(theta (P,) float64 detached, the Loss, x, f_theta(x), y in the loss's target format)."""
    theta = _one_theta(check_mlp(net), theta, caller).detach()
    lobj = get_loss(loss)
    x = net.check_x(x, like=theta)
    f = net.forward(theta, x)
    y = lobj.target(f.shape, y)
    return theta, lobj, x, f, y.to(theta.dtype) if y.is_floating_point() else y


def _check_embedding(T) -> Embedding:
    if not isinstance(T, Embedding):
        raise TypeError(f"T must be an Embedding (e.g. from splitting or general_compatible), got {type(T).__name__}")
    return T


# ----------------------------------------------------------------------------- wider / narrower (paper A Def. 4)
def k_neuron_wider(narrow: MLP, wide: MLP) -> int:
    """K such that NN({m'_l}) = ``wide`` is K-neuron wider than NN({m_l}) = ``narrow`` (paper A Def. 4).

    Requires the same depth, m'_0 = m_0, m'_L = m_L and m'_l >= m_l for every hidden layer; then
    K = sum_{l=1}^{L-1} (m'_l - m_l) >= 0 (the papers ask K >= 1; K = 0 means equal widths).
    Raises ValueError naming the first condition that fails.
    """
    check_mlp(narrow, "narrow")
    check_mlp(wide, "wide")
    if wide.L != narrow.L:
        raise ValueError(f"not wider: depths differ (L = {narrow.L} and {wide.L}); the papers compare one depth")
    if (wide.widths[0], wide.widths[-1]) != (narrow.widths[0], narrow.widths[-1]):
        raise ValueError(f"not wider: input/output widths differ ({narrow.widths[0]}, {narrow.widths[-1]}) vs "
                         f"({wide.widths[0]}, {wide.widths[-1]})")
    for l, (m, m_wide) in enumerate(zip(narrow.widths[1:-1], wide.widths[1:-1]), start=1):
        if m_wide < m:
            raise ValueError(f"not wider: layer {l} has {m_wide} < {m} neurons")
    return sum(wide.widths) - sum(narrow.widths)


# ----------------------------------------------------------------------------- representation (Def. 4.2 (ii))
def span_residual(a: Tensor, b: Tensor, rtol: float = 1e-10) -> float:
    """max over columns c of b of ||c - P_a c|| / ||c||, with P_a the projector onto the column span of a
    (singular values below rtol * max dropped); 0 for zero columns. 0 means span(b) is inside span(a).

    Taken both ways for the feature matrices [f^[l], 1] of two nets it measures how far their representations
    (paper B Def. 4.2 (ii)) are from equal: the ``residual`` of :func:`feature_span_ranks` and the ``span_gaps``
    of ``degeneracy.check_embedding``.
    """
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    u = u[:, s > rtol * s.max()] if s.numel() and s.max() > 0 else u[:, :0]
    res = b - u @ (u.T @ b)
    norms = b.norm(dim=0)
    ok = norms > 0
    return float((res.norm(dim=0)[ok] / norms[ok]).max()) if ok.any() else 0.0


@dataclass(frozen=True)
class SpanRanks:
    """Numerical ranks of the feature matrices of layer l (paper B Def. 4.2 (ii)); see :func:`feature_span_ranks`.

    Attributes:
        narrow, wide, joint: rank[F_narr, 1], rank[F_wide, 1] and rank[F_narr, F_wide, 1].
        rtol: the rank threshold, relative to the largest singular value (columns normalised to unit length).
        kept: the smallest singular value counted in the joint rank, relative to the largest (the margin above rtol).
        dropped: the largest singular value of the joint matrix below the threshold, relative (0.0 if none).
        residual: max over the columns of either matrix of the relative distance to the other one's span,
            ||(I - P) c|| / ||c||; round-off level when the spans coincide.
    """

    narrow: int
    wide: int
    joint: int
    rtol: float
    kept: float
    dropped: float
    residual: float

    @property
    def equal(self) -> bool:
        """True when narrow == wide == joint, i.e. the two spans coincide (numerically)."""
        return self.narrow == self.wide == self.joint


def _unit_columns(F: Tensor) -> Tensor:
    """[F, 1] with every nonzero column scaled to unit length and zero columns dropped (they span nothing)."""
    M = torch.cat([F, torch.ones(F.shape[0], 1, dtype=F.dtype)], 1)
    norms = M.norm(dim=0)
    keep = norms > 0
    return M[:, keep] / norms[keep]


def _rank(M: Tensor, rtol: float) -> tuple[int, Tensor]:
    """(numerical rank #{s_k > rtol s_1}, singular values / largest)."""
    s = torch.linalg.svd(M, full_matrices=False)[1]
    rel = s / s[0]
    return int((rel > rtol).sum()), rel


def feature_span_ranks(net: MLP, theta, wide_net: MLP, wide_theta, x, layer: int, rtol: float = 1e-9) -> SpanRanks:
    """Compare span({f^[l]_j} U {1}) of a narrow and a wide network on the data x (paper B Def. 4.2 (ii)).

    The features of layer ``layer`` (0..L; 0 is the input, L the output) are evaluated on the rows of x,
    giving F_narr (n x m_l) and F_wide (n x m'_l). The spans coincide on the data iff
    rank[F_narr, 1] = rank[F_wide, 1] = rank[F_narr, F_wide, 1].

    Numerical rank: every column of a matrix is scaled to unit length (zero columns dropped), so the
    singular values are scale-free, and the rank is #{sigma_k > rtol * sigma_1}. The default rtol = 1e-9
    sits far above the round-off of exactly duplicated or constant columns (~1e-15, what a splitting or
    null embedding creates) and below the smallest singular value of generic feature matrices of the
    small networks of the book; the returned ``kept`` and ``dropped`` show the actual margin on both sides.
    Features of very wide layers on 1-D inputs can have singular values that decay to round-off (analytic
    activations); there a numerical rank is not meaningful whatever the tolerance.

    Args:
        net, theta: the narrow network and its parameters (P,).
        wide_net, wide_theta: the wide network and its parameters (P',) (same depth and m_0).
        x: inputs (n, m_0).
        layer: the layer l in 0..L.
        rtol: relative rank threshold, in (0, 1).
    """
    check_mlp(net)
    check_mlp(wide_net, "wide_net")
    if wide_net.L != net.L or wide_net.widths[0] != net.widths[0]:
        raise ValueError(f"the two networks must have the same depth and input width, got {net} and {wide_net}")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= net.L:
        raise ValueError(f"layer must be an integer in 0..{net.L}, got {layer!r}")
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    theta = _one_theta(net, theta, "feature_span_ranks (theta)")
    wide_theta = _one_theta(wide_net, wide_theta, "feature_span_ranks (wide_theta)")
    x = _inputs(net, x, theta)
    Fn = _unit_columns(net.features(theta, x)[layer])
    Fw = _unit_columns(wide_net.features(wide_theta, x)[layer])
    r, rel = _rank(torch.cat([Fn, Fw], 1), rtol)
    return SpanRanks(narrow=_rank(Fn, rtol)[0], wide=_rank(Fw, rtol)[0], joint=r, rtol=float(rtol),
                     kept=rel[r - 1].item(), dropped=rel[r].item() if r < rel.numel() else 0.0,
                     residual=max(span_residual(Fn, Fw, rtol), span_residual(Fw, Fn, rtol)))


# ----------------------------------------------------------------------------- errors by autograd
def errors_by_autograd(net: MLP, theta, x, y, loss: LossLike = "mse") -> tuple[list, list]:
    """z^[l] = grad_{f^[l]} l and e^[l] = grad_{u^[l]} l per sample, by autograd (a reference for the recursions).

    A forward pass is written out with ``torch.nn.functional.linear`` and the activation, keeping every
    pre-activation u^[l] = W^[l] f^[l-1] + b^[l] and feature f^[l] in the graph; the loss summed over
    samples is differentiated once, so the gradient with respect to the row of sample i is the per-sample
    derivative. No recursion of :mod:`~embedding_principle.backprop` is used.

    Returns:
        ``(z, e)``: lists indexed by l = 0..L with None at l = 0; z[l], e[l] of shape (n, m_l).
    """
    theta, lobj, x, _, y = _prepare(net, theta, x, y, loss, "errors_by_autograd")
    h, us, fs = x, [None], [None]
    with torch.enable_grad():
        for l, (W, b) in enumerate(net.unflatten(theta.clone().requires_grad_(True)), start=1):
            u = torch.nn.functional.linear(h, W, b)
            h = net.activation(u) if l < net.L else u
            u.retain_grad()
            h.retain_grad()
            us.append(u)
            fs.append(h)
        lobj(h, y).sum().backward()
    return [None] + [t.grad for t in fs[1:]], [None] + [t.grad for t in us[1:]]


# ----------------------------------------------------------------------------- copies (Lemma 1, Lemma 5.1)
def error_factors(T: Embedding) -> list[Tensor]:
    """The factors beta^[l] of the wide errors, (e^[l]_wide)_j = beta^[l]_j (e^[l]_narr)_{I_l(j)} (paper B Lemma 5.1).

    Computed backwards from beta^[L] = 1 by Condition 1 (backward) of paper B:
    beta^[l-1]_j = sum_{i in I_l^{-1}(k)} beta^[l]_i alpha^[l]_{ij} (the same value for every narrow k), 0 for a
    null neuron j. For the one-step splitting T^alpha_{l,s} this is 1 everywhere except (1 - alpha) on neuron s
    and alpha on its new copy (paper A Lemma 1 (iii)). This is :attr:`Embedding.beta`, checked: unlike the
    attribute, it refuses an embedding without a common beta.

    Returns:
        [beta^[0], ..., beta^[L]] (beta^[0] and beta^[L] are all ones), beta^[l] of length m'_l.

    Raises:
        ValueError: if T violates Condition 1 (backward) (one of ``T.violations``), so that no common beta exists.
    """
    T = _check_embedding(T)
    backward = [v for v in T.violations if v.startswith("Condition 1 (backward)")]
    if backward:
        more = f" (and {len(backward) - 1} more)" if len(backward) > 1 else ""
        raise ValueError(f"no common factor beta: {backward[0]}{more}")
    return T.beta


@dataclass(frozen=True)
class CopyResiduals:
    """Worst deviations from the copy pattern of paper A Lemma 1 / paper B Lemmas 4.1, 4.2, 5.1.

    For every layer l = 1..L and effective wide neuron j (I_l(j) != NULL), over all samples:
    ``f``: |f'_j - f_{I(j)}|, ``g``: |g'_j - g_{I(j)}|, ``z``: |z'_j - beta_j z_{I(j)}|,
    ``e``: |e'_j - beta_j e_{I(j)}|;
    for null neurons: ``null_f``: the spread max_i f'_j(x_i) - min_i f'_j(x_i) (a constant feature has 0),
    ``null_e``: |e'_j|. The output layer L is compared entrywise (identity index map, beta = 1).
    ``per_layer[l]`` holds the same keys for layer l. Values are absolute (0.0 where nothing is compared).
    ``error_pairs[l]`` (l = 1..L; None at 0) is the pair (e'_j, beta_j e_{I(j)}) over samples and effective wide
    neurons j, of shape (n, effective m'_l) each, e.g. for a scatter plot (paper B Fig. 5.4).
    """

    f: float
    g: float
    z: float
    e: float
    null_f: float
    null_e: float
    per_layer: dict
    error_pairs: list

    @property
    def worst(self) -> float:
        """The largest of all six residuals."""
        return max(self.f, self.g, self.z, self.e, self.null_f, self.null_e)


def _max_abs(t: Tensor) -> float:
    return t.abs().max().item() if t.numel() else 0.0


def copy_residuals(T: Embedding, theta, x, y, loss: LossLike = "mse") -> CopyResiduals:
    """How exactly the wide net T(theta) copies features and scales errors (paper A Lemma 1; paper B Lemma 5.1).

    Both networks are run through :func:`~embedding_principle.backprop.backprop` on (x, y); the factors
    beta are ``T.beta`` (:func:`error_factors`). See :class:`CopyResiduals` for what is measured. For an
    embedding that violates Condition 1 (backward) there is no common beta: beta is then read off the first
    narrow neuron's copies, and the z and e residuals show the failure instead of raising.
    """
    T = _check_embedding(T)
    theta = _one_theta(T.source, theta, "copy_residuals")
    narrow = backprop(T.source, theta, x, y, loss)
    wide = backprop(T.target, T(theta), x, y, loss)
    beta = T.beta
    L = T.source.L
    maps = [list(range(T.source.widths[0])), *T.index_map, list(range(T.source.widths[-1]))]
    per_layer: dict = {}
    pairs: list = [None]
    for l in range(1, L + 1):
        I = torch.tensor(maps[l])
        eff, nul = I >= 0, I < 0
        src = I[eff]
        predicted = beta[l][eff] * narrow.e[l][:, src]
        r = {"f": _max_abs(wide.f[l][:, eff] - narrow.f[l][:, src]),
             "g": _max_abs(wide.g[l][:, eff] - narrow.g[l][:, src]),
             "z": _max_abs(wide.z[l][:, eff] - beta[l][eff] * narrow.z[l][:, src]),
             "e": _max_abs(wide.e[l][:, eff] - predicted),
             "null_f": _max_abs(wide.f[l][:, nul].amax(0) - wide.f[l][:, nul].amin(0)) if nul.any() else 0.0,
             "null_e": _max_abs(wide.e[l][:, nul])}
        per_layer[l] = r
        pairs.append((wide.e[l][:, eff], predicted))
    worst = {k: max(r[k] for r in per_layer.values()) for k in ("f", "g", "z", "e", "null_f", "null_e")}
    return CopyResiduals(**worst, per_layer=per_layer, error_pairs=pairs)


def embedded_gradient(T: Embedding, grad) -> Tensor:
    """The gradient that paper A's proof of Thm. 1 predicts at T(theta), from the narrow gradient at theta.

    For a splitting embedding (paper B Def. 5.3: no null neurons) with factors beta (:func:`error_factors`),
    grad_{W'^[l]_{ij}} R_S = E_S e'_i f'_j = beta^[l]_i grad_{W^[l]_{I(i) I(j)}} R_S and
    grad_{b'^[l]_i} R_S = beta^[l]_i grad_{b^[l]_{I(i)}} R_S. For T^alpha_{l,s}: the input weights and bias of
    neuron s and of its copy get (1 - alpha) and alpha times the narrow ones, the output column of s is
    duplicated, everything else is unchanged. In particular grad R_S(theta) = 0 implies grad R_S(T theta) = 0,
    and ||grad R_S(T theta)|| <= sqrt(1 + max(1, 2 alpha^2 - 2 alpha)) ||grad R_S(theta)|| for one step.

    Args:
        T: a splitting embedding (every wide neuron copies a narrow one).
        grad: the narrow gradient grad R_S(theta), shape (..., P).

    Returns:
        The predicted wide gradient, shape (..., P').
    """
    T = _check_embedding(T)
    if any(NULL in I for I in T.index_map):
        raise ValueError("embedded_gradient needs a splitting embedding (paper B Def. 5.3): this one adds null "
                         "neurons, whose gradient involves their constant outputs sigma(b*)")
    grad = T.source.check_theta(as_tensor(grad, "grad"))
    beta = error_factors(T)
    src, factor = [], []
    widths = T.source.widths
    maps = [torch.arange(widths[0]), *(torch.tensor(I) for I in T.index_map), torch.arange(widths[-1])]
    for l, ((w, b), (w_t, b_t)) in enumerate(zip(T.source.layer_slices, T.target.layer_slices), start=1):
        Ii, Ij = maps[l], maps[l - 1]
        src.append((w.start + Ii[:, None] * T.source.widths[l - 1] + Ij[None, :]).flatten())   # W^[l]_{I(i) I(j)}
        factor.append(beta[l].repeat_interleave(len(Ij)))
        if b_t is not None:
            src.append(b.start + Ii)                                                            # b^[l]_{I(i)}
            factor.append(beta[l])
    return grad[..., torch.cat(src)] * torch.cat(factor).to(grad)


# ----------------------------------------------------------------------------- H^(2),[L-1] by its formula
def hidden_residual_curvature(net: MLP, theta, x, y, loss: LossLike = "mse") -> Tensor:
    """H^(2),[L-1]_S = sum_{i,j} E_S d_i l  W^[L]_{ij}  grad_{theta^[L-1]} grad_{theta^[L-1]} (f^[L-1]_theta)_j.

    The formula of paper B section 3.3, evaluated literally: the weights c_j(x) = sum_i d_i l(f(x), y) W^[L]_{ij}
    are computed once and held fixed, and the Hessian with respect to theta^[L-1] (the first
    ``net.num_hidden_params`` entries of theta) of E_S sum_j c_j f^[L-1]_j is taken by torch.func (reverse over
    reverse). This is independent of :meth:`Landscape.hessian_parts`, which assembles H^(2) from the whole
    network. Shape (M^[L-1], M^[L-1]).
    """
    theta, lobj, x, f, y = _prepare(net, theta, x, y, loss, "hidden_residual_curvature")
    W_L = net.unflatten(theta)[-1][0]
    c = (lobj.grad(f, y) @ W_L).detach() / x.shape[0]        # E_S d_i l W^[L]_{ij}, per sample (n, m_{L-1})
    k = net.num_hidden_params
    rest = theta[k:]

    def weighted_features(hidden: Tensor) -> Tensor:
        return (net.features(torch.cat([hidden, rest]), x)[net.L - 1] * c).sum()

    return hessian(weighted_features)(theta[:k])


# ----------------------------------------------------------------------------- exact critical points by data
def critical_residual(net: MLP, theta, x, loss: LossLike = "mse", seed: int | torch.Generator = 0) -> Tensor:
    """A random residual q (n, d') orthogonal to the columns of the output Jacobian on x: sum_i J_i^T q_i = 0.

    Since grad R_S(theta) = (1/n) sum_i J_i^T grad l(f_theta(x_i), y_i), theta is an exact critical point whenever
    the per-sample loss gradients grad l(f_theta(x_i), y_i) equal such a q (:func:`critical_targets` solves for
    the y). q is a combination with N(0, 1) coefficients of an orthonormal basis of the solutions, drawn from
    ``seed`` (an int, or a ``torch.Generator`` to continue its stream); for cross-entropy every row q_i also sums
    to 0, so that softmax(f_i) - q_i stays a probability vector once q is small. q is not normalised. The
    constraints are counted by numpy's numerical rank (singular values above max(shape) eps times the largest), so
    that only directions that are zero to round-off are taken: J^T q vanishes to round-off.

    Raises:
        ValueError: if no nonzero q exists (n d' <= the rank; for cross-entropy the row sums add n constraints).
    """
    theta = _one_theta(check_mlp(net), theta, "critical_residual").detach()
    x = _inputs(net, x, theta)
    ce = get_loss(loss) is get_loss("cross_entropy")
    n, d, P = x.shape[0], net.widths[-1], net.num_params
    J = jacrev(lambda t: net.forward(t, x))(theta).reshape(n * d, P)
    rows = [J.T]
    if ce:  # residual rows must sum to 0 so that y stays a probability vector
        rows.append(torch.kron(torch.eye(n, dtype=J.dtype), torch.ones(1, d, dtype=J.dtype)))
    M = torch.cat(rows)
    _, s, Vh = torch.linalg.svd(M, full_matrices=True)
    rank = int((s > max(M.shape) * torch.finfo(s.dtype).eps * s[0]).sum())  # numpy's matrix_rank tolerance
    free = n * d - rank
    if free <= 0:
        raise ValueError(f"no residual orthogonal to the Jacobian exists: n d' = {n * d} does not exceed the rank "
                         f"{rank} of the constraints, so no nonzero residual is left (take more samples)")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    return (Vh[rank:].T @ torch.randn(free, generator=gen, dtype=J.dtype)).reshape(n, d)


def critical_targets(net: MLP, theta, x, loss: LossLike = "mse", scale: float = 0.5,
                     seed: int | torch.Generator = 0) -> Tensor:
    """Targets y that make theta an exact critical point of R_S on inputs x, with a nonzero loss.

    Since grad R_S(theta) = (1/n) sum_i J_i^T grad l(f_theta(x_i), y_i) with the output Jacobian J_i, theta is
    critical whenever the per-sample loss gradients q_i = grad l(f_theta(x_i), y_i), stacked into one vector,
    are orthogonal to the columns of J. A random q in that orthogonal complement is drawn by
    :func:`critical_residual` (``seed``: an int or a ``torch.Generator``), and y_i is solved from
    grad l(f_i, y_i) = q_i: in closed form for ``"mse"`` (y = f - q d'/2, scaled so that
    max |f - y| = ``scale``) and ``"cross_entropy"`` (probability targets y = softmax(f) - q, scaled so that
    min y >= (1 - scale) min softmax(f)), and by Newton's method in y for any other loss (q scaled to
    max |q| = ``scale`` times the typical size of grad l; the loss must make y -> grad l(f, y) locally
    invertible, e.g. l(f, y) = h(f - y) with h strictly convex). Paper B: the theorems hold for every data set,
    so these S are as good as any. Needs n d' > P (n (d' - 1) > P for cross-entropy).

    Returns:
        y of shape (n, m_L).
    """
    if not (isinstance(scale, (int, float)) and 0 < scale < 1):
        raise ValueError(f"scale must be a number in (0, 1), got {scale!r}")
    lobj = get_loss(loss)
    q = critical_residual(net, theta, x, lobj, seed)
    theta = _one_theta(net, theta, "critical_targets").detach()
    f = net.forward(theta, _inputs(net, x, theta)).detach()
    if lobj is get_loss("mse"):
        return f - q * (scale / q.abs().max())
    if lobj is get_loss("cross_entropy"):
        p = torch.softmax(f, -1)
        return p - q * (scale * p.min() / q.abs().max())
    return _solve_targets(lobj, f, q, scale)


def _solve_targets(lobj: Loss, f: Tensor, q: Tensor, scale: float, max_iter: int = 100) -> Tensor:
    """Newton's method for y with grad l(f_i, y_i) = q_i per sample (q rescaled to ``scale`` x a typical gradient)."""
    def g_one(fi: Tensor, yi: Tensor) -> Tensor:  # grad l(f_i, y_i) in f_i, torch.func-friendly
        return func_grad(lambda fj: lobj.value(fj[None], yi[None]).sum())(fi)

    grad_all = vmap(g_one)
    direction = q / q.abs().max()
    y = f - scale * direction              # a residual of the right sign (l4's d(grad l)/dy is singular at y = f)
    typical = grad_all(f, y).abs().max().clamp_min(1e-12)
    q = direction * (scale * typical)
    jac = vmap(jacrev(g_one, argnums=1))
    res = grad_all(f, y) - q
    if not torch.isfinite(res).all():
        raise ValueError(f"the loss {lobj.name!r} has a NaN or infinite gradient at the targets tried")
    for _ in range(max_iter):
        size = res.abs().amax(-1)                          # per sample
        if size.max() <= 1e-15 * max(1.0, q.abs().max().item()):
            return y
        try:
            step = torch.linalg.solve(jac(f, y), res[..., None])[..., 0]
        except torch.linalg.LinAlgError as err:
            raise ValueError(f"could not solve grad l(f, y) = q for y with the loss {lobj.name!r}: d(grad l)/dy is "
                             f"singular; critical_targets needs y -> grad l(f, y) locally invertible") from err
        t = torch.ones_like(size)
        for _ in range(40):                                # damped Newton: halve the step per sample until |res| drops
            cand = y - t[:, None] * step
            new = grad_all(f, cand) - q
            worse = ~(new.abs().amax(-1) < size) & (size > 0)
            if not worse.any():
                break
            t = torch.where(worse, t / 2, t)
        y, res = cand, new
    raise ValueError(f"could not solve grad l(f, y) = q for y with the loss {lobj.name!r} (Newton did not converge); "
                     f"critical_targets needs y -> grad l(f, y) locally invertible")
