"""The library's registered (cached) experiments; see :mod:`embedding_principle.cache`.

Each experiment is a function of a JSON configuration returning arrays. Run one with
``embedding_principle.cache.run(name, config)`` or ``python -m embedding_principle run NAME``.
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np

from . import backprop, data, losses, network, training
from .cache import experiment
from .network import MLP

__all__ = ["fig1_narrow_critical_points"]


@experiment(
    "fig1_narrow_critical_points",
    default_config={"widths": [1, 2], "runs": 20, "steps": 100000, "lr": 0.005, "seed": 1,
                    "activation": "tanh", "init_std_power": 1.5, "log_points": 20},
    depends=(training, backprop, network, losses, data),   # the code that shapes the results
)
def fig1_narrow_critical_points(config: dict) -> dict:
    """Batched GD runs of narrow 1-m-1 nets on the Fig. 1 data (paper A App. B settings).

    For each width m: ``runs`` independent 1-m-1 networks without output bias (paper A's
    two-layer nets) start from N(0, m^-3) (std m^-``init_std_power``; seed ``seed``) and are
    trained together by full-batch GD on the MSE; returns per width, under ``width_<m>``: the
    final ``theta`` (runs, 3m), the final ``loss`` and ``grad_norm`` (runs,), and the curves
    ``curve_steps`` / ``curve_loss`` / ``curve_grad_norm`` (len, runs). These are candidates for the narrow
    critical points of paper A Fig. 4 (to be polished by a critical-point solver).
    """
    x, y = data.fig1_data()
    out: dict = {}
    for m in config["widths"]:
        net = MLP((1, int(m), 1), config["activation"], output_bias=False)
        theta0 = net.init(config["seed"], std=float(m) ** -config["init_std_power"], runs=config["runs"])
        res = training.train(net, x, y, theta0, optimizer="gd", lr=config["lr"], steps=config["steps"],
                             log_points=config["log_points"], seed=config["seed"])
        out[f"width_{m}"] = {"theta": res.theta.numpy(), "loss": res.loss[-1], "grad_norm": res.grad_norm[-1],
                             "curve_steps": res.steps, "curve_loss": res.loss, "curve_grad_norm": res.grad_norm,
                             "wall_time_s": np.float64(res.wall_time_s)}
    return out


def _import_figure_experiments() -> None:
    """Import every module of :mod:`embedding_principle.experiments` (one per figure) to register it."""
    from . import experiments
    for info in pkgutil.iter_modules(experiments.__path__):
        importlib.import_module(f"{experiments.__name__}.{info.name}")


_import_figure_experiments()
