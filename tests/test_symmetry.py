"""embedding_principle.symmetry: the reflection rho, symmetry measures, Hessian sectors, share splits, condensation.

References: forward passes at -x (f_{rho theta}(x) = -f_theta(-x)), autograd gradients and torch.func Hessians,
closed forms for the bias block at a split width-1 point, loops written out by hand, and bad inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import hessian

from embedding_principle import symmetry as sym
from embedding_principle.critical import find_critical_point
from embedding_principle.data import fig1_data
from embedding_principle.embeddings import splitting
from embedding_principle.landscape import Landscape
from embedding_principle.network import ACTIVATIONS, MLP

D = torch.float64


@pytest.fixture(scope="module")
def fig1():
    return fig1_data()


@pytest.fixture(scope="module")
def width1_min(fig1):
    x, y = fig1
    net = MLP((1, 1, 1), "tanh", output_bias=False)
    cp = find_critical_point(Landscape(net, x, y), torch.tensor([0.09, 0.0, 3.7], dtype=D), tol=1e-12)
    return net, cp.theta


def autograd_grad(net, theta, x, y):
    t = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(((net.forward(t, x) - y) ** 2).mean(), t)
    return g


def test_is_odd():
    assert sym.is_odd(ACTIVATIONS["tanh"]) and sym.is_odd(ACTIVATIONS["identity"])
    assert not sym.is_odd(ACTIVATIONS["sigmoid"]) and not sym.is_odd(ACTIVATIONS["relu"])
    with pytest.raises(TypeError):
        sym.is_odd(torch.tanh)


@pytest.mark.parametrize("net", [MLP((1, 4, 1), "tanh", output_bias=False), MLP((2, 3, 4, 2), "tanh")], ids=repr)
def test_reflection_mirrors_the_function(net):
    theta = net.init(3, 0.8)
    x = torch.randn(17, net.widths[0], generator=torch.Generator().manual_seed(1), dtype=D)
    rho = sym.reflect(net, theta)
    torch.testing.assert_close(net.forward(rho, x), -net.forward(theta, -x), rtol=0, atol=1e-14)
    torch.testing.assert_close(sym.reflect(net, rho), theta, rtol=0, atol=0)
    names = net.param_names()
    flipped = [n for n, a, b in zip(names, theta, rho) if a != b]
    assert flipped and all(n.startswith("b[") for n in flipped)       # only biases change
    assert sym.bias_indices(net).tolist() == [i for i, n in enumerate(names) if n.startswith("b[")]


def test_fix_rho_is_invariant_on_the_fig1_data(fig1):
    """Odd data + odd sigma: R_S(rho theta) = R_S(theta), and at b = 0 the bias gradient vanishes (autograd)."""
    x, y = fig1
    net = MLP((1, 6, 1), "tanh", output_bias=False)
    land = Landscape(net, x, y)
    theta = net.init(0, 0.5)
    assert land.risk(sym.reflect(net, theta)).item() == pytest.approx(land.risk(theta).item(), rel=1e-14)
    theta[sym.bias_indices(net)] = 0.0
    g = autograd_grad(net, theta, x, y)
    assert g[sym.bias_indices(net)].abs().max() <= 1e-15 < g.abs().max()


def test_measures_against_hand_loops(fig1):
    x, _ = fig1
    net = MLP((1, 5, 1), "tanh", output_bias=False)
    thetas = net.init(2, 0.4, runs=3)
    W, b = thetas[:, :5], thetas[:, 5:10]
    for r in range(3):
        assert sym.odd_distance(net, thetas)[r].item() == pytest.approx(math.sqrt(sum(v * v for v in b[r].tolist())))
        ratio = max(abs(v) for v in b[r].tolist()) / (sum(abs(v) for v in W[r].tolist()) / 5)
        assert sym.bias_ratio(net, thetas)[r].item() == pytest.approx(ratio, rel=1e-14)
        f = lambda s: sum(a * math.tanh(w * s + c) for w, c, a in zip(*thetas[r].view(3, 5).tolist()))  # noqa: E731
        even = math.sqrt(sum(((f(s) + f(-s)) / 2) ** 2 for s in x[:, 0].tolist()) / len(x))
        assert sym.even_part(net, thetas, x)[r].item() == pytest.approx(even, rel=1e-12)
    odd = thetas.clone()
    odd[:, 5:10] = 0
    assert sym.odd_distance(net, odd).abs().max() == 0 and sym.even_part(net, odd, x).abs().max() <= 1e-15
    assert sym.odd_distance(net, thetas[0]).ndim == 0


def autodiff_hessian(net, theta, x, y):
    return hessian(lambda t: ((net.forward(t, x) - y) ** 2).mean())(theta)


@pytest.mark.parametrize("m", [4, 34])   # P = 12 (dense eigvalsh) and P = 102 (LOBPCG for the top eigenvalue)
def test_sector_curvature_against_autodiff_hessian(fig1, m):
    x, y = fig1
    net = MLP((1, m, 1), "tanh", output_bias=False)
    land = Landscape(net, x, y)
    theta = net.init(1, 0.3)
    H = autodiff_hessian(net, theta, x, y)
    bi = sym.bias_indices(net)
    c = sym.sector_curvature(land, theta)
    lam_b = torch.linalg.eigvalsh(H[bi][:, bi])
    assert c.bias_min == pytest.approx(lam_b[0].item(), abs=1e-10)
    assert c.bias_max == pytest.approx(lam_b[-1].item(), abs=1e-10)
    assert c.sharpness == pytest.approx(torch.linalg.eigvalsh(H)[-1].item(), rel=1e-8)
    assert c.cross > 1e-6
    theta[bi] = 0.0                                     # on Fix(rho) the Hessian is block diagonal
    assert sym.sector_curvature(land, theta).cross <= 1e-14
    with pytest.raises(ValueError):
        sym.sector_curvature(land, net.init(0, 1.0, runs=2))
    with pytest.raises(TypeError):
        sym.sector_curvature(net, theta)


def test_bias_growth_exponent():
    steps = np.array([0, 10, 110, 1110])
    got = sym.bias_growth_exponent(steps, np.array([-0.1, 0.5, -0.01, -7.0]), lr=0.01)
    np.testing.assert_allclose(got, [0, 0.01 * 0.1 * 10, 0.01, 0.01 + 0.01 * 0.01 * 1000], rtol=1e-14)
    assert sym.bias_growth_exponent([5], [-1.0], 0.1).tolist() == [0.0]
    for bad in (([0, 0], [-1, -1], 0.1), ([0, 1], [-1], 0.1), ([0, 1], [-1, -1], 0.0), ([], [], 0.1)):
        with pytest.raises(ValueError):
            sym.bias_growth_exponent(*bad)


def test_share_split_is_critical_and_its_bias_block_has_the_closed_form(fig1, width1_min):
    """At T(theta_1) the bias block is 2 a^2 E[s^2] lam lam^T + 2 S_bb diag(lam), S_bb = a E[r sigma''(w x)]."""
    x, y = fig1
    net1, theta1 = width1_min
    shares = torch.tensor([0.5, 0.3, -0.1, 0.3], dtype=D)
    T = sym.share_split(net1, shares)
    land = Landscape(T.target, x, y)
    wide = T(theta1)
    grid = torch.linspace(-20, 20, 301, dtype=D)[:, None]
    torch.testing.assert_close(T.target.forward(wide, grid), net1.forward(theta1, grid), rtol=0, atol=1e-13)
    assert land.grad(wide).norm() <= 1e-11
    w, _, a = theta1.tolist()
    u = w * x[:, 0]
    s = 1 - torch.tanh(u) ** 2
    r = net1.forward(theta1, x)[:, 0] - y[:, 0]
    s_bb = a * (r * (-2 * torch.tanh(u) * s)).mean()
    closed = 2 * a * a * (s * s).mean() * torch.outer(shares, shares) + 2 * s_bb * torch.diag(shares)
    bi = sym.bias_indices(T.target)
    torch.testing.assert_close(land.hessian(wide)[bi][:, bi], closed, rtol=0, atol=1e-12)
    assert s_bb < 0                                      # the bias direction of S is negative (digest 2c: -0.0097)
    with pytest.raises(ValueError, match="sum to 1"):
        sym.share_split(net1, [0.5, 0.4])
    with pytest.raises(ValueError, match="width-1"):
        sym.share_split(MLP((1, 2, 1), "tanh", output_bias=False), [0.5, 0.5])
    with pytest.raises(ValueError, match="two-layer"):
        sym.share_split(MLP((1, 1, 1), "tanh"), [1.0])


def test_canonical_signs_keep_the_function():
    net = MLP((1, 7, 1), "tanh", output_bias=False)
    theta = net.init(4, 1.0)
    canon = sym.canonical_signs(net, theta)
    x = torch.linspace(-5, 5, 41, dtype=D)[:, None]
    torch.testing.assert_close(net.forward(canon, x), net.forward(theta, x), rtol=0, atol=1e-14)
    assert (canon[:7] >= 0).all() and (canon[:7].abs() == theta[:7].abs()).all()
    with pytest.raises(ValueError, match="not odd"):
        sym.canonical_signs(MLP((1, 3, 1), "sigmoid", output_bias=False), torch.zeros(9, dtype=D))
    with pytest.raises(ValueError, match="two-layer"):
        sym.canonical_signs(MLP((1, 3, 2, 1), "tanh", output_bias=False), torch.zeros(17, dtype=D))


def _scrambled_width3_embedding():
    """The width-3 target split into 9 neurons (shares, sign flips, shuffled order): an exact width-3 function."""
    net3 = MLP((1, 3, 1), "tanh", output_bias=False)
    theta3 = torch.tensor([1.0, 0.5, -2.0, 7.0, 0.0, -7.0, 1.0, 2.0, 1.5], dtype=D)
    net, theta = net3, theta3
    for neuron, alpha in ((0, 0.3), (1, -0.4), (2, 0.6), (0, 0.5), (4, 0.2), (1, 1.7)):
        T = splitting(net, 1, neuron, alpha)
        net, theta = T.target, T(theta)
    m = net.widths[1]
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(0))
    flip = torch.where(torch.arange(m) % 2 == 0, 1.0, -1.0).to(D)
    (W, b), (A, _) = net.unflatten(theta)
    theta = net.flatten([((W[:, 0] * flip)[perm, None], (b * flip)[perm]), ((A[0] * flip)[perm][None, :], None)])
    return net3, theta3, net, theta


def test_condense_recovers_an_exact_split(fig1):
    x, _ = fig1
    net3, theta3, net, theta = _scrambled_width3_embedding()
    c = sym.condense(net, theta, 3, x)
    assert c.width == 3 and c.output_error <= 1e-13 and sorted(np.bincount(c.labels).tolist()) == [2, 3, 4]
    grid = torch.linspace(-20, 20, 201, dtype=D)[:, None]
    torch.testing.assert_close(c.reduction.net.forward(c.reduction.theta, grid), net3.forward(theta3, grid),
                               rtol=0, atol=1e-13)
    found, met = sym.effective_width(net, theta, x, eps=1e-10)
    assert met and found.k == 3 and found.width == 3
    few, met = sym.effective_width(net, theta, x, eps=1e-10, k_max=2)
    assert not met and few.k == 2 and few.output_error > 1e-3
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError):
            sym.condense(net, theta, bad, x)
    with pytest.raises(ValueError):
        sym.effective_width(net, theta, x, eps=0.0)


def test_weighted_snapping_is_second_order(fig1):
    """Two neurons near w0: snapping to the output-weighted mean errs by O(delta^2) (halving delta quarters it)."""
    x, _ = fig1
    net = MLP((1, 2, 1), "tanh", output_bias=False)
    errors = []
    for delta in (1e-2, 5e-3):
        theta = torch.tensor([0.3 + delta, 0.3 - 0.5 * delta, 0.1, 0.1, 1.0, 2.0], dtype=D)
        errors.append(sym.condense(net, theta, 1, x).output_error)
    assert 3.5 <= errors[0] / errors[1] <= 4.5
