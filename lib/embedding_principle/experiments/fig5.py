"""Paper A, Fig. 5: reducing a width-400 two-layer ReLU network trained on MNIST at a plateau.

Paper A (section 3.2, Fig. 5; App. B) trains a 784-400-10 ReLU network f_theta(x) = sum_k a_k sigma(w_k . x~),
x~ = [x; 1] (hidden bias, no output bias), on 1000 MNIST training images with the MSE loss, full-batch Adam
(lr 3e-5, 10^5 epochs) from N(0, 1/m^6), i.e. std m^-3. At a point on a loss plateau (near epoch 5000) it
(a) marks the point on the loss curve, (b) shows the cosine-similarity matrix of the input weights
u_k = (w_k, b_k): groups of similarity >= 0.9, low-amplitude neurons dropped, 58 groups, (c) merges each
group into one neuron with output weight sum_k a_k ||u_k|| / ||u_j|| (ReLU homogeneity) and retrains the
width-58 network from that reduced point with the same optimizer: it stalls at the wide network's loss
(~6.4e-4) and then drops near epoch 250 (~5.3e-4), and (d) reports that the wide and the reduced network
agree on 98.5% of the 10,000 test images. The reading: the wide network sits near a critical point embedded
from a narrow network (paper A's embedding principle), which the reduction undoes.

Our protocol (the notebook ``notebooks/14_fig5_mnist`` states every difference):

* data: :func:`embedding_principle.data.mnist` -- 1000 training images drawn from the offline
  5,000-image subset, the other 4,000 as held-out images (the paper tests on the 10,000 official ones);
  pixels / 255 (``scale="unit"``) or the torchvision-standardised (x - 0.1307) / 0.3081 (``"standard"``);
* loss: ``"mse"`` = mean_{i,c} (f_c(x_i) - y_ic)^2 on one-hot targets (the paper's words), or
  ``"softmax_mse"`` = the same on softmax(f) (:data:`SOFTMAX_MSE`), the MSE as the authors' group applies
  it in its public training code (``F.softmax(model(x))`` then ``MSELoss``; see the notebook);
* the wide run: 6,000 epochs in float32 on the CPU (10^5 epochs do not fit the book's budget; the
  configuration ``{"steps": 100000, "device": "cuda"}`` runs the full length on a GPU);
* the reduction: :func:`embedding_principle.reduction.reduce` with ``similarity="cosine"``,
  ``threshold=0.9`` and ``amplitude_tol=1e-3``; it keeps the lowest-index neuron of each group, the paper a
  random one;
* beyond the paper: the effective width (number of groups) along the training trajectory.
"""

from __future__ import annotations

import importlib
import time

import numpy as np
import torch
from torch import Tensor

from .. import cache, data, losses, network, reduction, training
from ..backprop import risk_and_grad
from ..condensation import _two_layer, amplitudes, first_drop, group_labels, plateau_ratio, prediction_pairs
from ..losses import Loss
from ..network import MLP
from ..reduction import reduce
from . import Check, Claim, claims, consistency_check

backprop = importlib.import_module("embedding_principle.backprop")   # the module (the package exports a function of that name)

__all__ = ["SOFTMAX_MSE", "LOSSES", "PAPER", "PROTOCOLS", "MNIST_MEAN", "MNIST_STD", "mnist_inputs", "setup", "results",
           "measures", "fig5_mnist_training", "fig5_mnist_reduction", "fig5_mnist_reduction_softmax", "fig5_claims",
           "fig5_consistency"]

NOTEBOOK = "notebooks/14_fig5_mnist"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
"""torchvision's MNIST normalisation constants (``transforms.Normalize((0.1307,), (0.3081,))``)."""

PAPER = {"groups": 58, "agreement": 0.985, "initial_loss": 1e-1, "loss_4000": 6e-4, "chosen_step": 5000,
         "chosen_loss": 6.4e-4, "low_amplitude": 110, "stall_loss": 6.4e-4, "drop_step": 250, "drop_loss": 5.3e-4}
"""Paper A Fig. 5 numbers (digest section 3.1, row A-Fig.5): [V] groups and agreement, the rest read off the figure."""


def _softmax_mse_value(f: Tensor, y: Tensor) -> Tensor:
    return (torch.softmax(f, dim=-1) - y).square().mean(-1)


def _softmax_mse_grad(f: Tensor, y: Tensor) -> Tensor:
    # l = (1/d) ||p - y||^2 with p = softmax(f);  dl/df = J_p^T (2/d)(p - y),  J_p = diag(p) - p p^T
    p = torch.softmax(f, dim=-1)
    r = p - y
    return (2.0 / f.shape[-1]) * p * (r - (p * r).sum(-1, keepdim=True))


SOFTMAX_MSE = Loss("softmax_mse", _softmax_mse_value, _softmax_mse_grad)
"""l(f, y) = (1/d') ||softmax(f) - y||^2: ``torch.nn.MSELoss()`` applied to softmax outputs (closed-form gradient)."""

LOSSES = {"mse": "mse", "softmax_mse": SOFTMAX_MSE}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------------------- setup
def mnist_inputs(x: Tensor, scale: str) -> Tensor:
    """Pixels / 255 as loaded (``"unit"``), or standardised with torchvision's MNIST constants (``"standard"``)."""
    if scale == "unit":
        return x
    if scale == "standard":
        return (x - MNIST_MEAN) / MNIST_STD
    raise ValueError(f"scale must be 'unit' or 'standard', got {scale!r}")


def setup(config: dict) -> tuple[MLP, Tensor, Tensor, Tensor, Tensor]:
    """The network d-m-10 (ReLU, hidden bias, no output bias) and (x_train, y_train, x_test, labels_test)."""
    if config["loss"] not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {config['loss']!r}")
    split = data.mnist(n_train=config["n_train"], seed=config["data_seed"])
    x_train, x_test = (mnist_inputs(x, config["scale"]) for x in (split.x_train, split.x_test))
    net = MLP((x_train.shape[1], config["width"], 10), "relu", output_bias=False)
    return net, x_train, split.y_train, x_test, split.y_test.argmax(1)


def _log_steps(steps: int, every: int, extra) -> np.ndarray:
    return np.unique(np.concatenate([training.log_schedule(steps, 20), np.arange(0, steps + 1, every),
                                     np.asarray(list(extra), dtype=np.int64)])).astype(np.int64)


def _risk(net: MLP, theta, x, y, loss: str) -> float:
    return float(risk_and_grad(net, torch.as_tensor(theta).to(torch.float64), x, y, LOSSES[loss])[0])


# ----------------------------------------------------------------------------- experiments
TRAINING_DEFAULT = {
    "width": 400, "n_train": 1000, "data_seed": 0, "scale": "unit", "loss": "mse",
    "init_seed": 0, "init_std_power": 3.0, "lr": 3e-5, "steps": 6000, "chosen_step": 5000, "log_every": 20,
    "trajectory_steps": [10, 30, 100, 300, 1000, 2000, 3000, 4000, 5000, 6000, 10000, 30000, 100000],
    "threshold": 0.9, "amplitude_tol": 1e-3, "dtype": "float32", "device": "cpu",
}


# ``depends``: the modules and helpers that shape the stored numbers. ``embeddings`` is left out on purpose:
# reduce() builds the embedding back with it, but no stored result depends on that embedding.
@cache.experiment("fig5_mnist_training", default_config=TRAINING_DEFAULT,
                  depends=(training, backprop, network, losses, data, reduction, amplitudes, _two_layer, setup,
                           mnist_inputs, _softmax_mse_value, _softmax_mse_grad, _log_steps))
def fig5_mnist_training(config: dict) -> dict:
    """The wide run of paper A Fig. 5(a): full-batch Adam on 1000 MNIST images, with the effective width
    (number of cosine groups, our addition) at the ``trajectory_steps`` that are <= ``steps``.

    Returns ``curve`` (steps, loss, grad_norm on a log + every-``log_every`` schedule), ``chosen`` (the
    parameters at ``chosen_step``, float32, and their loss), ``trajectory`` (steps, effective width,
    number of low-amplitude neurons, loss, max |f_wide - f_reduced| on the training images) and wall times.
    """
    start = time.perf_counter()
    steps, chosen = config["steps"], config["chosen_step"]
    if not 0 <= chosen <= steps:
        raise ValueError(f"chosen_step must lie in [0, steps = {steps}], got {chosen}")
    net, x, y, _, _ = setup(config)
    theta0 = net.init(config["init_seed"], std=float(config["width"]) ** -config["init_std_power"])
    traj = sorted({int(s) for s in config["trajectory_steps"] if s <= steps})
    res = training.train(net, x, y, theta0, loss=LOSSES[config["loss"]], optimizer="adam", lr=config["lr"],
                         steps=steps, log_points=_log_steps(steps, config["log_every"], traj + [chosen]),
                         snapshot_steps=sorted(set(traj) | {chosen}), device=config["device"],
                         dtype=_DTYPES[config["dtype"]], seed=config["init_seed"])
    width, low, out_err = [], [], []
    for s in traj:
        theta = res.snapshots[s].to(torch.float64)
        red = reduce(net, theta, x=x, similarity="cosine", threshold=config["threshold"],
                     amplitude_tol=config["amplitude_tol"])
        amp = amplitudes(net, theta)
        width.append(red.net.widths[1])
        low.append(int((amp < config["amplitude_tol"] * amp.max()).sum()))
        out_err.append(red.output_error)
    at = lambda s: res.loss[np.searchsorted(res.steps, s)]                      # noqa: E731
    return {"curve": {"steps": res.steps, "loss": res.loss, "grad_norm": res.grad_norm},
            "chosen": {"step": chosen, "theta": res.snapshots[chosen].numpy().astype(np.float32),
                       "loss": at(chosen)},
            "trajectory": {"steps": np.asarray(traj, dtype=np.int64), "width": np.asarray(width),
                           "low_amplitude": np.asarray(low), "loss": np.asarray([at(s) for s in traj]),
                           "output_error": np.asarray(out_err)},
            "train_wall_time_s": res.wall_time_s, "wall_time_s": time.perf_counter() - start}


REDUCTION_DEFAULT = {"training": {}, "retrain_steps": 1000, "retrain_log_every": 5,
                     "thresholds": [0.7, 0.8, 0.9, 0.95, 0.99]}


_REDUCTION_DEPENDS = (fig5_mnist_training, training, backprop, network, losses, data, reduction, amplitudes,
                      _two_layer, group_labels, prediction_pairs, setup, mnist_inputs, _softmax_mse_value,
                      _softmax_mse_grad, _risk)


@cache.experiment("fig5_mnist_reduction", default_config=REDUCTION_DEFAULT, depends=_REDUCTION_DEPENDS)
def fig5_mnist_reduction(config: dict) -> dict:
    """Paper A Fig. 5(b-d) at the chosen point of the cached wide run ``fig5_mnist_training(training)``.

    Reduces the wide network with ``reduce(similarity="cosine")`` (the training config's threshold and
    amplitude_tol), retrains the reduced network from theta_redu with the same optimizer (fresh Adam state,
    same lr, loss, dtype) for ``retrain_steps`` epochs, compares the predictions of the wide and the reduced
    network on the held-out images, and counts the groups for other ``thresholds``. (The amplitude cut needs
    no sweep: the stored amplitudes show the gap that any cut inside gives the same groups.)
    """
    tcfg = cache.lookup("fig5_mnist_training").resolve(config["training"])
    wide = cache.run("fig5_mnist_training", config["training"])
    start = time.perf_counter()                                  # this experiment's own time, without the wide run
    net, x, y, x_test, labels_test = setup(tcfg)
    theta = torch.as_tensor(wide["chosen"]["theta"]).to(torch.float64)
    red = reduce(net, theta, x=x, similarity="cosine", threshold=tcfg["threshold"],
                 amplitude_tol=tcfg["amplitude_tol"])
    pred_wide, pred_red = (n.forward(t, x_test).argmax(1).numpy() for n, t in ((net, theta), (red.net, red.theta)))
    agreement, pairs = prediction_pairs(pred_wide, pred_red, 10)
    steps = config["retrain_steps"]
    retrain = training.train(red.net, x, y, red.theta, loss=LOSSES[tcfg["loss"]], optimizer="adam", lr=tcfg["lr"],
                             steps=steps, log_points=np.arange(0, steps + 1, config["retrain_log_every"]),
                             device=tcfg["device"], dtype=_DTYPES[tcfg["dtype"]])
    by_threshold = [red.net.widths[1] if t == tcfg["threshold"] else
                    reduce(net, theta, x=x, similarity="cosine", threshold=t,
                           amplitude_tol=tcfg["amplitude_tol"]).net.widths[1] for t in config["thresholds"]]
    acc = lambda p: float((p == labels_test.numpy()).mean())                     # noqa: E731
    return {"width": red.net.widths[1], "labels": group_labels(red.groups[0], net.widths[1]),
            "amplitude": amplitudes(net, theta).numpy(),
            "loss_wide": _risk(net, theta, x, y, tcfg["loss"]), "loss_reduced": _risk(red.net, red.theta, x, y, tcfg["loss"]),
            "output_error": red.output_error, "agreement": agreement, "pairs": pairs,
            "test_accuracy_wide": acc(pred_wide), "test_accuracy_reduced": acc(pred_red), "n_test": len(pred_wide),
            "retrain": {"steps": retrain.steps, "loss": retrain.loss, "wall_time_s": retrain.wall_time_s},
            "sweep": {"thresholds": np.asarray(config["thresholds"]), "width_by_threshold": np.asarray(by_threshold)},
            "wall_time_s": time.perf_counter() - start}


@cache.experiment("fig5_mnist_reduction_softmax",
                  default_config={**REDUCTION_DEFAULT, "training": {"loss": "softmax_mse"}},
                  depends=(fig5_mnist_reduction, *_REDUCTION_DEPENDS))
def fig5_mnist_reduction_softmax(config: dict) -> dict:
    """:func:`fig5_mnist_reduction` with the softmax reading of the loss as its default configuration, so
    that regenerating the default configurations (``make data``) recomputes both readings."""
    return fig5_mnist_reduction(config)


# ----------------------------------------------------------------------------- claims and checks
PROTOCOLS = {"mse": "fig5_mnist_reduction", "softmax_mse": "fig5_mnist_reduction_softmax"}
"""The two readings of the paper's loss: the experiment holding each one's reduction (its default configuration)."""


def results(protocol: str) -> tuple[dict, dict, dict]:
    """(training config, cached wide run, cached reduction) of one protocol (a key of ``PROTOCOLS``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    name = PROTOCOLS[protocol]
    overrides = cache.lookup(name).resolve(None)["training"]
    return (cache.lookup("fig5_mnist_training").resolve(overrides), cache.run("fig5_mnist_training", overrides),
            cache.run(name))

DROP_WINDOW, DROP_RATIO = 25, 1.1
"""The retraining drop of Fig. 5(c) (:func:`first_drop`): the first place where the loss falls by >= 10% in 50 epochs."""


def measures(protocol: str) -> dict:
    """The numbers of paper A Fig. 5 measured on the cached results of one protocol (``PROTOCOLS``)."""
    tcfg, wide, red = results(protocol)
    curve, chosen = wide["curve"], int(wide["chosen"]["step"])
    loss_at = lambda s: float(curve["loss"][np.searchsorted(curve["steps"], s)])   # noqa: E731
    amp = red["amplitude"]
    tol = tcfg["amplitude_tol"]
    drop_step, drop_ratio = first_drop(red["retrain"]["steps"], red["retrain"]["loss"], DROP_WINDOW, DROP_RATIO)
    r_steps, r_loss = red["retrain"]["steps"], red["retrain"]["loss"]
    interp = lambda s: float(np.exp(np.interp(s, r_steps, np.log(r_loss))))      # noqa: E731
    return {"initial_loss": loss_at(0), "loss_4000": loss_at(4000), "chosen_step": chosen,
            "chosen_loss": float(wide["chosen"]["loss"]),
            "plateau_ratio": plateau_ratio(curve["steps"], curve["loss"], chosen, 500),
            "low_amplitude": int((amp < tol * amp.max()).sum()), "groups": int(red["width"]),
            "agreement": float(red["agreement"]), "drop_step": drop_step, "drop_ratio": drop_ratio,
            "stall_loss": interp(drop_step - DROP_WINDOW), "drop_loss": interp(drop_step + DROP_WINDOW),
            "loss_reduced_start": float(red["loss_reduced"]), "loss_wide": float(red["loss_wide"])}


def _status(ok: bool) -> str:
    return "pass" if ok else "deviation"


def _within(ours: float, paper: float, factor: float) -> bool:
    return paper / factor <= ours <= paper * factor


@claims
def fig5_claims() -> list[Claim]:
    """Every number of digest row A-Fig.5, for both readings of the loss (plain MSE and MSE on softmax)."""
    out: list[Claim] = []
    for protocol, tag in (("mse", "mse"), ("softmax_mse", "softmax")):
        m = measures(protocol)
        link = f"{NOTEBOOK}#claims"
        name = "plain MSE" if protocol == "mse" else "MSE on softmax outputs"
        rows = [
            ("initial-loss", "(a) initial training loss ~1e-1", "~1e-1", m["initial_loss"], "within a factor 1.5",
             _within(m["initial_loss"], PAPER["initial_loss"], 1.5)),
            ("loss-4000", "(a) loss has fallen to ~6e-4 by epoch ~4000", "~6e-4", m["loss_4000"],
             "loss at epoch 4000 within a factor 2", _within(m["loss_4000"], PAPER["loss_4000"], 2)),
            ("chosen-loss", "(a) chosen point near epoch 5000 at ~6.4e-4", "6.4e-4", m["chosen_loss"],
             "loss at epoch 5000 within a factor 1.5", _within(m["chosen_loss"], PAPER["chosen_loss"], 1.5)),
            ("plateau", "(a) the chosen point lies on a plateau",
             "flat near epoch 5000", m["plateau_ratio"], "L(4500)/L(5500) <= 2", m["plateau_ratio"] <= 2),
            ("low-amplitude", "(b) low-amplitude neurons dropped (about the last 110 of 400 sorted indices)", "~110",
             m["low_amplitude"], "|ours - 110| <= 30", abs(m["low_amplitude"] - PAPER["low_amplitude"]) <= 30),
            ("groups", "(b) number of groups at cosine similarity >= 0.9 (width 400 -> 58)", "58", m["groups"],
             "within a factor 2", _within(m["groups"], PAPER["groups"], 2)),
            ("stall-loss", "(c) the retrained reduced net stalls at the wide net's ~6.4e-4", "6.4e-4",
             m["stall_loss"], f"loss {DROP_WINDOW} epochs before the drop within a factor 1.5",
             _within(m["stall_loss"], PAPER["stall_loss"], 1.5)),
            ("drop-epoch", "(c) the reduced net's loss drops near epoch 250", "~250", m["drop_step"],
             "|ours - 250| <= 100 epochs and a drop of >= 10% within 50 epochs",
             abs(m["drop_step"] - PAPER["drop_step"]) <= 100 and m["drop_ratio"] >= DROP_RATIO),
            ("drop-loss", "(c) level after the drop ~5.3e-4", "5.3e-4", m["drop_loss"],
             f"loss {DROP_WINDOW} epochs after the drop within a factor 1.5",
             _within(m["drop_loss"], PAPER["drop_loss"], 1.5)),
            ("agreement", "(d) prediction agreement of the wide and the reduced net on held-out images",
             "98.5%", 100 * m["agreement"], "|ours - 98.5| <= 1 percentage point (4,000 images, paper 10,000)",
             abs(100 * m["agreement"] - 100 * PAPER["agreement"]) <= 1),
        ]
        out += [Claim(f"A-Fig5-{key}-{tag}", f"{text} [{name}]", paper, ours, tol, _status(ok), link)
                for key, text, paper, ours, tol, ok in rows]
    return out


def _relative(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want) / np.abs(want)))


@consistency_check
def fig5_consistency() -> list[Check]:
    """Rerun short prefixes (float32, so tolerances are relative 1e-4) and the reduction (float64, exact)."""
    checks: list[Check] = []
    for protocol in PROTOCOLS:
        tcfg, wide, red_cached = results(protocol)
        net, x, y, _, _ = setup(tcfg)
        theta0 = net.init(tcfg["init_seed"], std=float(tcfg["width"]) ** -tcfg["init_std_power"])
        cached_steps = wide["curve"]["steps"]
        prefix = cached_steps[cached_steps <= 100]
        res = training.train(net, x, y, theta0, loss=LOSSES[tcfg["loss"]], optimizer="adam", lr=tcfg["lr"],
                             steps=100, log_points=prefix, dtype=_DTYPES[tcfg["dtype"]])
        checks.append(Check(f"fig5 {protocol}: first 100 epochs, logged losses (relative)",
                            _relative(res.loss, wide["curve"]["loss"][: prefix.size]), 1e-4))
        theta = torch.as_tensor(wide["chosen"]["theta"]).to(torch.float64)
        red = reduce(net, theta, x=x, similarity="cosine", threshold=tcfg["threshold"],
                     amplitude_tol=tcfg["amplitude_tol"])
        labels = group_labels(red.groups[0], net.widths[1])
        checks.append(Check(f"fig5 {protocol}: groups of the reduction (mismatched labels)",
                            float((labels != red_cached["labels"]).sum()), 0.0))
        checks.append(Check(f"fig5 {protocol}: loss of theta_redu (relative)",
                            _relative(_risk(red.net, red.theta, x, y, tcfg["loss"]), red_cached["loss_reduced"]), 1e-10))
        r = training.train(red.net, x, y, red.theta, loss=LOSSES[tcfg["loss"]], optimizer="adam", lr=tcfg["lr"],
                           steps=20, log_points=red_cached["retrain"]["steps"][:5], dtype=_DTYPES[tcfg["dtype"]])
        checks.append(Check(f"fig5 {protocol}: first 20 retraining epochs (relative)",
                            _relative(r.loss, red_cached["retrain"]["loss"][:5]), 1e-4))
    return checks
