"""Tests of the paper A Fig. 3 analysis helpers (embedding_principle.experiments.fig3).

References: the library's exact Hessian and its independently assembled residual part H^(2) (paper B section 3.3)
for the splitting block; the Fig. 1 width-2 minimum (loss 0.0698, digest section 3.1) for the inertia prediction;
closed forms for the odd symmetries of the Fig. 1 data. The cached experiments themselves are checked by
tests/test_reproducibility.py (consistency checks) and are not rerun here.
"""

import numpy as np
import pytest
import torch

import embedding_principle as ep
from embedding_principle.data import fig1_data, iris
from embedding_principle.experiments import fig3

D = torch.float64


def random_landscape(widths=(2, 3, 2), activation="tanh", n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    net = ep.MLP(widths, activation, output_bias=False)
    x = torch.randn(n, widths[0], generator=gen, dtype=D)
    y = torch.randn(n, widths[-1], generator=gen, dtype=D)
    theta = torch.randn(net.num_params, generator=gen, dtype=D)
    return ep.Landscape(net, x, y), theta


@pytest.fixture(scope="module")
def fig1_minimum():
    """The width-2 minimum of the Fig. 1 data (R_S = 0.0697915), polished from rounded parameters."""
    x, y = fig1_data()
    land = ep.Landscape(ep.MLP((1, 2, 1), "tanh", output_bias=False), x, y)
    start = torch.tensor([1.302, 0.155, 9.3356, -0.4176, 0.7886, 2.3419], dtype=D)
    cp = ep.find_critical_point(land, start, tol=1e-13)
    assert cp.risk == pytest.approx(0.0697915121, abs=1e-9)
    return land, cp.theta


# ----------------------------------------------------------------------------- splitting_block
def test_splitting_block_matches_the_residual_hessian_blocks():
    land, theta = random_landscape()
    net, m0, m1 = land.net, 2, 3
    _, h2 = land.hessian_parts(theta)
    hidden = net.num_hidden_params
    for j in range(m1):
        rows = list(range(j * m0, (j + 1) * m0)) + [m1 * m0 + j]          # W^[1]_{j,:}, b^[1]_j
        cols = [hidden + i * m1 + j for i in range(2)]                     # W^[2]_{:,j}
        K = fig3.splitting_block(land, theta, j)
        torch.testing.assert_close(K[:3, :3], h2[rows][:, rows], rtol=0, atol=1e-13)
        torch.testing.assert_close(K[:3, 3:], h2[rows][:, cols], rtol=0, atol=1e-13)
        assert K[3:, 3:].abs().max() == 0


@pytest.mark.parametrize("activation,k", [("tanh", 2), ("tanh", 3), ("sigmoid", 3)])
def test_block_eigenvalues_appear_k_minus_1_times_in_the_wide_spectrum(activation, k):
    # holds at any point, critical or not: the copies' permutation symmetry splits the wide Hessian
    land, theta = random_landscape(activation=activation, seed=1)
    T = ep.equal_split(land.net, 1, 1, k)
    wide = ep.Landscape(T.target, land.x, land.y).spectrum(T(theta)).numpy()
    for lam in torch.linalg.eigvalsh(fig3.splitting_block(land, theta, 1, k)).numpy():
        assert (np.abs(wide - lam) <= 1e-10 * np.abs(wide).max()).sum() >= k - 1


def test_predicted_inertia_at_the_fig1_minimum(fig1_minimum):
    land, theta = fig1_minimum
    narrow = ep.inertia(land.hessian(theta))
    assert narrow[:3] == (0, 0, 6)
    for j in (0, 1):
        K = fig3.splitting_block(land, theta, j)
        assert K[:2, 2].abs().max() < 1e-12                    # one output: C_j = grad_{w_j} R_S / a_j = 0
        for k in (2, 3):
            T = ep.equal_split(land.net, 1, j, k)
            wide = ep.inertia(ep.Landscape(T.target, land.x, land.y).hessian(T(theta)))
            block = fig3.sign_counts(torch.linalg.eigvalsh(K).numpy(), wide.tol)
            assert fig3.predicted_counts(narrow[:3], block, k) == wide[:3] == (k - 1, k - 1, 6 + k - 1)


def test_splitting_block_refuses_bad_input():
    land, theta = random_landscape()
    with pytest.raises(ValueError, match="two-layer"):
        deep, th = random_landscape(widths=(2, 3, 3, 1))
        fig3.splitting_block(deep, th, 0)
    for neuron in (-1, 3, 1.0, True):
        with pytest.raises(ValueError, match="neuron"):
            fig3.splitting_block(land, theta, neuron)
    for k in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="k"):
            fig3.splitting_block(land, theta, 0, k)
    with pytest.raises(ValueError):
        fig3.splitting_block(land, theta[:-1], 0)


# ----------------------------------------------------------------------------- counting
def test_sign_counts_and_zero_gap():
    ev = np.array([-2.0, -1e-12, 0.0, 3e-12, 1e-5, 4.0])
    assert fig3.sign_counts(ev, 1e-11) == (1, 3, 2)
    assert fig3.sign_counts(ev, 0.0) == (2, 1, 3)
    assert fig3.sign_counts(ev, 10.0) == (0, 6, 0)
    assert fig3.zero_gap(ev, 1e-11) == (3e-12, 1e-5)
    z, nz = fig3.zero_gap(ev, 10.0)
    assert z == 4.0 and np.isnan(nz)
    for bad in (np.ones((2, 2)), np.array([1.0, np.nan])):
        with pytest.raises(ValueError):
            fig3.sign_counts(bad, 1e-11)
    for tol in (-1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="tol"):
            fig3.sign_counts(ev, tol)


def test_sign_counts_agrees_with_library_inertia_at_its_tolerance():
    ev = torch.tensor([-3.0, -1e-9, 0.0, 2e-9, 0.5, 7.0], dtype=D)
    lib = ep.inertia(ev)
    assert fig3.sign_counts(ev.numpy(), lib.tol) == lib[:3]


def test_predicted_counts():
    assert fig3.predicted_counts((3, 0, 13), (2, 1, 5), 3) == (7, 2, 23)
    assert fig3.predicted_counts((0, 0, 6), (1, 1, 1), 1) == (0, 0, 6)
    with pytest.raises(ValueError):
        fig3.predicted_counts((0, 0, 6), (1, 1, 1), 0)
    with pytest.raises(ValueError):
        fig3.predicted_counts((0, 6), (1, 1, 1), 2)


# ----------------------------------------------------------------------------- empirical critical point
def test_slow_phase_argmin():
    loss = np.array([5.0, 1.0, 0.1002, 0.10005, 0.10001, 0.1])
    l1 = np.array([1e-9, 1.0, 1e-8, 3e-3, 2e-3, 1e-3])
    assert fig3.slow_phase_argmin(loss, l1, rtol=1e-3) == 5      # window: the last three iterates
    assert fig3.slow_phase_argmin(loss, l1, rtol=3e-3) == 2     # a wider window admits step 2 (l1 1e-8)
    assert fig3.slow_phase_argmin(loss, l1, rtol=0.0) == 5
    assert fig3.slow_phase_argmin(loss, l1, rtol=100.0) == 0
    with pytest.raises(ValueError):
        fig3.slow_phase_argmin(loss, l1[:-1])
    with pytest.raises(ValueError):
        fig3.slow_phase_argmin(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        fig3.slow_phase_argmin(np.array([1.0, np.nan]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError):
        fig3.slow_phase_argmin(loss, l1, rtol=-1.0)


def test_l1_grad_norms_matches_the_landscape_gradient():
    land, theta = random_landscape()
    thetas = torch.stack([theta, 2 * theta, -theta]).reshape(3, 1, -1)
    risk, l1, l2 = fig3.l1_grad_norms(land.net, thetas, land.x, land.y)
    assert risk.shape == l1.shape == l2.shape == (3, 1)
    for i in range(3):
        g = land.grad(thetas[i, 0])
        assert l1[i, 0] == pytest.approx(g.abs().sum().item(), rel=1e-12)
        assert l2[i, 0] == pytest.approx(g.norm().item(), rel=1e-12)
        assert risk[i, 0] == pytest.approx(land.risk(thetas[i, 0]).item(), rel=1e-14)


# ----------------------------------------------------------------------------- odd symmetries
def test_mirror_solution_is_a_critical_point_with_the_same_spectrum(fig1_minimum):
    land, theta = fig1_minimum
    net = land.net
    mirror = fig3.mirror_odd(net, theta)
    grid = torch.linspace(-20, 20, 81, dtype=D)[:, None]
    torch.testing.assert_close(net.forward(mirror, grid), -net.forward(theta, -grid), rtol=0, atol=1e-14)
    assert land.grad(mirror).norm() < 1e-12
    assert abs(land.risk(mirror) - land.risk(theta)) < 1e-15
    torch.testing.assert_close(land.spectrum(mirror), land.spectrum(theta), rtol=0, atol=1e-12)
    assert fig3.solution_label(net, mirror, theta) == "mirror"
    assert fig3.solution_label(net, theta, theta) == "same"


def test_canonical_form_removes_sign_flips_and_permutations(fig1_minimum):
    land, theta = fig1_minimum
    net = land.net
    w, b, a = theta[:2], theta[2:4], theta[4:]
    flipped = torch.cat([torch.stack([-w[1], w[0]]), torch.stack([-b[1], b[0]]), torch.stack([-a[1], a[0]])])
    grid = torch.linspace(-20, 20, 81, dtype=D)[:, None]
    torch.testing.assert_close(net.forward(flipped, grid), net.forward(theta, grid), rtol=0, atol=1e-14)
    torch.testing.assert_close(fig3.canonical_odd(net, flipped), fig3.canonical_odd(net, theta), rtol=0, atol=0)
    torch.testing.assert_close(net.forward(fig3.canonical_odd(net, theta), grid), net.forward(theta, grid),
                               rtol=0, atol=1e-14)
    assert fig3.solution_label(net, flipped, theta) == "same"
    assert fig3.solution_label(net, theta + 0.1, theta) == "other"


def test_odd_symmetries_refuse_other_networks():
    for net in (ep.MLP((1, 2, 1), "sigmoid", output_bias=False), ep.MLP((1, 2, 1), "tanh", output_bias=True),
                ep.MLP((1, 2, 2, 1), "tanh", output_bias=False)):
        with pytest.raises(ValueError, match="odd"):
            fig3.mirror_odd(net, torch.zeros(net.num_params, dtype=D))
        with pytest.raises(ValueError, match="odd"):
            fig3.canonical_odd(net, torch.zeros(net.num_params, dtype=D))


# ----------------------------------------------------------------------------- spectra_of_splits
def test_spectra_of_splits_sizes_and_keys(fig1_minimum):
    land, theta = fig1_minimum
    sp = fig3.spectra_of_splits(land, theta, (0, 1))
    assert sorted(sp) == ["block_j0", "block_j1", "j0_k1", "j0_k2", "j0_k3", "j1_k1", "j1_k2", "j1_k3"]
    assert [sp[f"j0_k{k}"].size for k in (1, 2, 3)] == [6, 9, 12]
    np.testing.assert_array_equal(sp["j0_k1"], sp["j1_k1"])
    assert sp["block_j0"].size == 3


# ----------------------------------------------------------------------------- Iris helpers
def test_constant_output_point_is_critical_on_balanced_one_hot_targets():
    net = ep.MLP((4, 2, 3), "sigmoid", output_bias=False)
    x, y = iris()
    theta = fig3.constant_output_point(net, y)
    land = ep.Landscape(net, x, y)
    torch.testing.assert_close(net.forward(theta, x), torch.full((150, 3), 1 / 3, dtype=D), rtol=0, atol=1e-15)
    assert land.risk(theta).item() == pytest.approx(2 / 9, abs=1e-15)
    assert land.grad(theta).norm() < 1e-14
    with pytest.raises(ValueError, match="sigma"):
        fig3.constant_output_point(ep.MLP((4, 2, 3), "tanh", output_bias=False), y)
    with pytest.raises(ValueError, match="shape"):
        fig3.constant_output_point(net, y[:, :2])
    with pytest.raises(ValueError, match="two-layer"):
        fig3.constant_output_point(ep.MLP((4, 2, 2, 3), "sigmoid"), y)


def test_mean_output_by_class_and_saturation():
    net = ep.MLP((1, 1, 2), "sigmoid", output_bias=False)
    theta = torch.tensor([50.0, 0.0, 1.0, -1.0], dtype=D)            # w, b, a (2 outputs)
    x = torch.tensor([[-1.0], [-2.0], [1.0], [3.0]], dtype=D)
    means = fig3.mean_output_by_class(net, theta, x, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(means, [[0.0, 0.0], [1.0, -1.0]], atol=1e-20)
    np.testing.assert_allclose(fig3.min_abs_preactivation(net, theta, x), [50.0])
    with pytest.raises(ValueError, match="two-layer"):
        fig3.min_abs_preactivation(ep.MLP((1, 1, 1, 1), "sigmoid"), torch.zeros(6, dtype=D), x)
