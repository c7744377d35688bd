"""The loss landscape R_S(theta), its gradient and its exact Hessian (paper B section 3.3; paper A Defs. 1, 3).

For data S = {(x_i, y_i)}_{i=1}^n and a per-sample loss l,

    R_S(theta) = E_S l(f_theta(x), y) = (1/n) sum_i l(f_theta(x_i), y_i),

theta is critical when nabla R_S(theta) = 0 (paper A Def. 1), and its degree of degeneracy is the
number of zero eigenvalues of the Hessian H_S = nabla nabla R_S (paper A Def. 3; see :func:`inertia`).
Paper B splits the Hessian as H_S = H^(1)_S + H^(2)_S with

    H^(1)_S = sum_{i,j} E_S d_ij l  grad(f_i) grad(f_j)^T     (Gauss-Newton part),
    H^(2)_S = sum_i     E_S d_i  l  Hess(f_i)                  (residual part).

How the dense Hessian is computed ("structured", the default). Inject a perturbation eps^[l] into every
pre-activation u^[l] = W^[l] f^[l-1] + b^[l]. Changing the parameters of layer l injects
eps^[l] = dW^[l] f^[l-1] + db^[l] + dW^[l] df^[l-1] (the last term is second order), so per sample

    H = A^T G A + C,

where A_l = d u^[l] / d theta_l = I (x) [f^[l-1]; 1]^T (a Kronecker factor), G = d^2 l / d eps^2 is the small
(sum_l m_l)^2 Hessian with respect to the injections,

    G_{k,k'} = sum_{m >= k, k'} (du^[m]/deps^[k])^T D_m (du^[m]/deps^[k']),  D_m = diag(z^[m] o sigma''(u^[m])),
    D_L = d^2 l / df^2,

and C couples W^[l] with theta^[k], k < l, through e^[l] (x) d f^[l-1] / d theta^[k] (z^[l], e^[l] are the
back-propagated errors of the papers). Summed over samples, every block is one matrix product of size
(block) x n, i.e. O(n P^2) work in large GEMMs instead of P forward-over-reverse passes. Measured with one
thread at P ~ 2,000 and n = 100 (benchmarks/bench_hessian.py): ~0.03 s, about 30x faster than a
per-parameter double-backward loop and 15x faster than ``method="autodiff"`` (vmap over torch.func
Hessian-vector products), which is kept as an independent cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple, Union

import torch
from torch import Tensor
from torch.func import grad as func_grad
from torch.func import jacrev, jvp, vmap

from .losses import Loss, get_loss
from .network import MLP, as_tensor

__all__ = ["Landscape", "Inertia", "inertia"]

# (the guard against torch's one-time warning on the first jvp lives in network.py, imported above)

LossLike = Union[str, Loss, Callable[[Tensor, Tensor], Tensor]]
_CHUNK_ENTRIES = 2**23  # per-tensor budget (64 MB of float64) when assembling the structured Hessian
_HVP_CHUNK = 256  # Hessian-vector products per vmap call in hvp / hessian(method="autodiff")
_LOW_RANK = 4  # blocks of the injection Hessian G of rank <= this are contracted in factored form


class Landscape:
    """The empirical risk R_S of an :class:`~embedding_principle.network.MLP` on fixed data S.

    Args:
        net: the architecture NN({m_l}).
        x: inputs, shape (n, m_0).
        y: targets, validated by ``loss.target`` (MSE: (n, m_L); cross-entropy: labels (n,) or
            probability rows (n, m_L)).
        loss: ``"mse"`` (no factor 1/2), ``"cross_entropy"``, a :class:`Loss`, or a per-sample callable.

    ``theta`` is always a flat float64 vector of length P = ``net.num_params``; :meth:`risk` and
    :meth:`grad` also accept a batch (..., P).
    """

    def __init__(self, net: MLP, x, y, loss: LossLike = "mse") -> None:
        if not isinstance(net, MLP):
            raise TypeError(f"net must be an MLP, not {type(net).__name__}")
        x = net.check_x(x, like=torch.empty(0, dtype=torch.float64))
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (n, {net.widths[0]}) with n >= 1")
        self.net, self.x, self.n = net, x, x.shape[0]
        self.loss = get_loss(loss)
        self.y = self.loss.target(torch.Size((self.n, net.widths[-1])), y)
        if self.y.is_floating_point() and not torch.isfinite(self.y).all():
            raise ValueError("targets y contain NaN or infinite entries")

    def __repr__(self) -> str:
        return f"Landscape({self.net}, n={self.n}, loss={self.loss.name!r})"

    # --- validation -------------------------------------------------------------------
    def check_theta(self, theta, batched: bool = False) -> Tensor:
        """theta as float64 of shape (P,) (or (..., P) if ``batched``); ValueError on a wrong shape or NaN."""
        theta = self.net.check_theta(theta) if batched else self.net.check_one_theta(theta, "this Landscape method")
        return theta.to(self.x.dtype)

    # --- R_S and its gradient -----------------------------------------------------------
    def _risk(self, theta: Tensor) -> Tensor:
        return self.loss(self.net.forward(theta, self.x), self.y).mean(-1)

    def risk(self, theta) -> Tensor:
        """R_S(theta) = (1/n) sum_i l(f_theta(x_i), y_i): a 0-d tensor, or shape (...) for theta (..., P)."""
        return self._risk(self.check_theta(theta, batched=True))

    def grad(self, theta) -> Tensor:
        """nabla_theta R_S(theta) by reverse-mode torch.func, same shape as theta (batches allowed)."""
        theta = self.check_theta(theta, batched=True)
        return func_grad(lambda t: self._risk(t).sum())(theta)

    # --- curvature ----------------------------------------------------------------------
    def hvp(self, theta, v) -> Tensor:
        """H_S(theta) v by forward-over-reverse autodiff, without forming H; v of shape (P,) or (k, P)."""
        theta = self.check_theta(theta)
        v = as_tensor(v, "v").to(theta.dtype)
        if v.ndim not in (1, 2) or v.shape[-1] != theta.shape[0]:
            raise ValueError(f"v has shape {tuple(v.shape)}; expected ({theta.shape[0]},) or (k, {theta.shape[0]})")
        one = lambda u: jvp(func_grad(self._risk), (theta,), (u,))[1]  # noqa: E731
        return one(v) if v.ndim == 1 else vmap(one, chunk_size=_HVP_CHUNK)(v)

    def hessian(self, theta, method: Literal["structured", "autodiff"] = "structured") -> Tensor:
        """The exact dense Hessian H_S(theta) = nabla nabla R_S, shape (P, P) (P^2 floats of memory).

        ``"structured"`` (default) assembles A^T G A + C block by block (module docstring), ``"autodiff"``
        stacks torch.func Hessian-vector products (vmap of jvp over grad, in chunks). Both are exact in
        float64 up to round-off.
        """
        theta = self.check_theta(theta)
        if method == "autodiff":
            return self.hvp(theta, torch.eye(theta.shape[0], dtype=theta.dtype))
        if method != "structured":
            raise ValueError(f"method must be 'structured' or 'autodiff', got {method!r}")
        c, q = self._output_derivatives(theta)
        return _curvature(self.net, theta, self.x, c, q)

    def hessian_parts(self, theta, hidden_only: bool = False) -> tuple[Tensor, Tensor]:
        """(H^(1)_S, H^(2)_S) of paper B section 3.3, computed independently of each other.

        H^(1) = E_S J^T (d^2 l) J from the output Jacobian J = d f_theta(x) / d theta (reverse mode);
        H^(2) is the Hessian of theta -> E_S <stopgrad(nabla l), f_theta(x)>, assembled directly (not H - H^(1)).
        With ``hidden_only=True`` both are restricted to theta^[L-1] (the first ``net.num_hidden_params``
        coordinates): H^(1),[L-1] and H^(2),[L-1], the blocks of Lemma 6.1.
        """
        theta = self.check_theta(theta)
        c, q = self._output_derivatives(theta)
        jac = jacrev(lambda t: self.net.forward(t, self.x))(theta)  # (n, m_L, P)
        h1 = torch.einsum("nip,nij,njq->pq", jac, q, jac)
        h2 = _curvature(self.net, theta, self.x, c, torch.zeros_like(q))
        if hidden_only:
            k = self.net.num_hidden_params
            return h1[:k, :k], h2[:k, :k]
        return h1, h2

    def spectrum(self, theta) -> Tensor:
        """Ascending eigenvalues of the symmetrised Hessian (torch.linalg.eigvalsh)."""
        h = self.hessian(theta)
        return torch.linalg.eigvalsh(0.5 * (h + h.T))

    def _output_derivatives(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample d l/df and d^2 l/df^2 at f_theta(x_i), both divided by n (the E_S weight)."""
        f = self.net.forward(theta, self.x).detach()
        return self.loss.grad(f, self.y) / self.n, self.loss.hess(f, self.y) / self.n


# ----------------------------------------------------------------------------- structured Hessian
def _curvature(net: MLP, theta: Tensor, x: Tensor, c: Tensor, q: Tensor) -> Tensor:
    """sum_i [J_i^T q_i J_i + sum_j c_ij Hess(f_j(x_i))] for output cotangents c (n, m_L), q (n, m_L, m_L).

    With c = nabla l / n and q = d^2 l / n this is H_S; with q = 0 it is H^(2)_S. Samples are processed
    in chunks so that no intermediate tensor exceeds ``_CHUNK_ENTRIES`` entries.
    """
    P, L = net.num_params, net.L
    h = torch.zeros(P, P, dtype=theta.dtype)
    chunk = max(1, _CHUNK_ENTRIES // (max(net.widths) + 1) ** 2)
    for s in range(0, x.shape[0], chunk):
        _accumulate(h, net, _Pass.run(net, theta, x[s:s + chunk], c[s:s + chunk], q[s:s + chunk]))
    for k in range(1, L + 1):  # the blocks below the diagonal mirror those above
        for k2 in range(k + 1, L + 1):
            h[_span(net, k2), _span(net, k)] = h[_span(net, k), _span(net, k2)].T
    return h


@dataclass
class _Pass:
    """Forward/backward quantities of one chunk of samples; lists are indexed by the layer l = 1..L."""

    ftil: list  # [f^[l-1]; 1] (or f^[l-1] if layer l has no bias), shape (n, m_{l-1} (+1))
    s1: list  # g^[l] = sigma'(u^[l]), l < L
    curv: list  # D_l: z^[l] o sigma''(u^[l]) (n, m_l) for l < L; q (n, m_L, m_L) for l = L
    e: list  # e^[l] = d l / d u^[l], (n, m_l)
    ju: dict  # (m, k) -> d u^[m] / d eps^[k], (n, m_m, m_k), for k < m (for k = m it is the identity)

    @classmethod
    def run(cls, net: MLP, theta: Tensor, x: Tensor, c: Tensor, q: Tensor) -> "_Pass":
        L, layers = net.L, net.unflatten(theta)
        W = [None] + [w for w, _ in layers]
        f = net.features(theta, x)
        ftil = [None] + [_with_one(f[l - 1]) if b is not None else f[l - 1] for l, (_, b) in enumerate(layers, 1)]
        s1, curv, e = [None] * (L + 1), [None] * (L + 1), [None] * (L + 1)
        e[L], curv[L] = c, q
        for l in range(L - 1, 0, -1):  # z^[l] = e^[l+1] W^[l+1], e^[l] = z^[l] o g^[l]
            u = f[l - 1] @ W[l].T + layers[l - 1][1]
            s1[l], s2 = net.activation.derivative(u), net.activation.second_derivative(u)
            z = e[l + 1] @ W[l + 1]
            e[l], curv[l] = z * s1[l], z * s2
        ju = {}
        for k in range(1, L):
            ju[k + 1, k] = W[k + 1] * s1[k][:, None, :]
            for m in range(k + 2, L + 1):
                ju[m, k] = W[m] @ (s1[m - 1][:, :, None] * ju[m - 1, k])
        return cls(ftil, s1, curv, e, ju)


def _with_one(a: Tensor) -> Tensor:
    return torch.cat([a, torch.ones_like(a[:, :1])], 1)


def _accumulate(h: Tensor, net: MLP, p: _Pass) -> None:
    """Add one chunk's A^T G A (blocks k <= k') and C (blocks theta^[k] x W^[l], k < l) to h."""
    for k in range(1, net.L + 1):
        for k2 in range(k, net.L + 1):
            _add_layer_pair(h, net, p, k, k2)
    for l in range(2, net.L + 1):
        for k in range(1, l):
            _add_block(h, _groups(net, k), _groups(net, l)[:1], _cross4(p, k, l))


def _add_layer_pair(h: Tensor, net: MLP, p: _Pass, k: int, k2: int) -> None:
    """The (theta^[k], theta^[k']) block of A^T G A, k <= k': sum_i G_{k,k',i} (x) ftil^[k]_i ftil^[k']_i^T.

    G_{k,k'} = [k = k' < L] diag(D_k) + sum_m U_m^T V_m. The diagonal part is added neuron by neuron. If the
    rank r = sum_m rows(U_m) is small (the output layer, two-layer nets: r = m_L) the rest is one well-shaped
    GEMM over (sample, rank) pairs; otherwise G is formed densely, shape (n, m_k, m_k'), and contracted in one GEMM.
    """
    L, rows, cols, a, b = net.L, _groups(net, k), _groups(net, k2), p.ftil[k], p.ftil[k2]
    if k == k2 < L:
        _add_diagonal(h, rows, p.curv[k], a)
    terms = _factors(p, L, k, k2)
    if sum(u.shape[1] for u, _ in terms) <= _LOW_RANK:
        u = torch.cat([t[0] for t in terms], 1)
        v = torch.cat([torch.diag_embed(t[1]) if t[1].ndim == 2 else t[1] for t in terms], 1)
        left, right = _expand(u, a, bias=len(rows) == 2), _expand(v, b, bias=len(cols) == 2)  # 2 groups: W and b
        h[_span(net, k), _span(net, k2)].addmm_(left.T, right)
    else:
        g = sum(u.transpose(1, 2) * v[:, None, :] if v.ndim == 2 else u.transpose(1, 2) @ v for u, v in terms)
        _add_block(h, rows, cols, _kron4(g, a, b))


def _factors(p: _Pass, L: int, k: int, k2: int) -> list[tuple[Tensor, Tensor]]:
    """G_{k,k'} = sum_{m >= k'} (du^[m]/deps^[k])^T D_m (du^[m]/deps^[k']) as pairs (U_m, V_m), k <= k'.

    U_m = du^[m]/deps^[k] (n, m_m, m_k) and V_m = D_m du^[m]/deps^[k'] (a 2-D V_m (n, m_m) means diag(V_m)).
    The term diag(D_k) of k = k' < L is left out (see :func:`_add_diagonal`).
    """
    n = p.e[L].shape[0]
    if k2 == L:
        u = p.ju[L, k] if k < L else torch.eye(p.e[L].shape[1], dtype=p.e[L].dtype).expand(n, -1, -1)
        return [(u, p.curv[L])]
    terms = [(p.ju[k2, k], p.curv[k2])] if k < k2 else []  # m = k', where du^[k']/deps^[k'] = I
    for m in range(k2 + 1, L + 1):
        terms.append((p.ju[m, k], _times_curv(p, m, p.ju[m, k2])))
    return terms


def _times_curv(p: _Pass, m: int, t: Tensor) -> Tensor:
    """D_m t per sample (D_m diagonal for hidden layers, q for the output)."""
    return p.curv[m] @ t if m == len(p.curv) - 1 else p.curv[m][:, :, None] * t


def _add_diagonal(h: Tensor, groups: list, d: Tensor, a: Tensor) -> None:
    """h[theta^[k], theta^[k]] += sum_i diag(d_i) (x) a_i a_i^T (nonzero only for equal neurons j = j')."""
    t = torch.einsum("nj,np,nq->jpq", d, a, a)
    m, idx = d.shape[1], torch.arange(d.shape[1])
    for rs, rp in groups:
        for cs, cp in groups:
            h4 = h[rs, cs].view(m, rp.stop - rp.start, m, cp.stop - cp.start)
            h4[idx, :, idx, :] += t[:, rp, cp]


def _expand(u: Tensor, a: Tensor, bias: bool) -> Tensor:
    """Rows (i, rho), columns in layer order [W (j, q) row-major, b (j)]: u[i, rho, j] a[i, q] and u[i, rho, j].

    ``a`` is ftil = [f; 1] when the layer has a bias, so (U (x) a)^T (V (x) b) summed over rows is the block
    sum_i (U_i^T V_i) (x) ftil_i ftil'_i^T already in the flat theta ordering.
    """
    m = u.shape[2]
    f = a[:, :-1] if bias else a
    w = (u[..., None] * f[:, None, None, :]).reshape(-1, m * f.shape[1])
    return torch.cat([w, u.reshape(-1, m)], 1) if bias else w


def _span(net: MLP, l: int) -> slice:
    """The contiguous range of theta^[l] = (W^[l], b^[l]) in the flat theta."""
    w, b = net.layer_slices[l - 1]
    return slice(w.start, (b or w).stop)


def _kron4(g: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """sum_i g_i (x) (a_i b_i^T) as a 4-way tensor [j, p, j', p'] (one GEMM over the samples i)."""
    n, m1, m2 = g.shape
    out = g.reshape(n, -1).T @ (a[:, :, None] * b[:, None, :]).reshape(n, -1)
    return out.reshape(m1, m2, a.shape[1], b.shape[1]).permute(0, 2, 1, 3)


def _cross4(p: _Pass, k: int, l: int) -> Tensor:
    """C between theta^[k] (rows (j', r)) and W^[l] (columns (j, q)), k < l, as [j', r, j, q]:

    C = sum_i e^[l]_i[j] (d f^[l-1]_q / d eps^[k]_{j'})_i ftil^[k]_i[r]  (zero against b^[l]).
    """
    e, a, s1 = p.e[l], p.ftil[k], p.s1[l - 1]
    if k == l - 1:  # d f^[l-1] / d eps^[l-1] = diag(g^[l-1])
        y = torch.einsum("nj,nq,nr->qrj", e, s1, a)
        m = s1.shape[1]
        out = y.new_zeros(m, a.shape[1], e.shape[1], m)
        idx = torch.arange(m)
        out[idx, :, :, idx] = y
        return out
    ja = s1[:, :, None] * p.ju[l - 1, k]
    n, m_in, m_k = ja.shape
    out = (e[:, :, None] * a[:, None, :]).reshape(n, -1).T @ ja.reshape(n, -1)
    return out.reshape(e.shape[1], a.shape[1], m_in, m_k).permute(3, 1, 0, 2)


def _groups(net: MLP, l: int) -> list[tuple[slice, slice]]:
    """Layer l's parameter groups: (flat slice of W^[l], its columns) and, if present, (slice of b^[l], last column)."""
    w, b = net.layer_slices[l - 1]
    m_in = net.widths[l - 1]
    return [(w, slice(0, m_in))] + ([(b, slice(m_in, m_in + 1))] if b is not None else [])


def _add_block(h: Tensor, rows: list, cols: list, t4: Tensor) -> None:
    """h[rows, cols] += t4 with t4[j, p, j', p'] laid out as (neuron j, column p) x (neuron j', column p')."""
    m1, m2 = t4.shape[0], t4.shape[2]
    for rs, rp in rows:
        for cs, cp in cols:
            h[rs, cs].view(m1, rp.stop - rp.start, m2, cp.stop - cp.start).add_(t4[:, rp, :, cp])


# ----------------------------------------------------------------------------- inertia
class Inertia(NamedTuple):
    """Counts of negative, zero and positive eigenvalues, and the zero tolerance ``tol`` used (immutable).

    ``zero`` is the degree of degeneracy of paper A Def. 3; ``negative > 0`` at a critical point makes it a
    strict saddle (paper B Def. 6.1).
    """

    negative: int
    zero: int
    positive: int
    tol: float


def inertia(h_or_eigenvalues, rtol: float = 1e-8, atol: float = 0.0) -> Inertia:
    """The inertia of a symmetric matrix, or of a 1-D vector of its eigenvalues.

    An eigenvalue counts as zero when |lambda| <= tol = max(atol, rtol * max|lambda|).

    Why rtol = 1e-8: the zero eigenvalues created by an embedding come out of eigvalsh at float64
    round-off, at most ~1e-16 * P * max|lambda| (1e-13 relative for P ~ 1000; 1e-19 measured on the
    Fig. 1 split below). At an approximate critical point with ||grad|| ~ 1e-12, a curved critical set
    moves them by about ||grad|| times third derivatives over the smallest nonzero curvature, still below
    ~1e-10 relative in the book's examples. Genuine small curvatures sit far above: splitting the Fig. 1
    width-1 minimum gives a negative eigenvalue -0.0097 next to a top eigenvalue ~230-400, i.e.
    2.4e-5 to 4.2e-5 relative. rtol = 1e-8 leaves two or more decades of margin on both sides. Raise
    ``atol`` for a matrix whose largest eigenvalue is itself at round-off level.
    """
    ev = _eigenvalues(h_or_eigenvalues)
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    scale = ev.abs().max().item() if ev.numel() else 0.0
    tol = max(float(atol), float(rtol) * scale)
    neg, pos = int((ev < -tol).sum()), int((ev > tol).sum())
    return Inertia(neg, ev.numel() - neg - pos, pos, tol)


def _eigenvalues(h) -> Tensor:
    t = torch.as_tensor(h, dtype=torch.float64) if not isinstance(h, Tensor) else h.to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError("inertia: input contains NaN or infinite entries")
    if t.ndim == 1:
        return t
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"inertia needs a square matrix or a 1-D vector of eigenvalues, got shape {tuple(t.shape)}")
    asym = (t - t.T).abs().max().item() if t.numel() else 0.0
    if asym > 1e-8 * max(t.abs().max().item(), 1e-300):
        raise ValueError(f"inertia: matrix is not symmetric (max |H - H^T| = {asym:.3g})")
    return torch.linalg.eigvalsh(0.5 * (t + t.T))
