"""The library's one training loop: full-batch GD or Adam on R_S, for one or many runs at once.

Paper A (App. B) trains every network full-batch: gradient descent theta <- theta - lr grad R_S
for the 1-D fits (lr 0.005, 3x10^5 epochs), Adam with PyTorch's defaults for Iris and MNIST.
Gradient descent is the discretisation of the gradient flow d theta/dt = -grad R_S(theta) that
paper A takes as the reference dynamics.

``train`` accepts theta0 of shape (P,) (one run) or (R, P) (R independent runs). The runs are
trained in ONE batched computation: each step evaluates R_S and its gradient for all runs with
batched matrix products (:func:`embedding_principle.backprop.risk_and_grad`'s kernel), and
every run follows exactly the trajectory it would follow alone. Loss and gradient norm are
recorded on a log-spaced schedule, from the same forward/backward pass that drives the update.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .backprop import LossLike, _prepare, _RiskGrad
from .network import MLP

__all__ = ["TrainResult", "train", "log_schedule", "OPTIMIZERS"]

OPTIMIZERS = ("gd", "adam")
ADAM_BETAS = (0.9, 0.999)   # torch.optim.Adam defaults
ADAM_EPS = 1e-8
_CHECK_EVERY = 1000          # steps between finiteness checks (a divergence is then located exactly)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        theta: final parameters on the CPU, shape (R, P), or (P,) when theta0 was one vector.
        steps: the logged steps (int64 array, increasing, from 0 to the last step).
        loss: R_S at each logged step, shape (len(steps), R), or (len(steps),) for one run.
        grad_norm: ||grad R_S||_2 at each logged step, same shape as ``loss``.
        snapshots: {step: theta at that step} (CPU tensors shaped like ``theta``).
        wall_time_s: seconds spent in the training loop.
        device, dtype: where and in which precision it ran.
        optimizer, lr, seed: the settings, for provenance (``seed`` is recorded only: GD and
            Adam are deterministic given theta0).
    """

    theta: Tensor
    steps: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    snapshots: dict[int, Tensor] = field(default_factory=dict)
    wall_time_s: float = 0.0
    device: str = "cpu"
    dtype: str = "float64"
    optimizer: str = "gd"
    lr: float = 0.0
    seed: int | None = None

    @property
    def final_loss(self) -> np.ndarray | float:
        """R_S at the last step (a float for one run, an array of R values otherwise)."""
        last = self.loss[-1]
        return float(last) if np.ndim(last) == 0 else last

    def as_arrays(self) -> dict:
        """Numpy arrays of everything, for the experiment cache (snapshots under 'snapshots/<step>')."""
        out = {"theta": self.theta.numpy(), "steps": self.steps, "loss": self.loss,
               "grad_norm": self.grad_norm, "wall_time_s": self.wall_time_s}
        if self.snapshots:
            out["snapshots"] = {str(k): v.numpy() for k, v in self.snapshots.items()}
        return out


# ----------------------------------------------------------------------------- schedule
def log_schedule(steps: int, per_decade: int = 20) -> np.ndarray:
    """Steps 0, the integers nearest to 10^(k/per_decade) for k = 0, 1, ..., and ``steps`` (no duplicates).

    >>> log_schedule(100, per_decade=4).tolist()
    [0, 1, 2, 3, 6, 10, 18, 32, 56, 100]
    """
    steps = _check_int(steps, "steps", minimum=0)
    per_decade = _check_int(per_decade, "per_decade", minimum=1)
    if steps == 0:
        return np.zeros(1, dtype=np.int64)
    k = np.arange(int(math.floor(per_decade * math.log10(steps))) + 1)
    points = np.rint(10.0 ** (k / per_decade)).astype(np.int64)
    return np.unique(np.concatenate([[0], points[points <= steps], [steps]]))


def _schedule(steps: int, log_points) -> np.ndarray:
    if isinstance(log_points, (int, np.integer)) and not isinstance(log_points, bool):
        return log_schedule(steps, int(log_points))
    pts = np.asarray(list(log_points))
    if pts.ndim != 1 or (pts.size and not np.issubdtype(pts.dtype, np.integer)):
        raise TypeError("log_points must be an int (points per decade) or a sequence of integer steps")
    if pts.size and (pts.min() < 0 or pts.max() > steps):
        raise ValueError(f"log_points must lie in [0, {steps}], got range [{pts.min()}, {pts.max()}]")
    return np.unique(np.concatenate([[0], pts.astype(np.int64), [steps]]))


# ----------------------------------------------------------------------------- optimizers
class _GD:
    """theta <- theta - lr grad R_S."""

    def __init__(self, lr: float, theta: Tensor):
        self.lr = lr

    def step(self, theta: Tensor, grad: Tensor) -> None:
        theta.add_(grad, alpha=-self.lr)

    def state(self) -> tuple:
        return ()

    def load(self, state: tuple) -> None:
        pass


class _Adam:
    """Adam exactly as ``torch.optim.Adam`` (single-tensor path, defaults betas (0.9, 0.999), eps 1e-8).

    The update is elementwise, so applying it to the (R, P) tensor of all runs is per-run exact.
    """

    def __init__(self, lr: float, theta: Tensor):
        self.lr = lr
        self.m = torch.zeros_like(theta)
        self.v = torch.zeros_like(theta)
        self.t = 0

    def step(self, theta: Tensor, grad: Tensor) -> None:
        beta1, beta2 = ADAM_BETAS
        self.t += 1
        self.m.lerp_(grad, 1 - beta1)
        self.v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self.lr / (1 - beta1 ** self.t)
        denom = (self.v.sqrt() / (1 - beta2 ** self.t) ** 0.5).add_(ADAM_EPS)
        theta.addcdiv_(self.m, denom, value=-step_size)

    def state(self) -> tuple:
        return self.m.clone(), self.v.clone(), self.t

    def load(self, state: tuple) -> None:
        m, v, self.t = state
        self.m.copy_(m)
        self.v.copy_(v)


_OPTIMIZER_CLASSES = {"gd": _GD, "adam": _Adam}


# ----------------------------------------------------------------------------- validation
def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but no CUDA GPU is available to PyTorch here; "
                           "use device='cpu' (every experiment runs on the CPU, only slower)")
    return device


def _check_settings(optimizer: str, lr, dtype) -> float:
    if optimizer not in _OPTIMIZER_CLASSES:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise TypeError(f"lr must be a number, got {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    return float(lr)


def _progress_enabled(progress: bool | None) -> bool:
    return os.environ.get("EP_PROGRESS", "") == "1" if progress is None else bool(progress)


# ----------------------------------------------------------------------------- the loop
def train(net: MLP, x, y, theta0, *, loss: LossLike = "mse", optimizer: str = "gd", lr: float,
          steps: int, log_points: Union[int, Iterable[int]] = 20, snapshot_steps: Sequence[int] = (),
          device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float64,
          progress: bool | None = None, seed: int | None = None) -> TrainResult:
    """Full-batch training of one run (theta0 (P,)) or R independent runs (theta0 (R, P)) at once.

    Args:
        net: the architecture.
        x, y: the data S (x of shape (n, m_0); y as the loss expects).
        theta0: initial parameters, (P,) or (R, P); not modified.
        loss: ``"mse"`` (paper A), ``"cross_entropy"``, a :class:`Loss` or a callable.
        optimizer: ``"gd"`` (theta -= lr grad) or ``"adam"`` (torch.optim.Adam defaults).
        lr: learning rate > 0.
        steps: number of updates (>= 0); ``theta`` is returned after ``steps`` updates.
        log_points: points per decade of the log-spaced logging schedule (see
            :func:`log_schedule`), or an explicit sequence of steps; 0 and ``steps`` are always logged.
        snapshot_steps: steps at which to keep a copy of theta.
        device: ``"cpu"`` (default) or e.g. ``"cuda"`` (never required).
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        progress: show a tqdm bar; None means on only if the environment variable EP_PROGRESS is "1", which
            importing the package sets when nobody set it and a person watches (a terminal or a Jupyter
            kernel); builds and CI set EP_PROGRESS=0.
        seed: recorded in the result for provenance.

    Raises:
        FloatingPointError: when the loss of some run becomes NaN or infinite (names the step).
    """
    lr = _check_settings(optimizer, lr, dtype)
    steps = _check_int(steps, "steps", minimum=0)
    device = _check_device(device)
    theta = net.check_theta(theta0)
    if theta.ndim > 2:
        raise ValueError(f"theta0 must have shape (P,) or (R, P), got {tuple(theta.shape)}")
    single = theta.ndim == 1
    theta = theta.detach().reshape(-1, net.num_params).to(device=device, dtype=dtype).clone()
    theta, x, y, loss_fn = _prepare(net, theta, x, y, loss)
    log_steps = _schedule(steps, log_points)
    snaps = sorted({_check_int(s, "snapshot step", 0) for s in snapshot_steps})
    if snaps and snaps[-1] > steps:
        raise ValueError(f"snapshot_steps must lie in [0, {steps}], got {snaps[-1]}")
    loop = _Loop(_RiskGrad(net, x, y, loss_fn, theta.shape[0]),
                 _OPTIMIZER_CLASSES[optimizer](lr, theta), theta, steps, log_steps, snaps)
    start = time.perf_counter()
    loop.run(_progress_enabled(progress))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    unbatch = (lambda t: t[0]) if single else (lambda t: t)
    losses, norms = torch.stack(loop.losses).cpu().numpy(), torch.stack(loop.norms).cpu().numpy()
    return TrainResult(theta=unbatch(theta.cpu()), steps=log_steps,
                       loss=losses[:, 0] if single else losses, grad_norm=norms[:, 0] if single else norms,
                       snapshots={s: unbatch(t) for s, t in loop.snapshots.items()}, wall_time_s=wall,
                       device=str(device), dtype=str(dtype).replace("torch.", ""), optimizer=optimizer,
                       lr=lr, seed=seed)


class _Loop:
    """Runs steps 0..S: at step t evaluate (R_S, grad) at theta_t, record, then update (except at t = S)."""

    def __init__(self, kernel: _RiskGrad, opt, theta: Tensor, steps: int, log_steps: np.ndarray, snaps: list[int]):
        self.kernel, self.opt, self.theta, self.steps = kernel, opt, theta, steps
        self.log_set = set(log_steps.tolist())
        self.snap_set = set(snaps)
        self.losses: list[Tensor] = []
        self.norms: list[Tensor] = []
        self.snapshots: dict[int, Tensor] = {}

    def run(self, show_progress: bool) -> None:
        bar = _progress_bar(self.steps, show_progress)
        checkpoint = (0, self.theta.clone(), self.opt.state())
        events = self.log_set | self.snap_set
        for t in range(self.steps + 1):
            risk, grad = self.kernel(self.theta)
            if t in events or t % _CHECK_EVERY == 0:
                if not bool(torch.isfinite(risk).all()):
                    self._diverged(checkpoint, t)
                checkpoint = (t, self.theta.clone(), self.opt.state())
                self._record(t, risk, grad)
            if t == self.steps:
                break
            self.opt.step(self.theta, grad)
            if bar is not None and (t + 1) % bar.chunk == 0:
                bar.update(bar.chunk)
        if bar is not None:
            bar.update(self.steps - bar.n)
            bar.close()

    def _record(self, t: int, risk: Tensor, grad: Tensor) -> None:
        if t in self.log_set:
            self.losses.append(risk.clone())
            self.norms.append(torch.linalg.vector_norm(grad, dim=1))
        if t in self.snap_set:
            self.snapshots[t] = self.theta.cpu().clone()

    def _diverged(self, checkpoint: tuple, t_bad: int) -> None:
        """Replay from the last finite checkpoint to name the first step with a non-finite loss."""
        t0, theta0, state = checkpoint
        self.theta.copy_(theta0)
        self.opt.load(state)
        for t in range(t0, t_bad + 1):
            risk, grad = self.kernel(self.theta)
            bad = ~torch.isfinite(risk)
            if bool(bad.any()):
                runs = torch.nonzero(bad).flatten().tolist()
                what = "NaN" if bool(torch.isnan(risk[bad]).any()) else "infinite"
                raise FloatingPointError(
                    f"training diverged: the loss became {what} at step {t} (run(s) {runs[:10]}"
                    f"{' ...' if len(runs) > 10 else ''}; optimizer lr {self.opt.lr}); "
                    f"try a smaller learning rate")
            self.opt.step(self.theta, grad)
        raise FloatingPointError(f"training diverged: the loss became non-finite between steps {t0} and {t_bad} "
                                 f"(the replay did not reproduce it; the computation is not deterministic here)")


def _progress_bar(total: int, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", desc="training", leave=False)
    bar.chunk = max(1, total // 200)
    return bar
