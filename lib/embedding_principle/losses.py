"""Per-sample losses l(f, y) with the derivatives the papers use (paper B section 3.2-3.3).

The empirical risk is R_S(theta) = (1/n) sum_i l(f_theta(x_i), y_i). For the back-propagation
recursions and the Hessian split we need, per sample, grad l (the papers' z^[L] = nabla l, the
derivative in the first argument) and the output Hessian d_ij l.

* ``"mse"``: l(f, y) = (1/d') ||f - y||^2 -- the mean squared error **without** a factor 1/2,
  averaged over the d' output coordinates, exactly ``torch.nn.MSELoss()``; for one output it is
  (f - y)^2, the convention that matches every loss value of paper A (digest section 5).
* ``"cross_entropy"``: l(f, y) = logsumexp(f) - <y, f> for y a probability vector (one-hot), or
  integer class labels of shape (n,).
* any callable ``loss(f, y)`` returning per-sample losses of shape ``f.shape[:-1]``; its
  derivatives come from torch.func.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor
from torch.func import jacrev, vmap

__all__ = ["Loss", "get_loss", "mse", "cross_entropy"]


@dataclass(frozen=True, eq=False)
class Loss:
    """A per-sample loss with its first and second derivatives in the output f."""

    name: str
    value: Callable[[Tensor, Tensor], Tensor]
    grad_fn: Callable[[Tensor, Tensor], Tensor] | None = None
    hess_fn: Callable[[Tensor, Tensor], Tensor] | None = None
    check_target: Callable[[Tensor, Tensor], Tensor] | None = None

    def __call__(self, f: Tensor, y: Tensor) -> Tensor:
        """Per-sample losses l(f_i, y_i), shape f.shape[:-1]."""
        return self.value(f, y)

    def grad(self, f: Tensor, y: Tensor) -> Tensor:
        """nabla l(f_i, y_i) in f, shape f.shape (the papers' z^[L] per sample)."""
        if self.grad_fn is not None:
            return self.grad_fn(f, y)
        with torch.enable_grad():
            v = f.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.value(v, y).sum(), v)
        return g

    def hess(self, f: Tensor, y: Tensor) -> Tensor:
        """The output Hessian d_ij l(f_i, y_i), shape f.shape + (d',)."""
        if self.hess_fn is not None:
            return self.hess_fn(f, y)

        def one(fi: Tensor, yi: Tensor) -> Tensor:
            return self.value(fi.unsqueeze(0), yi.unsqueeze(0)).squeeze(0)

        flat_f, flat_y = f.reshape(-1, f.shape[-1]), y.reshape(-1, *y.shape[f.ndim - 1:])
        h = vmap(jacrev(jacrev(one)))(flat_f, flat_y)
        return h.reshape(*f.shape, f.shape[-1])

    def target(self, f_shape: torch.Size, y) -> Tensor:
        """Validate and convert targets y for outputs of shape ``f_shape`` = (n, d')."""
        y = torch.as_tensor(y)
        if self.check_target is not None:
            return self.check_target(torch.empty(f_shape), y)
        if y.shape[: len(f_shape) - 1] != f_shape[:-1]:
            raise ValueError(f"targets y have shape {tuple(y.shape)}, but the outputs have shape {tuple(f_shape)}")
        return y.to(torch.float64) if y.is_floating_point() else y

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"


def _mse_target(f: Tensor, y: Tensor) -> Tensor:
    if y.shape != f.shape:
        raise ValueError(f"MSE targets y have shape {tuple(y.shape)}, expected {tuple(f.shape)} (n, d'); "
                         f"use y[:, None] for one output")
    if not torch.isfinite(y.to(torch.float64)).all():
        raise ValueError("targets y contain NaN or infinite entries")
    return y.to(torch.float64)


def _ce_target(f: Tensor, y: Tensor) -> Tensor:
    n, d = f.shape
    if y.ndim == 1 and not y.is_floating_point():
        if y.shape[0] != n or y.min() < 0 or y.max() >= d:
            raise ValueError(f"class labels must have shape ({n},) with values in [0, {d}); got shape "
                             f"{tuple(y.shape)}, range [{int(y.min())}, {int(y.max())}]")
        return torch.nn.functional.one_hot(y.long(), d).to(torch.float64)
    if y.shape != (n, d):
        raise ValueError(f"cross-entropy targets must be labels ({n},) or probabilities ({n}, {d}); got {tuple(y.shape)}")
    y = y.to(torch.float64)
    if (y < 0).any() or not torch.allclose(y.sum(-1), torch.ones(n, dtype=torch.float64)):
        raise ValueError("cross-entropy target rows must be probability vectors (non-negative, summing to 1)")
    return y


def _mse_hess(f: Tensor, y: Tensor) -> Tensor:
    d = f.shape[-1]
    eye = torch.eye(d, dtype=f.dtype, device=f.device) * (2.0 / d)
    return eye.expand(*f.shape, d)


def _ce_hess(f: Tensor, y: Tensor) -> Tensor:
    p = torch.softmax(f, -1)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


mse = Loss("mse",
           lambda f, y: ((f - y) ** 2).mean(-1),
           lambda f, y: 2.0 * (f - y) / f.shape[-1],
           _mse_hess, _mse_target)

cross_entropy = Loss("cross_entropy",
                     lambda f, y: torch.logsumexp(f, -1) - (y * f).sum(-1),
                     lambda f, y: torch.softmax(f, -1) - y,
                     _ce_hess, _ce_target)

_LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


def get_loss(loss: Union[str, Loss, Callable[[Tensor, Tensor], Tensor]]) -> Loss:
    """Resolve a loss given by name ('mse', 'cross_entropy'), as a :class:`Loss`, or as a callable."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(_LOSSES)} or pass a callable")
        return _LOSSES[loss]
    if callable(loss):
        return Loss(getattr(loss, "__name__", "custom"), loss)
    raise TypeError(f"loss must be a name, a Loss or a callable, not {type(loss).__name__}")
