"""Training throughput of ``embedding_principle.training.train`` (CPU, float64, one thread).

(a) 200 independent runs of the width-3 net 1-3-1 (tanh, no output bias) on the Fig. 1 data,
    GD lr 0.005: trained as ONE batched computation vs a Python loop of single runs (a subset of
    the loop is timed and extrapolated to 200 runs). Target: batched >= 10x faster.
(b) 3x10^5 GD steps of the width-500 net of paper A Fig. 1 (1-500-1 tanh, no output bias,
    lr 0.005, init N(0, 500^-3)) on one core. Target: <= 60 s. The final loss is printed: the
    literal protocol stays on the plateau near 0.10-0.11 (digest sections 2c and 3.1: the odd
    data keep every hidden bias at 0, so GD ends near an odd-symmetric saddle, not the interpolant).

Usage: python benchmarks/bench_training.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from embedding_principle.data import fig1_data
from embedding_principle.network import MLP
from embedding_principle.training import train


def bench_batched(steps: int, runs: int = 200, loop_subset: int = 10) -> None:
    x, y = fig1_data()
    net = MLP((1, 3, 1), "tanh", output_bias=False)
    theta0 = net.init(0, 3 ** -1.5, runs=runs)
    batched = train(net, x, y, theta0, lr=0.005, steps=steps)
    start = time.perf_counter()
    singles = [train(net, x, y, theta0[r], lr=0.005, steps=steps) for r in range(loop_subset)]
    loop_subset_s = time.perf_counter() - start
    loop_s = loop_subset_s * runs / loop_subset
    diff = max(float((batched.theta[r] - s.theta).abs().max()) for r, s in enumerate(singles))
    print(f"(a) {runs} runs of 1-3-1 tanh, Fig. 1 data, GD lr 0.005, {steps} steps")
    print(f"    batched (one computation):   {batched.wall_time_s:8.2f} s  "
          f"({batched.wall_time_s / steps * 1e6:.0f} us per step for all runs)")
    print(f"    Python loop of single runs:  {loop_s:8.2f} s  (extrapolated: {loop_subset} of {runs} runs "
          f"timed, {loop_subset_s:.2f} s)")
    print(f"    speed-up: {loop_s / batched.wall_time_s:.1f}x (target >= 10x); "
          f"max |theta_batched - theta_single| = {diff:.1e}")


def bench_width500(steps: int) -> None:
    x, y = fig1_data()
    m = 500
    net = MLP((1, m, 1), "tanh", output_bias=False)
    res = train(net, x, y, net.init(0, m ** -1.5), lr=0.005, steps=steps)
    print(f"(b) 1-{m}-1 tanh (paper A Fig. 1), GD lr 0.005, init std {m}^-1.5, seed 0, {steps} steps, one thread")
    print(f"    wall time {res.wall_time_s:.1f} s ({res.wall_time_s / steps * 1e6:.0f} us per step; "
          f"target <= 60 s for 3e5 steps)")
    marks = [s for s in (0, 100, 1000, 10000, 100000, steps) if s <= steps]
    curve = ", ".join(f"{s}: {res.loss[list(res.steps).index(s)]:.6g}" for s in sorted(set(marks))
                      if s in set(res.steps.tolist()))
    print(f"    loss at steps {{{curve}}}")
    print(f"    final loss {res.loss[-1]:.6g}, final |grad| {res.grad_norm[-1]:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100x fewer steps (a smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scale = 100 if args.quick else 1
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads = 1, float64\n")
    bench_batched(20_000 // scale)
    print()
    bench_width500(300_000 // scale)


if __name__ == "__main__":
    main()
