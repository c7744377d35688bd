"""Critical embeddings as explicit affine maps theta_narr -> A theta_narr + c (paper B section 4-5).

An embedding carries the parameters of a narrow network NN({m_l}) into a K-neuron wider one
NN({m'_l}) of the same depth (paper B Def. 4.1; Remark 4.1: an affine embedding is
theta -> A theta + c with A in R^{M' x M} injective). Every embedding here is a *general
compatible embedding* T^alpha_I (paper B Def. 5.2), given by

* a pull-back index mapping I (Def. 5.1): for each hidden layer l = 1..L-1 and each wide neuron
  i, I_l(i) is the narrow neuron it copies, or ``NULL`` (= -1, the papers' index 0) for a null
  neuron; I_0 and I_L are identities, and I is *total* (every narrow neuron has a copy);
* a tuple alpha = (alpha^[1], alpha_b^[1], ..., alpha^[L], alpha_b^[L]) in the wide tuple class:

      W'^[l]_{ij} = alpha^[l]_{ij} W^[l]_{I_l(i), I_{l-1}(j)},   b'^[l]_i = alpha_b^[l]_i + b^[l]_{I_l(i)},

  with the convention of Remark 5.1 that W_{0j} = W_{i0} = 1 and b_0 = 0 for null indices.

So every wide entry is either alpha times one narrow entry or a constant: A has at most one
nonzero per row, and we store it as (source index, coefficient, constant) per wide entry.
Conditions 1-2 of paper B make T^alpha_I a critical embedding (Thm 5.1); they are checked in
:func:`general_compatible`. The one-step embeddings of paper A Def. 5 / paper B Defs. 4.3-4.4,
their compositions (Defs. 4.5-4.6), equal splitting (Net2WiderNet), T_global (Example 5.1),
T_GN (Example 5.2) and the critical affine subspace of paper A Thm. 2 / paper B Thm. 6.1 are
built on top of it. Layers are numbered 1..L as in the papers; neuron indices are 0-based.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence, Union

import torch
from torch import Tensor

from .network import MLP, as_tensor, check_int, check_mlp, check_real

__all__ = ["NULL", "Embedding", "general_compatible", "splitting", "null", "compose", "equal_split",
           "t_global", "t_gn", "split_operators", "critical_subspace", "check_index_map", "constant_inputs"]

NULL = -1
"""Index-map value of a null neuron (the papers write I_l(i) = 0)."""

AlphaLike = Union[Tensor, Sequence[float], Sequence[tuple]]


# ----------------------------------------------------------------------------- the embedding
class Embedding:
    """An affine embedding T(theta) = A theta + c from ``source`` into the wider ``target``.

    Attributes: ``source``, ``target`` (MLPs), ``index_map`` (tuple over hidden layers
    l = 1..L-1 of tuples I_l, ``index_map[l-1][i]`` = narrow index or NULL), ``alpha``
    (``[(alpha_W^[l], alpha_b^[l])]`` in the target's layout, alpha_b^[L] None without output
    bias), ``A`` (dense M' x M, built on demand), ``c`` (M'), ``K`` (number of added neurons),
    ``beta`` and ``b_star`` (the multipliers of Conditions 1 and 2), ``violations`` (failed
    Conditions 1-2 or the output-bias caveat) and ``preserves_criticality`` (True when there
    are none, i.e. Thm 5.1 applies).
    Build instances with :func:`general_compatible` or the helpers below, not directly.
    """

    def __init__(self, source: MLP, target: MLP, index_map: tuple[tuple[int, ...], ...],
                 src: Tensor, coef: Tensor, const: Tensor, violations: Sequence[str] = ()) -> None:
        self.source, self.target, self.index_map = source, target, index_map
        self._src, self._coef, self._const = src, coef, const  # one (index, coefficient) per row of A
        self.violations = list(violations)

    @property
    def K(self) -> int:
        """Number of added neurons, sum_l (m'_l - m_l)."""
        return sum(self.target.widths) - sum(self.source.widths)

    @property
    def preserves_criticality(self) -> bool:
        """True when Conditions 1-2 (and the output-bias caveat) hold, so T is a critical embedding."""
        return not self.violations

    @property
    def A(self) -> Tensor:
        """The dense matrix A (M' x M, float64); at most one nonzero per row."""
        A = torch.zeros(self.target.num_params, self.source.num_params, dtype=torch.float64)
        rows = torch.nonzero(self._src >= 0).squeeze(1)
        A[rows, self._src[rows]] = self._coef[rows]
        return A

    @property
    def c(self) -> Tensor:
        """The constant vector c = T(0) (M')."""
        return self._const.clone()

    @property
    def alpha(self) -> list[tuple[Tensor, Tensor | None]]:
        """The tuple alpha of Def. 5.2 read off (A, c): an entry's coefficient if it has a narrow source, else c."""
        flat = torch.where(self._src >= 0, self._coef, self._const)
        layers = self.target.unflatten(flat)
        return [(W, None if b is None else self._const[s]) for (W, b), (_, s)
                in zip(layers, self.target.layer_slices)]

    @property
    def beta(self) -> list[Tensor]:
        """The multipliers beta^[l] of Condition 1 (backward), for l = 0..L (paper B Def. 5.2, Lemma 5.1).

        beta^[L] = 1 and, going backwards, beta^[l-1]_j = sum_{i in I_l^{-1}(k)} beta^[l]_i alpha^[l]_{ij} (the value
        for narrow k = 0; Condition 1 asks it to be the same for every k), 0 on null neurons; beta^[0] = 1 by
        convention. The wide errors are (e^[l]_wide)_j = beta^[l]_j (e^[l]_narr)_{I_l(j)} (Lemma 5.1). Read off
        alpha by the same code that checks the conditions; meaningful when T has no Condition 1 violation.
        """
        return self._multipliers()[0]

    @property
    def b_star(self) -> list[Tensor]:
        """The effective biases b*^[l] of Condition 2, for l = 0..L (paper B Def. 5.2).

        b*^[l]_i = sum_{null j} alpha^[l]_{ij} sigma(b*^[l-1]_j) + alpha_b^[l]_i for a null neuron i (its constant
        pre-activation: it outputs sigma(b*^[l]_i)), and 0 for effective neurons and for l = 0 and L.
        """
        return self._multipliers()[1]

    def _multipliers(self) -> tuple[list[Tensor], list[Tensor], list[str]]:
        return _multipliers(self.source, _full_maps(self.source, self.index_map),
                            _alpha_layers(self.target, self.alpha), math.inf)

    def __call__(self, theta) -> Tensor:
        """T(theta) = A theta + c for theta of shape (..., M); returns (..., M')."""
        theta = self.source.check_theta(theta)
        coef, const = self._coef.to(theta), self._const.to(theta)
        return theta[..., self._src.clamp(min=0)] * coef + const

    def __repr__(self) -> str:
        flag = "" if self.preserves_criticality else f", {len(self.violations)} violation(s)"
        return f"Embedding({self.source} -> {self.target}, K={self.K}{flag})"


# ----------------------------------------------------------------------------- argument checks
def check_index_map(net: MLP, index_map) -> tuple[tuple[int, ...], ...]:
    """Validate a pull-back index mapping I = (I_1, ..., I_{L-1}) of paper B Def. 5.1 for the narrow ``net``.

    Each I_l (a sequence, tensor or array) holds integers in {NULL, 0..m_l-1} and must be total (every narrow
    neuron has a copy). Returns I as a tuple of tuples of ints; TypeError / ValueError name the first problem.
    """
    if isinstance(index_map, (str, bytes)) or not isinstance(index_map, Sequence):
        raise TypeError("index_map must be a sequence with one sequence of narrow indices per hidden layer")
    if len(index_map) != net.L - 1:
        raise ValueError(f"index_map needs one entry per hidden layer l = 1..{net.L - 1} of {net}, "
                         f"got {len(index_map)}")
    out = []
    for l, I_l in enumerate(index_map, start=1):
        I_l = I_l.tolist() if hasattr(I_l, "tolist") else I_l  # tensors and arrays too
        I_l = tuple(check_int(v, f"index_map entry of layer {l}") for v in I_l)
        bad = [v for v in I_l if not NULL <= v < net.widths[l]]
        if bad:
            raise ValueError(f"index_map of layer {l} has entries {bad} out of range: use 0..{net.widths[l] - 1} "
                             f"or NULL = {NULL}")
        missing = sorted(set(range(net.widths[l])) - set(I_l))
        if missing:
            raise ValueError(f"index_map is not total: narrow neurons {missing} of layer {l} have no copy "
                             f"in the wide net")
        out.append(I_l)
    return tuple(out)


def _target(net: MLP, index_map: tuple[tuple[int, ...], ...]) -> MLP:
    return net.with_widths([net.widths[0], *map(len, index_map), net.widths[-1]])


def _full_maps(net: MLP, index_map) -> list[Tensor]:
    """[I_0, I_1, ..., I_L] as LongTensors, with I_0 and I_L the identity."""
    ident = lambda m: torch.arange(m)  # noqa: E731
    return [ident(net.widths[0]), *(torch.tensor(I, dtype=torch.long) for I in index_map), ident(net.widths[-1])]


def _alpha_layers(target: MLP, alpha) -> list[tuple[Tensor, Tensor]]:
    """alpha as [(alpha_W^[l], alpha_b^[l])] in float64; a missing output bias gives alpha_b^[L] = 0."""
    try:
        if isinstance(alpha, (list, tuple)) and alpha and isinstance(alpha[0], (list, tuple)):
            alpha = target.flatten(alpha)
        layers = target.unflatten(as_tensor(alpha, "alpha").to(torch.float64))
    except ValueError as err:
        raise ValueError(f"alpha does not fit the wide net {target} ({target.num_params} entries): {err}") from err
    if layers[0][0].ndim != 2:
        raise ValueError(f"alpha must be one tuple of {target.num_params} entries, got a batch")
    return [(W, torch.zeros(W.shape[0], dtype=torch.float64) if b is None else b) for W, b in layers]


# ----------------------------------------------------------------------------- Conditions 1-2
def _membership(I: Tensor, m: int) -> Tensor:
    """P[j, s] = 1 if I(j) = s: sums over copies of each narrow neuron are ``x @ P``."""
    P = torch.zeros(len(I), m, dtype=torch.float64)
    eff = I >= 0
    P[eff.nonzero().squeeze(1), I[eff]] = 1.0
    return P


def _forward(l, I, alpha, widths, tol) -> list[str]:
    """Condition 1 (forward): sum_{j in I^{-1}_{l-1}(s)} alpha^[l]_{ij} = 1 (effective i) or 0 (null i)."""
    S = alpha @ _membership(I[l - 1], widths[l - 1])
    expected = (I[l] >= 0).to(torch.float64)[:, None].expand_as(S)
    out = []
    for i, s in (S - expected).abs().gt(tol).nonzero().tolist():
        kind = "" if I[l][i] >= 0 else " (null neuron)"
        out.append(f"Condition 1 (forward) fails at layer {l}, wide neuron {i}{kind}: sum over copies of narrow "
                   f"neuron {s} is {S[i, s].item():.6g}, expected {expected[i, s].item():g}")
    return out


def _backward(l, I, alpha, beta, widths, tol) -> tuple[Tensor, list[str]]:
    """Condition 1 (backward): B[k, j] = sum_{i in I^{-1}_l(k)} beta_i alpha^[l]_{ij} is one value beta^[l-1]_j
    over k for an effective j (layer l-1), and 0 for a null j. Returns (beta^[l-1], violations)."""
    B = _membership(I[l], widths[l]).T @ (beta[:, None] * alpha)
    eff = I[l - 1] >= 0
    beta_prev = torch.where(eff, B[0], torch.zeros_like(B[0]))
    out = []
    for j in range(B.shape[1]):
        col, k_max, k_min = B[:, j], int(B[:, j].argmax()), int(B[:, j].argmin())
        if eff[j] and col[k_max] - col[k_min] > tol:
            out.append(f"Condition 1 (backward) fails at layer {l}, wide neuron {j} of layer {l - 1}: "
                       f"sum_(i in I^-1(k)) beta_i alpha_ij is {col[k_min].item():.6g} for narrow k={k_min} but "
                       f"{col[k_max].item():.6g} for k={k_max} (it must be one common value beta_j)")
        elif not eff[j] and col.abs().max() > tol:
            k = int(col.abs().argmax())
            out.append(f"Condition 1 (backward) fails at layer {l}, null wide neuron {j} of layer {l - 1}: "
                       f"sum_(i in I^-1(k)) beta_i alpha_ij is {col[k].item():.6g} for narrow k={k}, expected 0")
    return beta_prev, out


def constant_inputs(alpha: Tensor, I_prev: Tensor, b_star_prev: Tensor, sigma) -> Tensor:
    """sum_{j in I^{-1}_{l-1}(0)} alpha^[l]_{ij} sigma(b*_j): the constant input each wide neuron of layer l
    receives from the null neurons of layer l-1 (paper B Def. 5.2, Condition 2).

    Args:
        alpha: alpha^[l] (m'_l x m'_{l-1}); I_prev: the index map I_{l-1} as a LongTensor (NULL = null neuron);
        b_star_prev: the effective biases b*^[l-1] (m'_{l-1}; only null entries are used); sigma: the activation.
    """
    null_prev = I_prev < 0
    if not null_prev.any():
        return alpha.new_zeros(alpha.shape[0])
    return alpha[:, null_prev] @ sigma(b_star_prev[null_prev])


def _condition2(l, I, alpha, alpha_b, b_star_prev, sigma, tol) -> tuple[Tensor, list[str]]:
    """Condition 2 at layer l: returns the effective biases b*^[l] (0 for effective neurons) and violations.

    A null neuron i gets the constant input sum_{null j} alpha_ij sigma(b*_j) + alpha_b_i =: b*_i; an effective
    neuron needs alpha_b_i = 0 and that constant input from null neurons to cancel (= 0).
    """
    const_in = constant_inputs(alpha, I[l - 1], b_star_prev, sigma)
    eff = I[l] >= 0
    b_star = torch.where(eff, torch.zeros_like(alpha_b), const_in + alpha_b)
    out = []
    for i in eff.nonzero().squeeze(1).tolist():
        if abs(alpha_b[i]) > tol or abs(const_in[i]) > tol:
            total = (alpha_b[i] + const_in[i]).item()
            note = " (they cancel, so the output is kept)" if abs(total) <= tol else ""
            out.append(f"Condition 2 fails at layer {l}, wide neuron {i}: alpha_b is {alpha_b[i].item():.6g} and the "
                       f"constant input from null neurons is {const_in[i].item():.6g}; both must be 0{note}")
    return b_star, out


def _output_bias_caveat(net: MLP, I, b_star) -> list[str]:
    """Paper B Prop. 4.1 (the null step) uses b^[L]: without an output bias a null neuron j of layer L-1 needs
    sigma(b*_j) = 0."""
    if net.output_bias:
        return []
    out = []
    for j in (I[-2] < 0).nonzero().squeeze(1).tolist():
        value = net.activation(b_star[j]).item()
        if abs(value) > 1e-12:
            out.append(f"output-bias caveat: the net has no output bias and null neuron {j} of layer {net.L - 1} "
                       f"outputs the constant sigma(b*) = {value:.6g} != 0, so its output weights get the nonzero "
                       f"gradient sigma(b*) E_S[nabla l] (paper B Prop. 4.1 needs b^[L])")
    return out


def _multipliers(net: MLP, I: list[Tensor], layers: list[tuple[Tensor, Tensor]],
                 atol: float) -> tuple[list[Tensor], list[Tensor], list[str]]:
    """beta^[0..L] (Condition 1), b*^[0..L] (Condition 2) and all violations of Conditions 1-2 (paper B Def. 5.2)
    and of the output-bias caveat, in layer order (none with atol = inf, except the caveat)."""
    widths, L = net.widths, net.L
    out: list[str] = []
    b_star = [torch.zeros(widths[0], dtype=torch.float64)]
    for l in range(1, L + 1):
        alpha, alpha_b = layers[l - 1]
        tol = atol * max(1.0, alpha.abs().max().item())
        out += _forward(l, I, alpha, widths, tol)
        b, viol = _condition2(l, I, alpha, alpha_b, b_star[-1], net.activation, tol)
        b_star.append(b)
        out += viol
    beta = [torch.ones(widths[L], dtype=torch.float64)]  # beta^[L] = 1
    for l in range(L, 1, -1):
        alpha = layers[l - 1][0]
        tol = atol * max(1.0, (beta[0][:, None] * alpha).abs().max().item())
        b, viol = _backward(l, I, alpha, beta[0], widths, tol)
        beta.insert(0, b)
        out += viol
    beta.insert(0, torch.ones(widths[0], dtype=torch.float64))  # beta^[0] = 1 (the inputs are not copied)
    return beta, b_star, out + _output_bias_caveat(net, I, b_star[L - 1])


# ----------------------------------------------------------------------------- T^alpha_I
def _sparse(net: MLP, target: MLP, I: list[Tensor], layers) -> tuple[Tensor, Tensor, Tensor]:
    """One (narrow index or -1, coefficient, constant) per wide entry of T^alpha_I (Def. 5.2, Remark 5.1)."""
    src, coef, const = [], [], []
    for l, ((alpha, alpha_b), (w, b)) in enumerate(zip(layers, net.layer_slices), start=1):
        Ii, Ij = I[l], I[l - 1]
        eff = (Ii[:, None] >= 0) & (Ij[None, :] >= 0)
        pos = w.start + Ii[:, None] * net.widths[l - 1] + Ij[None, :]
        src.append(torch.where(eff, pos, NULL).flatten())
        coef.append(torch.where(eff, alpha, 0.0).flatten())
        const.append(torch.where(eff, 0.0, alpha).flatten())
        if b is not None:
            src.append(torch.where(Ii >= 0, b.start + Ii, NULL))
            coef.append((Ii >= 0).to(torch.float64))
            const.append(alpha_b)
    return torch.cat(src), torch.cat(coef), torch.cat(const)


def general_compatible(net: MLP, index_map: Sequence[Sequence[int]], alpha: AlphaLike, strict: bool = True,
                       atol: float = 1e-10) -> Embedding:
    """The general compatible embedding T^alpha_I of paper B Def. 5.2.

    Args:
        net: the narrow architecture NN({m_l}).
        index_map: for each hidden layer l = 1..L-1 a sequence I_l of length m'_l with entries in
            0..m_l-1 or NULL (= -1); it must be total (Def. 5.1). It fixes the wide widths m'_l.
        alpha: the tuple alpha in the wide tuple class, a flat vector of the wide net's num_params
            or a list [(alpha_W^[l], alpha_b^[l])] (alpha_b^[L] None without output bias).
        strict: raise ValueError on the first violation of Condition 1 (forward/backward) or
            Condition 2; with False the embedding is built and the violations listed in
            ``.violations``. The output-bias caveat (no b^[L] and a null neuron j of layer L-1
            with sigma(b*_j) != 0) never raises: it is listed and ``preserves_criticality`` is False.
        atol: tolerance of the condition checks, relative to max(1, max |alpha^[l]|) per layer.
    """
    I_tuple = check_index_map(check_mlp(net), index_map)
    target = _target(net, I_tuple)
    layers = _alpha_layers(target, alpha)
    I = _full_maps(net, I_tuple)
    violations = _multipliers(net, I, layers, atol)[2]
    hard = [v for v in violations if v.startswith("Condition")]
    if strict and hard:
        more = f" (and {len(hard) - 1} more)" if len(hard) > 1 else ""
        raise ValueError(hard[0] + more)
    return Embedding(net, target, I_tuple, *_sparse(net, target, I, layers), violations)


# ----------------------------------------------------------------------------- one-step embeddings
def _identity_map(net: MLP) -> list[list[int]]:
    return [list(range(m)) for m in net.widths[1:-1]]


def _unit_alpha(target: MLP, index_map) -> list[list[Tensor]]:
    """alpha^[l]_{ij} = 1 where both neurons are effective, else 0; alpha_b = 0 (edit before use)."""
    I = _full_maps(target, index_map)  # only the NULL pattern matters here
    layers = []
    for l in range(1, target.L + 1):
        eff = (I[l][:, None] >= 0) & (I[l - 1][None, :] >= 0)
        layers.append([eff.to(torch.float64), torch.zeros(target.widths[l], dtype=torch.float64)])
    return layers


def _build(net: MLP, index_map, layers, strict: bool = True) -> Embedding:
    target = _target(net, tuple(map(tuple, index_map)))
    alpha = [(W, b if target.has_bias(l) else None) for l, (W, b) in enumerate(layers, start=1)]
    return general_compatible(net, index_map, alpha, strict=strict)


def splitting(net: MLP, layer: int, neuron: int, alpha: float) -> Embedding:
    """One-step splitting embedding T^alpha_{l,s} = T_{l,s} + alpha V_{l,s} (paper A Def. 5, paper B Def. 4.4).

    The copy of neuron s is appended last in layer l with the same input row W^[l]_{s,:} and bias
    b^[l]_s; the old neuron keeps the output column (1 - alpha) W^[l+1]_{:,s}, the new one alpha W^[l+1]_{:,s}.
    """
    layer, alpha = check_mlp(net).check_layer(layer), check_real(alpha, "alpha")
    neuron = net.check_neuron(layer, neuron)
    return _split_k(net, layer, neuron, [1.0 - alpha, alpha])


def _split_k(net: MLP, layer: int, neuron: int, shares: Sequence[float]) -> Embedding:
    """Split neuron s of layer l into len(shares) copies (new ones appended) with output columns shares[t] W_{:,s}."""
    index_map = _identity_map(net)
    index_map[layer - 1] += [neuron] * (len(shares) - 1)
    layers = _unit_alpha(_target(net, tuple(map(tuple, index_map))), index_map)
    copies = [neuron] + list(range(net.widths[layer], net.widths[layer] + len(shares) - 1))
    for j, share in zip(copies, shares):
        layers[layer][0][:, j] = share
    return _build(net, index_map, layers)


def equal_split(net: MLP, layer: int, neuron: int, k: int) -> Embedding:
    """Split neuron s of layer l into k copies with output columns W^[l+1]_{:,s} / k (Net2WiderNet; paper A Fig. 3).

    The k - 1 new copies are appended last in layer l; k = 1 is the identity embedding.
    """
    layer, k = check_mlp(net).check_layer(layer), check_int(k, "k (the number of copies)", minimum=1)
    neuron = net.check_neuron(layer, neuron)
    return _split_k(net, layer, neuron, [1.0 / k] * k)


def null(net: MLP, layer: int, bias: float) -> Embedding:
    """One-step null embedding T^alpha_{l,0} (paper B Def. 4.3): append to layer l a neuron with zero input
    weights, zero output weights and bias ``bias``; its output sigma(bias) is constant (Lemma 4.1)."""
    layer, bias = check_mlp(net).check_layer(layer), check_real(bias, "bias")
    index_map = _identity_map(net)
    index_map[layer - 1].append(NULL)
    layers = _unit_alpha(_target(net, tuple(map(tuple, index_map))), index_map)
    layers[layer - 1][1][-1] = bias
    return _build(net, index_map, layers)


# ----------------------------------------------------------------------------- composition
def _compose_two(T2: Embedding, T1: Embedding) -> Embedding:
    """T2 o T1 (T1 first): compose the sparse rows, the index maps, and read alpha off (A, c)."""
    if T1.target != T2.source:
        raise ValueError(f"cannot compose: the inner embedding maps into {T1.target}, but the outer one starts "
                         f"from {T2.source}")
    via = T2._src.clamp(min=0)
    has = (T2._src >= 0) & (T1._src[via] >= 0)
    src = torch.where(has, T1._src[via], NULL)
    coef = torch.where(has, T2._coef * T1._coef[via], 0.0)
    const = T2._const + torch.where(T2._src >= 0, T2._coef * T1._const[via], 0.0)
    index_map = tuple(tuple(NULL if j == NULL else I1[j] for j in I2) for I1, I2 in zip(T1.index_map, T2.index_map))
    composite = Embedding(T1.source, T2.target, index_map, src, coef, const)
    # Conditions 1-2 on the composite's own alpha decide whether Thm 5.1 applies to it
    composite.violations = general_compatible(T1.source, index_map, composite.alpha, strict=False).violations
    return composite


def compose(*embeddings: Embedding) -> Embedding:
    """The composition in mathematical order (paper B Defs. 4.5-4.6): compose(T2, T1) = T2 o T1 applies T1 first.

    So ``compose(T_K, ..., T_1)`` is the papers' product T_K ... T_1: the target of each embedding must
    equal the source of the one written before it (a mismatch raises ValueError naming both nets).
    The composite's A and c are the products A_2 A_1 and A_2 c_1 + c_2 (still one nonzero per row), its
    index map is I_1 o I_2, and its violations are those of Conditions 1-2 for the composite's alpha.
    """
    if not embeddings:
        raise ValueError("compose needs at least one embedding")
    for T in embeddings:
        if not isinstance(T, Embedding):
            raise TypeError(f"compose takes Embedding objects, got {type(T).__name__}")
    out = embeddings[-1]
    for T in reversed(embeddings[:-1]):
        out = _compose_two(T, out)
    return out


# ----------------------------------------------------------------------------- global embeddings
def t_global(net: MLP) -> Embedding:
    """Three-fold global splitting T_global (paper B Example 5.1).

    W^[1] -> (W; W; W), W^[l] -> blockdiag(W, W, W) for 2 <= l <= L-1, every hidden b -> (b; b; b),
    W^[L] -> [W, W, -W] with b^[L] unchanged; I^{-1}_l(s) = {s, s + m_l, s + 2 m_l}, beta = (1, 1, -1).
    """
    index_map = [list(range(m)) * 3 for m in check_mlp(net).widths[1:-1]]
    layers = _unit_alpha(_target(net, tuple(map(tuple, index_map))), index_map)
    for l in range(2, net.L):
        m_out, m_in = net.widths[l], net.widths[l - 1]
        layers[l - 1][0] = torch.block_diag(*[torch.ones(m_out, m_in, dtype=torch.float64)] * 3)
    m = net.widths[-2]
    layers[-1][0][:, 2 * m:] = -1.0
    return _build(net, index_map, layers)


def t_gn(net: MLP, biases: Union[float, Sequence]) -> Embedding:
    """Two-fold global null embedding T_GN (paper B Example 5.2): each hidden layer l gets m_l null neurons
    (appended) with zero input and output weights and biases b^[l]_** = ``biases[l-1]`` (a vector of
    length m_l), or one number used for every null neuron."""
    hidden = check_mlp(net).widths[1:-1]
    if isinstance(biases, numbers.Real) and not isinstance(biases, bool):
        biases = [[float(biases)] * m for m in hidden]
    if isinstance(biases, (str, bytes)) or not isinstance(biases, Sequence) or len(biases) != len(hidden):
        raise ValueError(f"biases must be a number or one vector per hidden layer ({len(hidden)} for {net})")
    index_map = [list(range(m)) + [NULL] * m for m in hidden]
    layers = _unit_alpha(_target(net, tuple(map(tuple, index_map))), index_map)
    for l, (m, b) in enumerate(zip(hidden, biases), start=1):
        b = as_tensor(b, f"biases of layer {l}").to(torch.float64).reshape(-1)
        if b.numel() != m:
            raise ValueError(f"biases of layer {l} must have {m} entries (one per null neuron), got {b.numel()}")
        layers[l - 1][1][m:] = b
    return _build(net, index_map, layers)


# ----------------------------------------------------------------------------- critical affine subspace
def split_operators(net: MLP, layer: int, neuron: int) -> tuple[Tensor, Tensor]:
    """The linear operators (T_{l,s}, V_{l,s}) of paper A Def. 5 as dense M' x M matrices.

    T_{l,s} = T^0_{l,s} copies neuron s with a zero output column; V_{l,s} = T^1_{l,s} - T^0_{l,s}
    moves the output column W^[l+1]_{:,s} from the old copy to the new one. T^alpha_{l,s} = T + alpha V.
    """
    T0, T1 = splitting(net, layer, neuron, 0.0), splitting(net, layer, neuron, 1.0)
    return T0.A, T1.A - T0.A


def critical_subspace(net: MLP, steps: Sequence[tuple[int, int]], theta) -> tuple[Tensor, Tensor]:
    """The K-dimensional critical affine subspace of paper A Thm. 2 / paper B Thm. 6.1.

    ``steps`` = [(l_1, s_1), ..., (l_K, s_K)] are splittings applied in this order (s_k indexes the
    net after the previous steps). Returns (theta_B, V) with theta_B = T_{l_K,s_K} ... T_{l_1,s_1} theta
    (all alpha = 0) and V (M' x K) with columns v_i = T_{l_K,s_K} ... V_{l_i,s_i} ... T_{l_1,s_1} theta.
    If theta is critical and every W^[l] != 0, each theta_B + V a is critical with the same output.
    """
    theta = check_mlp(net).check_one_theta(theta, "critical_subspace")
    nets, T0s, T1s = [net], [], []
    for k, step in enumerate(steps):
        if not isinstance(step, Sequence) or len(step) != 2:
            raise ValueError(f"step {k} must be a pair (layer, neuron), got {step!r}")
        T0s.append(splitting(nets[-1], step[0], step[1], 0.0))
        T1s.append(splitting(nets[-1], step[0], step[1], 1.0))
        nets.append(T0s[-1].target)
    thetas = [theta]
    for T0 in T0s:
        thetas.append(T0(thetas[-1]))
    columns = []
    for i in range(len(T0s)):
        v = T1s[i](thetas[i]) - T0s[i](thetas[i])  # V_{l_i,s_i} applied after T_{l_{i-1}} ... T_{l_1}
        for T0 in T0s[i + 1:]:
            v = T0(v)  # T_{l,s} is linear (c = 0)
        columns.append(v)
    V = torch.stack(columns, dim=1) if columns else thetas[-1].new_zeros(nets[-1].num_params, 0)
    return thetas[-1], V
