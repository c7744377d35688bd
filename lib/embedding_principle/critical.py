"""Polishing approximate critical points to ||nabla R_S||_2 <= 1e-12 (paper A Def. 1, Fig. 3 and Fig. 4).

Paper A calls theta "critical" when nabla R_S(theta) = 0 and reads degeneracies off the Hessian at iterates
whose gradient is ~1e-14. Gradient descent cannot get there in reasonable time, and the points of interest
are degenerate (embedded critical points lie on critical affine subspaces, paper A Thm. 2) and are often
saddles. Minimisers such as BFGS avoid saddles and Newton's method breaks on singular Hessians, so we
solve the system nabla R_S(theta) = 0 with damped Gauss-Newton (Levenberg-Marquardt) steps

    d = -(H^T H + mu I)^{-1} H^T g = -V diag(lambda / (lambda^2 + mu)) V^T g,   H = V diag(lambda) V^T,

accepted (at length 1, 1/2 or 1/4) when they decrease ||g||^2, the merit function: every critical point,
saddle or minimum, is a global minimiser of it. One eigendecomposition per iteration prices every trial
damping mu = nu max(lambda^2). Exact zero eigenvalues (the degenerate directions) get a weight
~lambda/mu ~ 0, so the step is the minimum-norm least-squares step on the non-degenerate part. After a
success nu shrinks tenfold (to at least 1e-16, quadratic convergence near non-degenerate and
constant-rank degenerate critical sets); after a failure it grows tenfold, and a large mu turns the step
into gradient descent on ||g||^2 / 2 (d ~ -H g / mu), the fallback.

What it cannot do: reach a critical point that does not exist nearby. Tanh nets often drift towards
critical points "at infinity" (saturating neurons with growing weights, a vanishing smallest eigenvalue);
there the gradient stalls and :class:`ConvergenceError` reports the norm reached.

Size: the dense Hessian and its eigendecomposition limit this to P <= ``MAX_PARAMS`` = 3000 parameters
(a 72 MB Hessian; eigh takes ~0.5 s at P = 2000 and a few seconds at P = 3000 on two idle cores).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .landscape import Landscape

__all__ = ["CriticalPoint", "ConvergenceError", "find_critical_point", "MAX_PARAMS"]

MAX_PARAMS = 3000
_NU_MIN, _NU_MAX = 1e-16, 1e8  # mu / max(lambda^2); the floor damps |lambda| < 1e-8 max|lambda| (zero modes)


class ConvergenceError(RuntimeError):
    """:func:`find_critical_point` stopped with ||nabla R_S|| above the tolerance."""


@dataclass(frozen=True)
class CriticalPoint:
    """Result of :func:`find_critical_point`.

    Attributes:
        theta: the final parameter vector (P,).
        grad_norm: ||nabla R_S(theta)||_2.
        risk: R_S(theta).
        iterations: number of accepted Levenberg-Marquardt steps.
        converged: whether grad_norm <= tol.
        history: ||nabla R_S||_2 at the start and after every iteration.
    """

    theta: Tensor
    grad_norm: float
    risk: float
    iterations: int
    converged: bool
    history: tuple[float, ...]


def find_critical_point(landscape: Landscape, theta0, tol: float = 1e-12, max_iter: int = 200, *,
                        max_params: int = MAX_PARAMS, raise_on_failure: bool = True) -> CriticalPoint:
    """Solve nabla R_S(theta) = 0 near ``theta0`` (minima and saddles alike) to ||nabla R_S||_2 <= ``tol``.

    Args:
        landscape: the :class:`~embedding_principle.landscape.Landscape` R_S.
        theta0: starting point (P,), e.g. the end of a training run with gradient ~1e-3.
        tol: target Euclidean gradient norm (float64 reaches ~1e-15 on the book's examples).
        max_iter: maximum number of iterations (each: one Hessian, one eigendecomposition, a few gradients).
        max_params: refuse nets with more parameters than this (dense Hessian), default ``MAX_PARAMS``.
        raise_on_failure: raise :class:`ConvergenceError` if not converged; else return ``converged=False``.

    Returns:
        A :class:`CriticalPoint`. The answer is a critical point near theta0, not necessarily the nearest
        one: on a critical manifold any point of it is a valid answer.
    """
    theta = _check_inputs(landscape, theta0, tol, max_iter, max_params)
    g = landscape.grad(theta)
    history, nu, stalled = [g.norm().item()], 1e-6, False
    while history[-1] > tol and len(history) <= max_iter:
        step = _lm_step(landscape, theta, g, history[-1], nu)
        if step is None:  # no damping decreased ||g||: round-off floor, or no critical point nearby
            stalled = True
            break
        theta, g, nu = step
        history.append(g.norm().item())
    return _result(landscape, theta, history, tol, max_iter, stalled, raise_on_failure)


def _lm_step(landscape: Landscape, theta: Tensor, g: Tensor, g_norm: float, nu: float):
    """One accepted step (theta, g, next nu) decreasing ||g||, or None if no trial works.

    For damping nu, 10 nu, ... up to _NU_MAX the LM step d(mu = nu max lambda^2) is tried at lengths
    1, 1/2, 1/4 (a short backtracking line search on ||g||^2, which helps in long curved valleys).
    """
    h = landscape.hessian(theta)
    lam, vec = torch.linalg.eigh(0.5 * (h + h.T))
    gt, scale = vec.T @ g, max(lam.abs().max().item() ** 2, 1e-300)
    nu = max(nu, _NU_MIN)
    while nu <= _NU_MAX:
        d = vec @ (lam / (lam ** 2 + nu * scale) * gt)
        for t in (1.0, 0.5, 0.25):
            cand = theta - t * d
            g_new = landscape.grad(cand) if torch.isfinite(cand).all() else None
            if g_new is not None and g_new.norm().item() < g_norm:
                return cand, g_new, max(nu / 10, _NU_MIN) if t == 1.0 else nu
        nu *= 10
    return None


def _check_inputs(landscape, theta0, tol, max_iter, max_params) -> Tensor:
    if not isinstance(landscape, Landscape):
        raise TypeError(f"landscape must be a Landscape, not {type(landscape).__name__}")
    P = landscape.net.num_params
    if P > max_params:
        raise ValueError(f"find_critical_point uses a dense Hessian and supports P <= {max_params} parameters; "
                         f"{landscape.net} has P = {P} (raise max_params knowingly)")
    if not (isinstance(tol, (int, float)) and tol > 0 and tol < float("inf")):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    return landscape.check_theta(theta0).detach().clone()


def _result(landscape, theta, history, tol, max_iter, stalled, raise_on_failure) -> CriticalPoint:
    converged, it = history[-1] <= tol, len(history) - 1
    if not converged and raise_on_failure:
        why = "no damped step decreased ||grad||" if stalled else f"max_iter = {max_iter} reached"
        raise ConvergenceError(f"find_critical_point did not converge: ||grad R_S||_2 = {history[-1]:.3e} > tol = "
                               f"{tol:.1e} after {it} iterations ({why}); pass raise_on_failure=False to get "
                               f"the last iterate")
    return CriticalPoint(theta, history[-1], landscape.risk(theta).item(), it, converged, tuple(history))
