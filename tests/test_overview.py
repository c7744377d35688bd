"""The landing figure (overview): its numbers against independent references, and its bad inputs."""
import matplotlib

matplotlib.use("Agg")

import dataclasses

import matplotlib.pyplot as plt
import pytest
import torch

import embedding_principle as ep
from embedding_principle import cache, overview
from embedding_principle.data import fig1_data
from embedding_principle.saddles import splitting_matrix


@pytest.fixture(scope="module")
def picture():
    return overview.principle_in_one_picture(max_width=5)


@pytest.fixture(scope="module")
def theta1():
    """The width-1 global minimum (w, b, a) stored by the cached Fig. 1 experiment."""
    return torch.as_tensor(cache.run("fig1_two_stages")["references"]["width1"]["theta"])


def test_residuals_are_round_off_and_check_passes(picture):
    picture.check()
    for name, (value, tol) in picture.residuals().items():
        assert 0 <= value <= tol, name


def test_inertia_counts_follow_the_splitting_matrix(picture, theta1):
    """Paper B Lemma 6.1: each extra copy adds the splitting matrix's inertia, plus one zero (its share direction)."""
    x, y = fig1_data()
    narrow = ep.MLP((1, 1, 1), "tanh", output_bias=False)
    s = ep.inertia(splitting_matrix(ep.Landscape(narrow, x, y), theta1, layer=1, neuron=0))
    base = picture.inertias[0]
    assert (base.negative, base.zero, base.positive) == (0, 0, 3)          # a strict local minimum
    for k, got in zip(picture.widths, picture.inertias):
        want = (s.negative * (k - 1), s.zero * (k - 1) + (k - 1), 3 + s.positive * (k - 1))
        assert (got.negative, got.zero, got.positive) == want, f"width {k}"


def test_embedded_output_matches_a_direct_formula(picture, theta1):
    """f_embedded is a sum of 500 tanh units; the narrow one is a * tanh(w x + b): compare to the closed form."""
    w, b, a = theta1
    direct = a * torch.tanh(w * picture.grid[:, 0] + b)
    assert (picture.f_narrow - direct).abs().max() < 1e-14
    assert (picture.f_embedded - direct).abs().max() < 1e-12


def test_plateau_numbers_are_consistent(picture):
    numbers = picture.numbers()
    assert numbers["wide_width"] == 500 and numbers["max_width"] == 5
    assert abs(numbers["plateau_loss"] - numbers["narrow_risk"]) < 1e-3      # the plateau is the width-1 value
    assert numbers["plateau_gap"] < 0.05
    assert all(isinstance(v, (int, float)) for v in numbers.values())    # glue needs plain Python numbers


def test_plot_has_three_panels(picture):
    fig = overview.plot_principle(picture)
    assert len(fig.axes) == 3
    plt.close(fig)


@pytest.mark.parametrize("bad, error", [(1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_max_width(bad, error):
    with pytest.raises(error, match="max_width"):
        overview.principle_in_one_picture(max_width=bad)


def test_check_names_a_failing_residual(picture):
    broken = dataclasses.replace(picture, output_gap=1e-3)
    with pytest.raises(AssertionError, match="f_wide"):
        broken.check()
