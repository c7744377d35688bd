"""Back-propagation written out as the papers' recursions (paper A section 4, paper B section 3 and App. B).

For a network with widths (m_0, ..., m_L), data S = {(x_i, y_i)}_{i=1}^n and a per-sample loss l:

    f^[0] = x,   f^[l] = sigma(W^[l] f^[l-1] + b^[l])  (l < L),   f^[L] = W^[L] f^[L-1] + b^[L]
    g^[l] = sigma'(W^[l] f^[l-1] + b^[l])  (l < L),   g^[L] = 1          (feature gradients)
    z^[L] = grad l(f^[L], y),   z^[l] = (W^[l+1])^T (z^[l+1] o g^[l+1])   (error vectors)
    e^[l] = z^[l] o g^[l]                                                 (paper B)
    grad_{W^[l]} R_S = E_S e^[l] (f^[l-1])^T,   grad_{b^[l]} R_S = E_S e^[l]

:func:`backprop` evaluates these literally and returns every collection F, G, Z, E; it is the
library's hand-written gradient, independent of the torch.func one used by the Landscape class.
:func:`risk_and_grad` is the fast path used by training: the same recursions, rearranged to
avoid temporaries, for a batch of R parameter vectors in one computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor

from .losses import Loss, get_loss, mse
from .network import ACTIVATIONS, MLP

__all__ = ["Backprop", "backprop", "risk_and_grad"]

LossLike = Union[str, Loss, Callable[[Tensor, Tensor], Tensor]]


@dataclass
class Backprop:
    """The collections F, G, Z, E of one forward/backward pass, per sample, and the gradient of R_S.

    ``f[l]`` has shape (..., n, m_l) for l = 0..L (``f[0]`` is the input x, shape (n, m_0));
    ``g[l]``, ``z[l]``, ``e[l]`` likewise for l = 1..L, with None at index 0.
    ``grad`` (..., P) is grad_theta R_S in the network's flat layout; ``risk`` (...,) is R_S.
    """

    f: list[Tensor]
    g: list[Tensor | None]
    z: list[Tensor | None]
    e: list[Tensor | None]
    grad: Tensor
    risk: Tensor


def _prepare(net: MLP, theta, x, y, loss: LossLike) -> tuple[Tensor, Tensor, Tensor, Loss]:
    """Validate (theta, x, y, loss) and bring x and y to theta's dtype and device."""
    if not isinstance(net, MLP):
        raise TypeError(f"net must be an MLP, not {type(net).__name__}")
    theta = net.check_theta(theta)
    x = net.check_x(x, like=theta)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, {net.widths[0]}), got {tuple(x.shape)}")
    loss = get_loss(loss)
    y = loss.target(torch.Size((x.shape[0], net.widths[-1])), y)
    if y.is_floating_point():
        y = y.to(dtype=theta.dtype)
    return theta, x, y.to(theta.device), loss


def _flat_grad(net: MLP, e: list, f: list, n: int) -> Tensor:
    """Assemble grad R_S from grad_{W^[l]} = E_S e^[l] f^[l-1]^T and grad_{b^[l]} = E_S e^[l]."""
    parts = []
    for l in range(1, net.L + 1):
        gW = e[l].transpose(-1, -2) @ f[l - 1] / n          # (..., m_l, m_{l-1})
        parts.append(gW.reshape(*gW.shape[:-2], -1))
        if net._has_bias(l):
            parts.append(e[l].mean(-2))
    batch = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*batch, p.shape[-1]) for p in parts], dim=-1)


def backprop(net: MLP, theta, x, y, loss: LossLike = "mse") -> Backprop:
    """One forward and one backward pass through the recursions of paper B App. B.

    Args:
        net: the architecture.
        theta: parameters, shape (P,) or (..., P) for a batch of networks.
        x: inputs, shape (n, m_0).
        y: targets accepted by the loss (for ``"mse"`` shape (n, m_L)).
        loss: ``"mse"``, ``"cross_entropy"``, a :class:`Loss` or a callable ``l(f, y)``.

    Returns:
        A :class:`Backprop` with F, G, Z, E (per sample), ``grad`` and ``risk``.
    """
    theta, x, y, loss = _prepare(net, theta, x, y, loss)
    layers = net.unflatten(theta)
    f: list[Tensor] = [x]
    g: list[Tensor | None] = [None]
    for l, (W, b) in enumerate(layers, start=1):
        u = f[l - 1] @ W.transpose(-1, -2)                    # W^[l] f^[l-1], per sample
        if b is not None:
            u = u + b.unsqueeze(-2)
        if l < net.L:
            f.append(net.activation(u))
            g.append(net.activation.derivative(u))
        else:
            f.append(u)
            g.append(torch.ones_like(u))                       # g^[L] = 1
    z: list[Tensor | None] = [None] * (net.L + 1)
    e: list[Tensor | None] = [None] * (net.L + 1)
    z[net.L] = loss.grad(f[net.L], y)                          # z^[L] = grad l
    e[net.L] = z[net.L] * g[net.L]
    for l in range(net.L - 1, 0, -1):
        W_next = layers[l][0]                                  # W^[l+1]
        z[l] = e[l + 1] @ W_next                               # (W^[l+1])^T (z^[l+1] o g^[l+1])
        e[l] = z[l] * g[l]
    n = x.shape[0]
    risk = loss(f[net.L], y).mean(-1)
    return Backprop(f=f, g=g, z=z, e=e, grad=_flat_grad(net, e, f, n), risk=risk)


# ----------------------------------------------------------------------------- fast path
def _derivative_from_output(net: MLP) -> Callable[[Tensor], Tensor] | None:
    """sigma' expressed through f = sigma(u) when that is cheaper than recomputing from u (None otherwise)."""
    act = net.activation
    if act == ACTIVATIONS["tanh"]:
        return lambda f: torch.addcmul(torch.ones((), dtype=f.dtype, device=f.device), f, f, value=-1.0)
    if act == ACTIVATIONS["sigmoid"]:
        return lambda f: f - f * f
    if act == ACTIVATIONS["relu"]:
        return lambda f: (f > 0).to(f.dtype)
    return None


def _bmm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """Batched a @ b (+ bias); an outer product (contraction over one index) as a broadcast product,
    which is several times faster than ``bmm`` for the thin matrices of one-input/one-output nets."""
    if a.shape[-1] == 1:
        return a * b if bias is None else torch.addcmul(bias, a, b)
    return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)


class _RiskGrad:
    """Prepared risk and gradient of a batch of R networks on fixed data: ``kernel(theta (R, P))``.

    Validation happens once in the constructor; each call runs the recursions with batched
    matrix products (one computation for all runs) and writes the gradient into a buffer that
    is **reused** by the next call. With the MSE loss the output error uses the closed form
    z^[L] = 2 (f - y) / d'; the factor 1/n of E_S is folded into z^[L].
    """

    def __init__(self, net: MLP, x: Tensor, y: Tensor, loss: Loss, runs: int):
        self.net, self.loss, self.runs = net, loss, runs
        self.n = x.shape[0]
        self.x = x.expand(runs, *x.shape)                      # (R, n, m_0), no copy
        self.y = y
        self.mse = loss is mse
        self.dfrom_f = _derivative_from_output(net)
        self.slices = net.layer_slices
        self.grad = torch.empty(runs, net.num_params, dtype=x.dtype, device=x.device)
        self.gW = [self.grad[:, w].view(runs, net.widths[l + 1], net.widths[l]) for l, (w, _) in enumerate(self.slices)]
        self.gb = [None if b is None else self.grad[:, b] for _, b in self.slices]
        self._theta: Tensor | None = None

    def _views(self, theta: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """W^[l] and b^[l] as views into theta, cached while the same tensor is passed (training updates in place)."""
        if theta is not self._theta:
            R, widths = self.runs, self.net.widths
            Ws = [theta[:, w].view(R, widths[l + 1], widths[l]) for l, (w, _) in enumerate(self.slices)]
            bs = [None if b is None else theta[:, b].unsqueeze(1) for _, b in self.slices]
            self._theta, self._Wb = theta, (Ws, bs)
        return self._Wb

    def __call__(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        net, L = self.net, self.net.L
        Ws, bs = self._views(theta)
        f, g = [self.x], [None]
        for l in range(1, L + 1):
            W, b = Ws[l - 1], bs[l - 1]
            u = _bmm(f[-1], W.transpose(1, 2), b)
            if l == L:
                f.append(u)
            elif self.dfrom_f is not None:
                f.append(net.activation(u))
                g.append(self.dfrom_f(f[-1]))
            else:
                f.append(net.activation(u))
                g.append(net.activation.derivative(u))
        risk, e = self._output_error(f[L])                     # e^[L] = z^[L] / n  (g^[L] = 1)
        for l in range(L, 0, -1):
            torch.bmm(e.transpose(1, 2), f[l - 1], out=self.gW[l - 1])
            if self.gb[l - 1] is not None:
                torch.sum(e, dim=1, out=self.gb[l - 1])
            if l > 1:
                e = _bmm(e, Ws[l - 1]).mul_(g[l - 1])         # e^[l-1] = (W^[l]^T e^[l]) o g^[l-1]
        return risk, self.grad

    def _output_error(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """R_S per run and z^[L] / n."""
        n, d = self.n, out.shape[-1]
        if self.mse:
            r = out.sub_(self.y)                               # residual f - y (overwrites f^[L])
            risk = torch.linalg.vector_norm(r, dim=(1, 2)).square_().div_(n * d)
            return risk, r.mul_(2.0 / (n * d))
        risk = self.loss(out, self.y).mean(-1)
        return risk, self.loss.grad(out, self.y).div_(n)


def risk_and_grad(net: MLP, theta, x, y, loss: LossLike = "mse") -> tuple[Tensor, Tensor]:
    """R_S(theta) and grad_theta R_S for one or many parameter vectors, in one batched computation.

    Args:
        net: the architecture.
        theta: shape (P,) or (..., P); every leading index is an independent network (run).
        x: inputs (n, m_0). y: targets accepted by the loss.
        loss: ``"mse"`` (closed-form derivative), ``"cross_entropy"``, a :class:`Loss` or a callable.

    Returns:
        ``(risk, grad)`` with shapes theta.shape[:-1] and theta.shape.
    """
    theta, x, y, loss = _prepare(net, theta, x, y, loss)
    theta = theta.detach()
    batch = theta.shape[:-1]
    flat = theta.reshape(-1, net.num_params)
    kernel = _RiskGrad(net, x, y, loss, flat.shape[0])
    risk, grad = kernel(flat)
    return risk.reshape(batch), grad.reshape(*batch, net.num_params)
