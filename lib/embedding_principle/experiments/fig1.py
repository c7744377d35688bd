"""Paper A, Fig. 1 (= paper B, Fig. 4.3): a width-500 tanh net trained on 50 points, "two stages".

The protocol (paper A App. B; the data and conventions are recovered in the digest, section 3.1): a 1-500-1 tanh
net with hidden bias and no output bias, x = linspace(-15, 15, 50), y = tanh(x+7) + tanh(x) + tanh(x-7),
R_S = mean (f - y)^2 without a 1/2, full-batch GD with lr 0.005 for 3x10^5 epochs, every parameter drawn from
N(0, 1/m^3). The paper shows (a) the loss, which first sits on a plateau near 0.1 and then falls to ~2.5e-4;
(b) the output at the plateau, next to the width-1 global minimum; (c) the output at the end, next to the
width-3 global minimum.

What we find (notebook ``notebooks/11_fig1_two_stages.ipynb``): the plateau reproduces, and it is the embedded
width-1 global minimum. The fall does not happen. Data and tanh are odd, so the reflection rho (every bias
negated, :mod:`embedding_principle.symmetry`) is a symmetry of R_S. The biases are initialised at ~1e-4, and
the only force that can grow them is the negative curvature of the bias block of the Hessian. On the plateau
that curvature is about 2 lambda_max S_bb ~ -1e-3: the splitting matrix's bias eigenvalue -0.0097, diluted by
the largest output share lambda_max of the 500 condensed neurons. The run stays at rho-symmetric points and
ends at 0.104, where GD oscillates with period 2 (the sharpness crosses 2/lr). A bias kick during the plateau
(OUR addition, not the paper's protocol) escapes.

Experiments:

* ``fig1_two_stages`` -- the literal protocol in float64 for several seeds (one batched run), and kicked copies
  of the first seed. Each kicked copy continues the first seed's run after adding N(0, std^2) to every hidden
  bias at ``kick_epoch``.
* ``fig1_float32`` -- the same literal protocol in float32 (does round-off break the symmetry?).

Each run stores log-spaced loss / gradient-norm curves, symmetry measures and Hessian-sector curvatures at
log-spaced snapshots, its last two iterates, and (first seed and kicked runs) the snapshots themselves.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from .. import backprop, cache, critical, data, landscape, losses, network, symmetry, training
from ..critical import find_critical_point
from ..landscape import Landscape
from ..network import MLP
from ..training import log_schedule, train
from . import Check, Claim, claims, consistency_check

__all__ = ["DEFAULT", "FLOAT32", "NOTEBOOK", "PAPER", "run_label", "fig1_two_stages", "fig1_float32", "width3_target",
           "first_step_below", "nearest_index", "loss_at", "fig1_claims", "fig1_consistency"]

NOTEBOOK = "notebooks/11_fig1_two_stages"

DEFAULT = {"width": 500, "activation": "tanh", "lr": 0.005, "steps": 300000, "init_std_power": 1.5,
           "seeds": [0, 1, 2], "dtype": "float64", "device": "cpu", "kick_epoch": 3000, "kick_stds": [0.3, 0.03],
           "kick_seed": 0, "log_per_decade": 40, "snapshots_per_decade": 10, "curvature_per_decade": 5,
           "plateau_epoch": 5000}
"""The paper's protocol (width, lr, steps, init) plus our seeds, kicks and logging. A GPU: ``"device": "cuda"``."""

FLOAT32 = {**DEFAULT, "dtype": "float32", "seeds": [0], "kick_stds": []}

PAPER = {"initial_loss": 5.0, "first_drop": (30, 100), "plateau_value": 0.1, "plateau_span": (1e2, 5e4),
         "blue_dot_epoch": 5e3, "final_loss": 2.5e-4, "final_epoch": (2e5, 3e5), "fall_after": 1e5,
         "width1_loss": 0.109023}
"""Digest row A-Fig.1 ([F] read off the figure; the width-1 value is the digest's [I] computation)."""

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def run_label(kind: str, value) -> str:
    """Result key of a run: ``literal_s<seed>`` or ``kick_<std>`` (e.g. ``kick_0.3``)."""
    if kind == "literal":
        return f"literal_s{int(value)}"
    if kind == "kick":
        return f"kick_{float(value):g}"
    raise ValueError(f"kind must be 'literal' or 'kick', got {kind!r}")


def width3_target() -> tuple[MLP, Tensor]:
    """The width-3 global minimum: the target itself, w = (1, 1, 1), b = (7, 0, -7), a = (1, 1, 1), R_S = 0.

    The Fig. 1 target y = tanh(x+7) + tanh(x) + tanh(x-7) is a 1-3-1 tanh net without output bias, so the
    width-3 net interpolates the data exactly (the digest's multi-start BFGS also finds R_S = 0 at width 3).
    """
    net = MLP((1, 3, 1), "tanh", output_bias=False)
    return net, torch.tensor([1.0, 1.0, 1.0, 7.0, 0.0, -7.0, 1.0, 1.0, 1.0], dtype=torch.float64)


# ----------------------------------------------------------------------------- the runs
def _setup(config: dict) -> tuple[MLP, Tensor, Tensor, torch.dtype]:
    x, y = data.fig1_data()
    net = MLP((1, int(config["width"]), 1), config["activation"], output_bias=False)
    if config["dtype"] not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {config['dtype']!r}")
    return net, x, y, _DTYPES[config["dtype"]]


def _initial(net: MLP, config: dict) -> Tensor:
    """theta0 (R, P): seed s draws its own N(0, std^2) vector, so a run does not depend on the batch."""
    std = float(config["width"]) ** -float(config["init_std_power"])
    return torch.stack([net.init(int(s), std) for s in config["seeds"]])


def _kicked(net: MLP, theta: Tensor, stds, seed: int) -> Tensor:
    """Copies of theta (P,) with N(0, std^2) added to every hidden bias b^[1] (one normal vector, scaled)."""
    b = net.layer_slices[0][1]
    z = torch.randn(b.stop - b.start, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    out = theta.to(torch.float64).repeat(len(stds), 1)
    for r, std in enumerate(stds):
        out[r, b] += float(std) * z
    return out


def _schedules(config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log steps, snapshot steps, curvature steps): log-spaced, plus the last two steps and the kick epoch."""
    S = int(config["steps"])
    extra = [s for s in (S - 1, S) if s >= 0]
    if config["kick_stds"]:
        extra.append(int(config["kick_epoch"]))
    logs = np.union1d(log_schedule(S, int(config["log_per_decade"])), extra)
    snaps = np.union1d(log_schedule(S, int(config["snapshots_per_decade"])), extra)
    curv = np.intersect1d(np.union1d(log_schedule(S, int(config["curvature_per_decade"])), extra), snaps)
    return logs, snaps, curv


def _measures(net: MLP, land: Landscape, x: Tensor, snaps: dict[int, Tensor], curv_steps) -> dict:
    """Symmetry measures at every snapshot and Hessian-sector curvatures at ``curv_steps`` (float64)."""
    steps = np.array(sorted(snaps), dtype=np.int64)
    thetas = torch.stack([snaps[s].to(torch.float64) for s in steps])
    out = {"snap_steps": steps, "snap_loss": land.risk(thetas).numpy(),
           "odd_distance": symmetry.odd_distance(net, thetas).numpy(),
           "bias_ratio": symmetry.bias_ratio(net, thetas).numpy(),
           "even_part": symmetry.even_part(net, thetas, x).numpy()}
    cs = np.array([s for s in steps if s in set(int(c) for c in curv_steps)], dtype=np.int64)
    curv = [symmetry.sector_curvature(land, snaps[int(s)].to(torch.float64)) for s in cs]
    out["curvature"] = {"steps": cs, **{f: np.array([getattr(c, f) for c in curv])
                                       for f in ("bias_min", "bias_max", "sharpness", "cross")}}
    return out


def _record(net, land, x, steps, loss, grad_norm, snaps: dict[int, Tensor], curv_steps, keep: bool) -> dict:
    S = max(snaps)
    rec = {"steps": steps, "loss": loss, "grad_norm": grad_norm, "theta_final": snaps[S].double().numpy(),
           "theta_before_final": snaps[S - 1].double().numpy(), **_measures(net, land, x, snaps, curv_steps)}
    if keep:
        rec["snapshots"] = np.stack([snaps[s].double().numpy() for s in sorted(snaps)])
    return rec


def _protocol(config: dict) -> dict:
    """The literal runs (batched) and the kicked continuations of the first seed; see the module docstring."""
    start = time.perf_counter()
    net, x, y, dtype = _setup(config)
    land = Landscape(net, x, y)
    logs, snaps, curv = _schedules(config)
    S, lr, dev = int(config["steps"]), float(config["lr"]), config["device"]
    res = train(net, x, y, _initial(net, config), lr=lr, steps=S, log_points=logs, snapshot_steps=snaps,
                device=dev, dtype=dtype)
    runs = {}
    for r, seed in enumerate(config["seeds"]):
        runs[run_label("literal", seed)] = _record(net, land, x, res.steps, res.loss[:, r], res.grad_norm[:, r],
                                                   {s: t[r] for s, t in res.snapshots.items()}, curv, keep=r == 0)
    K, stds = int(config["kick_epoch"]), list(config["kick_stds"])
    if stds:
        theta_k = _kicked(net, res.snapshots[K][0], stds, config["kick_seed"]).to(dtype)
        after = lambda a: a[a >= K] - K  # noqa: E731  (global steps -> steps after the kick)
        res2 = train(net, x, y, theta_k, lr=lr, steps=S - K, log_points=after(logs), snapshot_steps=after(snaps),
                     device=dev, dtype=dtype)
        pre = res.steps < K
        for r, std in enumerate(stds):
            sn = {s: t[0] for s, t in res.snapshots.items() if s < K}
            sn.update({s + K: t[r] for s, t in res2.snapshots.items()})
            runs[run_label("kick", std)] = _record(
                net, land, x, np.concatenate([res.steps[pre], res2.steps + K]),
                np.concatenate([res.loss[pre, 0], res2.loss[:, r]]),
                np.concatenate([res.grad_norm[pre, 0], res2.grad_norm[:, r]]), sn, curv, keep=True)
    out = {"runs": runs, "train_wall_time_s": np.float64(res.wall_time_s),
           "kick_train_wall_time_s": np.float64(res2.wall_time_s if stds else 0.0)}
    out["references"] = _references(x, y, config)
    out["wall_time_s"] = np.float64(time.perf_counter() - start)
    return out


def _references(x: Tensor, y: Tensor, config: dict) -> dict:
    """The narrow global minima of panels (b) and (c).

    Width 1: 8 GD runs of the 1-1-1 net under the paper's protocol (N(0, 1/m^3) = N(0, 1) init, lr 0.005,
    5x10^3 steps, seeds 0-7), the best one polished by ``find_critical_point`` to ||grad|| <= 1e-12.
    Width 3: :func:`width3_target` (the target itself; R_S = 0).
    """
    net1 = MLP((1, 1, 1), config["activation"], output_bias=False)
    gd = train(net1, x, y, torch.stack([net1.init(s, 1.0) for s in range(8)]), lr=float(config["lr"]), steps=5000,
               log_points=1)
    land1 = Landscape(net1, x, y)
    cp1 = find_critical_point(land1, gd.theta[int(np.argmin(gd.loss[-1]))], tol=1e-12)
    net3, theta3 = width3_target()
    land3 = Landscape(net3, x, y)
    return {"width1": {"theta": cp1.theta.numpy(), "loss": np.float64(cp1.risk), "grad_norm": np.float64(cp1.grad_norm),
                       "gd_losses": gd.loss[-1]},
            "width3": {"theta": theta3.numpy(), "loss": np.float64(land3.risk(theta3).item()),
                       "grad_norm": np.float64(land3.grad(theta3).norm().item())}}


# The code that shapes the stored numbers: this module's protocol functions (the decorated functions below only call
# _protocol), the training loop and its kernels, the Hessian, the critical-point solver, the data, and the symmetry
# measures used here (functions, not whole modules, so that editing the claims below or the effective-width helpers
# of symmetry.py, which only the notebook uses, does not invalidate these runs).
_DEPENDS = (_protocol, _setup, _initial, _kicked, _schedules, _measures, _record, _references, width3_target, run_label,
            training, backprop, network, losses, landscape, critical, data, symmetry.bias_indices,
            symmetry.odd_distance, symmetry.bias_ratio, symmetry.even_part, symmetry.sector_curvature)


@cache.experiment("fig1_two_stages", default_config=DEFAULT, depends=_DEPENDS)
def fig1_two_stages(config: dict) -> dict:
    """Paper A Fig. 1: the literal protocol (float64, several seeds) and bias-kicked copies of the first seed.

    Returns ``runs/<label>`` for labels ``literal_s<seed>`` and ``kick_<std>`` (see :func:`run_label`), each with
    ``steps``, ``loss``, ``grad_norm`` (log-spaced), ``snap_steps`` and the measures there (``snap_loss``,
    ``odd_distance``, ``bias_ratio``, ``even_part``), ``curvature/{steps, bias_min, bias_max, sharpness, cross}``,
    ``theta_final``, ``theta_before_final`` and, for the first seed and the kicked runs, ``snapshots``
    (len(snap_steps), P). A kicked run's curves are the first seed's before ``kick_epoch``; the entry at
    ``kick_epoch`` is just after the kick. Also returns ``references/{width1, width3}`` (narrow global minima)
    and the wall times.
    """
    return _protocol(config)


@cache.experiment("fig1_float32", default_config=FLOAT32, depends=_DEPENDS)
def fig1_float32(config: dict) -> dict:
    """Paper A Fig. 1, literal protocol in float32 (same results layout as ``fig1_two_stages``)."""
    return _protocol(config)


# ----------------------------------------------------------------------------- curve helpers
def first_step_below(steps, loss, level: float) -> int | None:
    """The first logged step with loss < level (None if never)."""
    hit = np.nonzero(np.asarray(loss) < level)[0]
    return int(np.asarray(steps)[hit[0]]) if hit.size else None


def nearest_index(steps, step: float) -> int:
    """Index of the entry of ``steps`` nearest to ``step`` on a log scale (step 0 counts as 1)."""
    steps = np.asarray(steps, dtype=np.float64)
    return int(np.argmin(np.abs(np.log(np.maximum(steps, 1.0) / max(float(step), 1.0)))))


def loss_at(steps, loss, step: float) -> float:
    """The logged loss at the logged step nearest to ``step`` on a log scale."""
    return float(np.asarray(loss)[nearest_index(steps, step)])


# ----------------------------------------------------------------------------- claims
def _status(ok: bool) -> str:
    return "pass" if ok else "deviation"


@claims
def fig1_claims() -> list[Claim]:
    """Every number of digest row A-Fig.1 (and paper B's "two stages") against the cached runs."""
    res = cache.run("fig1_two_stages")
    lit = res["runs"][run_label("literal", DEFAULT["seeds"][0])]
    kick = res["runs"][run_label("kick", DEFAULT["kick_stds"][0])]
    seeds = [res["runs"][run_label("literal", s)] for s in DEFAULT["seeds"]]
    steps, loss = lit["steps"], lit["loss"]
    ref = res["references"]
    x, y = data.fig1_data()
    net = MLP((1, DEFAULT["width"], 1), "tanh", output_bias=False)
    net1, net3 = MLP((1, 1, 1), "tanh", output_bias=False), width3_target()[0]
    plateau = torch.as_tensor(lit["snapshots"][nearest_index(lit["snap_steps"], DEFAULT["plateau_epoch"])])
    gap_b = (net.forward(plateau, x) - net1.forward(torch.as_tensor(ref["width1"]["theta"]), x)).abs().max().item()
    f3 = net3.forward(torch.as_tensor(ref["width3"]["theta"]), x)
    gap_c = (net.forward(torch.as_tensor(lit["theta_final"]), x) - f3).abs().max().item()
    gap_c_kick = (net.forward(torch.as_tensor(kick["theta_final"]), x) - f3).abs().max().item()
    drop = first_step_below(steps, loss, 1.0)
    span_start = first_step_below(steps, loss, 1.5 * PAPER["width1_loss"])
    left = [first_step_below(r["steps"], r["loss"], 0.8 * PAPER["width1_loss"]) for r in seeds]
    finals = [float(r["loss"][-1]) for r in seeds]
    kick_fall = first_step_below(kick["steps"], kick["loss"], 0.01)
    nb = NOTEBOOK
    out = [
        Claim("A-Fig1-initial-loss", "initial training loss (panel a)", "~5", float(loss[0]), "|ours - 5| <= 0.5",
              _status(abs(loss[0] - 5.0) <= 0.5), f"{nb}#fig1-literal"),
        Claim("A-Fig1-first-drop", "first drop of the loss (first epoch with loss < 1)", "near epoch 30-100",
              drop if drop is not None else "never", "within [30, 100]",
              _status(drop is not None and 30 <= drop <= 100), f"{nb}#fig1-literal"),
        Claim("A-Fig1-plateau-value", "loss on the plateau, at the blue dot (epoch ~5x10^3)", "~0.1",
              loss_at(steps, loss, PAPER["blue_dot_epoch"]), "|ours - 0.1| <= 0.02",
              _status(abs(loss_at(steps, loss, PAPER["blue_dot_epoch"]) - 0.1) <= 0.02), f"{nb}#fig1-literal"),
        Claim("A-Fig1-plateau-start", "the plateau begins (first epoch with loss < 1.5 x 0.109)", "about 10^2 epochs",
              span_start if span_start is not None else "never", "within [30, 10^3]",
              _status(span_start is not None and 30 <= span_start <= 1000), f"{nb}#fig1-literal"),
        Claim("A-Fig1-plateau-is-width1",
              "the plateau sits at the width-1 global minimum (plateau loss at the blue dot)",
              f"{PAPER['width1_loss']} (digest [I])", loss_at(steps, loss, PAPER["blue_dot_epoch"]),
              f"0 <= ours - R_1 <= 0.002, R_1 = {float(ref['width1']['loss']):.6f} (our width-1 minimum)",
              _status(0 <= loss_at(steps, loss, PAPER["blue_dot_epoch"]) - float(ref["width1"]["loss"]) <= 0.002),
              f"{nb}#fig1-panel-b"),
        Claim("A-Fig1-width1-minimum", "loss of the width-1 global minimum (panel b reference; digest [I])",
              f"{PAPER['width1_loss']}", float(ref["width1"]["loss"]), "|ours - 0.109023| <= 1e-6",
              _status(abs(float(ref["width1"]["loss"]) - PAPER["width1_loss"]) <= 1e-6), f"{nb}#fig1-panel-b"),
        Claim("A-Fig1-panel-b", "output at the plateau point = output of the width-1 global minimum",
              "curves coincide", gap_b, "max |f_plateau - f_1| on the data <= 0.05",
              _status(gap_b <= 0.05), f"{nb}#fig1-panel-b"),
        Claim("A-Fig1-plateau-end", "the loss leaves the plateau (drops below 0.8 x 0.109) by", "about 5x10^4 epochs",
              ", ".join("never" if s is None else str(s) for s in left), "every seed, by 10^5 epochs",
              _status(all(s is not None and s <= 1e5 for s in left)), f"{nb}#fig1-why"),
        Claim("A-Fig1-final-loss", "final loss (orange dot, 2-3x10^5 epochs)", "~2.5e-4",
              ", ".join(f"{v:.4g}" for v in finals), "within a factor 10 of 2.5e-4, every seed",
              _status(all(PAPER["final_loss"] / 10 <= v <= PAPER["final_loss"] * 10 for v in finals)),
              f"{nb}#fig1-why"),
        Claim("A-Fig1-fast-fall", "a fast fall of the loss after about 10^5 epochs (loss < 0.01 by)",
              "~10^5-2x10^5 epochs", f"literal: {'never' if first_step_below(steps, loss, 0.01) is None else 'yes'}; "
              f"with our bias kick: {kick_fall}", "literal protocol, epoch <= 3x10^5",
              _status(first_step_below(steps, loss, 0.01) is not None), f"{nb}#fig1-kick"),
        Claim("A-Fig1-width3-interpolates", "the width-3 global minimum interpolates the data (panel c reference)",
              "loss ~0", float(ref["width3"]["loss"]), "<= 1e-20", _status(float(ref["width3"]["loss"]) <= 1e-20),
              f"{nb}#fig1-panel-c"),
        Claim("A-Fig1-panel-c", "output at the end point = output of the width-3 global minimum", "curves coincide",
              f"literal: {gap_c:.3g}; kicked (ours): {gap_c_kick:.3g}", "max |f_end - f_3| on the data <= 0.05",
              _status(gap_c <= 0.05), f"{nb}#fig1-panel-c"),
        Claim("B-Fig4.3-two-stages", "paper B: the width-500 net \"experiences two stages\" (width-1 fit, then "
              "the width-3 interpolant)", "two stages",
              f"literal: stage 1 only (end {gap_c:.3g} from f_3); with our bias kick: end {gap_c_kick:.3g} from f_3",
              "both stages under the literal protocol", _status(gap_c <= 0.05 and gap_b <= 0.05), f"{nb}#fig1-why"),
    ]
    return out


# ----------------------------------------------------------------------------- consistency
@consistency_check
def fig1_consistency() -> list[Check]:
    """Prefix reruns against the cache: 2,000 literal steps (float64 and float32) and the kick plus 500 steps."""
    checks = []
    for name, config, tol in (("fig1_two_stages", DEFAULT, 1e-10), ("fig1_float32", FLOAT32, 1e-4)):
        res = cache.run(name)
        net, x, y, dtype = _setup(config)
        first = res["runs"][run_label("literal", config["seeds"][0])]
        n = 2000
        logs = first["steps"][first["steps"] <= n]
        got = train(net, x, y, _initial(net, {**config, "seeds": config["seeds"][:1]}), lr=config["lr"], steps=n,
                    log_points=logs, dtype=dtype, device="cpu")
        _, i_got, i_want = np.intersect1d(got.steps, first["steps"], return_indices=True)
        want = first["loss"][i_want]
        checks.append(Check(f"{name}: first {n} steps, relative error of the logged losses",
                            float(np.max(np.abs(got.loss[i_got, 0] - want) / want)), tol))
    res = cache.run("fig1_two_stages")
    K, extra = DEFAULT["kick_epoch"], 500
    net, x, y, dtype = _setup(DEFAULT)
    pre = train(net, x, y, _initial(net, {**DEFAULT, "seeds": DEFAULT["seeds"][:1]})[0], lr=DEFAULT["lr"], steps=K)
    kicked = _kicked(net, pre.theta, DEFAULT["kick_stds"], DEFAULT["kick_seed"])
    run = res["runs"][run_label("kick", DEFAULT["kick_stds"][0])]
    sel = (run["steps"] >= K) & (run["steps"] <= K + extra)
    got = train(net, x, y, kicked[0], lr=DEFAULT["lr"], steps=extra, log_points=run["steps"][sel] - K)
    _, i_got, i_want = np.intersect1d(got.steps + K, run["steps"], return_indices=True)
    checks.append(Check(f"fig1_two_stages: kick at epoch {K} plus {extra} steps, relative error of the logged losses",
                        float(np.max(np.abs(got.loss[i_got] - run["loss"][i_want]) / run["loss"][i_want])), 1e-10))
    return checks
