"""Benchmark: Landscape.hessian against a naive per-parameter double-backward loop at P ~ 2,000.

Run:  python benchmarks/bench_hessian.py

Single-threaded (torch.set_num_threads(1)) so that the numbers compare implementations, not core counts.
For each net (tanh, n = 100 samples, MSE) it prints P, the time of ``Landscape.hessian`` (the default,
structured A^T G A + C assembly) and of ``method="autodiff"`` (vmap of torch.func HVPs), the time of the naive
loop (one ``torch.autograd.grad`` of the gradient entry i per parameter i, retain_graph=True), the ratio naive /
structured, and the max abs difference between the structured and the naive Hessians.
"""

from __future__ import annotations

import time

import torch

from embedding_principle.landscape import Landscape
from embedding_principle.network import MLP

NETS = [(1, 42, 42, 1), (5, 40, 40, 1), (1, 660, 1)]
N_SAMPLES = 100


def best_time(fn, repeat: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def naive_hessian(ls: Landscape, theta: torch.Tensor) -> torch.Tensor:
    """Row i = d/dtheta of (nabla R_S)_i by reverse mode, one double-backward call per parameter."""
    t = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ls.risk(t), t, create_graph=True)
    return torch.stack([torch.autograd.grad(g[i], t, retain_graph=True)[0] for i in range(t.numel())])


def problem(widths: tuple[int, ...]) -> tuple[Landscape, torch.Tensor]:
    net = MLP(widths, "tanh")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_SAMPLES, widths[0], generator=gen, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True)).repeat(1, widths[-1])
    return Landscape(net, x, y), net.init(1, 0.3)


def main() -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, torch.set_num_threads(1), float64, tanh, MSE, n = {N_SAMPLES}")
    print(f"{'net':>12} {'P':>5} {'structured s':>13} {'autodiff s':>11} {'naive s':>8} {'naive/struct':>13} "
          f"{'max|H - H_naive|':>17}")
    for widths in NETS:
        ls, theta = problem(widths)
        ls.hessian(theta), ls.hessian(theta, method="autodiff")  # warm-up
        t_s, h = best_time(lambda: ls.hessian(theta), 5)
        t_a, _ = best_time(lambda: ls.hessian(theta, method="autodiff"), 2)
        t_n, h_naive = best_time(lambda: naive_hessian(ls, theta), 2)
        diff = (h - h_naive).abs().max().item()
        print(f"{'-'.join(map(str, widths)):>12} {theta.numel():>5} {t_s:>13.4f} {t_a:>11.3f} {t_n:>8.3f} "
              f"{t_n / t_s:>12.1f}x {diff:>17.2e}")


if __name__ == "__main__":
    main()
