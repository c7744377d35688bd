"""Tests of embedding_principle.critical.find_critical_point.

References: the width-1 global minimum of the Fig. 1 data (digest section 2c: loss 0.109023, |w| 0.08954,
b 0, |a| 3.7470, splitting eigenvalue -0.0097); a critical point of a 1-5-1 tanh net and its splitting
embedding built by hand here (paper A Def. 5, Thm. 1), which is a degenerate strict saddle.
"""

import dataclasses

import pytest
import torch

from embedding_principle.critical import MAX_PARAMS, ConvergenceError, CriticalPoint, find_critical_point
from embedding_principle.landscape import Landscape, inertia
from embedding_principle.network import MLP

D = torch.float64


def fig1_landscape(width):
    """Paper A Fig. 1 data (digest section 3.1): 1-m-1 tanh net, no output bias, MSE without 1/2."""
    x = torch.linspace(-15, 15, 50, dtype=D)[:, None]
    y = torch.tanh(x + 7) + torch.tanh(x) + torch.tanh(x - 7)
    return Landscape(MLP((1, width, 1), "tanh", output_bias=False), x, y)


def split(theta, m, j):
    """Hand-made splitting embedding of a 1-m-1 net without output bias: copy neuron j, halve its output weight."""
    w, b, a = theta[:m], theta[m:2 * m], theta[2 * m:].clone()
    a[j] /= 2
    return torch.cat([w, w[j:j + 1], b, b[j:j + 1], a, a[j:j + 1]])


def assert_critical(ls, cp, tol=1e-12):
    assert cp.converged and cp.grad_norm <= tol
    assert ls.grad(cp.theta).norm().item() == pytest.approx(cp.grad_norm, rel=1e-12, abs=1e-30)
    assert cp.risk == pytest.approx(ls.risk(cp.theta).item(), rel=1e-15)
    assert len(cp.history) == cp.iterations + 1 and cp.history[-1] == cp.grad_norm
    assert all(b < a for a, b in zip(cp.history, cp.history[1:]))


@pytest.fixture(scope="module")
def teacher_minimum():
    """A non-degenerate local minimum of a 1-5-1 tanh net (no output bias) with nonzero residuals.

    Data: 30 points of a teacher with well-separated neurons plus noise; L-BFGS brings the gradient to ~1e-3,
    then find_critical_point polishes it.
    """
    net = MLP((1, 5, 1), "tanh", output_bias=False)
    w, centre = torch.tensor([2.0, -2.0, 2.0, -2.0, 2.0]), torch.tensor([-2.4, -1.2, 0.0, 1.2, 2.4])
    teacher = torch.cat([w, -w * centre, torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0])]).to(D)
    x = torch.linspace(-3, 3, 30, dtype=D)[:, None]
    y = net.forward(teacher, x) + 0.1 * torch.randn(30, 1, generator=torch.Generator().manual_seed(0), dtype=D)
    ls = Landscape(net, x, y)
    theta = teacher.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=100, line_search_fn="strong_wolfe", tolerance_grad=1e-3)

    def closure():
        opt.zero_grad()
        loss = ls.risk(theta)
        loss.backward()
        return loss

    opt.step(closure)
    theta0 = theta.detach()
    assert 1e-5 < ls.grad(theta0).norm() < 1e-2
    return ls, theta0, find_critical_point(ls, theta0)


# ----------------------------------------------------------------------------- Fig. 1 cross-check
def test_fig1_width1_global_minimum():
    ls = fig1_landscape(1)
    cp = find_critical_point(ls, torch.tensor([0.09, 0.001, 3.74], dtype=D))
    assert_critical(ls, cp)
    w, b, a = cp.theta.tolist()
    assert cp.risk == pytest.approx(0.109023, abs=5e-7)
    assert abs(w) == pytest.approx(0.08954, abs=1e-5) and abs(b) < 1e-10 and abs(a) == pytest.approx(3.7470, abs=1e-4)
    assert inertia(ls.hessian(cp.theta))[:3] == (0, 0, 3)  # a non-degenerate minimum


def test_fig1_width1_minimum_splits_into_a_degenerate_strict_saddle():
    ls1, ls2 = fig1_landscape(1), fig1_landscape(2)
    cp1 = find_critical_point(ls1, torch.tensor([0.09, 0.001, 3.74], dtype=D))
    theta2 = split(cp1.theta, 1, 0)
    assert ls2.grad(theta2).norm() <= 1e-12  # Theorem 1: criticality is preserved
    ev = ls2.spectrum(theta2)
    # digest section 2c: the bias-splitting curvature -0.0097 is tiny next to the top eigenvalue, yet negative
    assert ev[0].item() == pytest.approx(-0.0097, abs=5e-5) and ev[-1] > 200
    assert inertia(ev)[:3] == (1, 1, 4)
    noise = 1e-3 * torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=D)
    cp2 = find_critical_point(ls2, theta2 + noise)
    assert_critical(ls2, cp2)
    assert cp2.risk == pytest.approx(cp1.risk, abs=1e-10) and inertia(ls2.hessian(cp2.theta))[:3] == (1, 1, 4)


# ----------------------------------------------------------------------------- minima and saddles
def test_teacher_point_is_a_nondegenerate_minimum(teacher_minimum):
    ls, theta0, cp = teacher_minimum
    assert_critical(ls, cp)
    assert cp.risk > 1e-3  # nonzero residuals, so H^(2) != 0
    assert inertia(ls.hessian(cp.theta))[:3] == (0, 0, 15)


def test_converges_from_a_perturbed_local_minimum(teacher_minimum):
    ls, _, cp = teacher_minimum
    noise = 1e-3 * torch.randn(15, generator=torch.Generator().manual_seed(1), dtype=D)
    assert ls.grad(cp.theta + noise).norm() > 1e-4
    again = find_critical_point(ls, cp.theta + noise)
    assert_critical(ls, again)
    assert again.iterations <= 20
    assert (again.theta - cp.theta).abs().max() < 1e-8  # an isolated minimum: back to the same point


@pytest.mark.parametrize("j", [0, 2, 4])
def test_converges_from_a_perturbed_embedded_saddle(teacher_minimum, j):
    ls, _, cp = teacher_minimum
    ls6 = Landscape(MLP((1, 6, 1), "tanh", output_bias=False), ls.x, ls.y)
    saddle = split(cp.theta, 5, j)
    assert ls6.grad(saddle).norm() <= 1e-11
    assert ls6.risk(saddle).item() == pytest.approx(cp.risk, abs=1e-15)
    neg, zero, _, _ = inertia(ls6.hessian(saddle))
    assert neg >= 1 and zero >= 1  # a degenerate strict saddle
    noise = 1e-3 * torch.randn(18, generator=torch.Generator().manual_seed(j), dtype=D)
    assert ls6.grad(saddle + noise).norm() > 1e-3
    found = find_critical_point(ls6, saddle + noise)
    assert_critical(ls6, found)
    assert found.risk == pytest.approx(cp.risk, abs=1e-10)
    assert inertia(ls6.hessian(found.theta))[:2] == (neg, zero)  # still a saddle on the same critical set


def test_already_critical_start_takes_no_iteration():
    ls = fig1_landscape(1)
    cp = find_critical_point(ls, torch.tensor([0.09, 0.001, 3.74], dtype=D))
    again = find_critical_point(ls, cp.theta, tol=1e-12)
    assert again.iterations == 0 and again.converged and again.history == (cp.grad_norm,)
    assert torch.equal(again.theta, cp.theta)


# ----------------------------------------------------------------------------- failure modes
def test_max_iter_one_raises_convergence_error():
    ls = fig1_landscape(1)
    start = torch.tensor([0.1, 0.02, 3.5], dtype=D)
    with pytest.raises(ConvergenceError, match=r"\|\|grad R_S\|\|_2 = [0-9.e+-]+ > tol = 1\.0e-12 after 1 iterations "
                                               r"\(max_iter = 1 reached\)"):
        find_critical_point(ls, start, max_iter=1)
    assert issubclass(ConvergenceError, RuntimeError)
    cp = find_critical_point(ls, start, max_iter=1, raise_on_failure=False)
    assert not cp.converged and cp.iterations == 1 and cp.grad_norm > 1e-12 and len(cp.history) == 2


def test_unreachable_tolerance_stops_with_an_error():
    # below the float64 round-off floor no step can decrease ||grad||: a clear error, not an endless loop
    ls = fig1_landscape(1)
    with pytest.raises(ConvergenceError, match=r"did not converge.*no damped step decreased"):
        find_critical_point(ls, torch.tensor([0.09, 0.001, 3.74], dtype=D), tol=1e-300, max_iter=100)
    cp = find_critical_point(ls, torch.tensor([0.09, 0.001, 3.74], dtype=D), tol=1e-300, raise_on_failure=False)
    assert not cp.converged and cp.grad_norm < 1e-13 and cp.iterations < 100 and len(cp.history) == cp.iterations + 1


def test_result_is_frozen():
    cp = find_critical_point(fig1_landscape(1), torch.tensor([0.09, 0.001, 3.74], dtype=D))
    assert isinstance(cp, CriticalPoint)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.converged = False


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(theta0=torch.zeros(4)), ValueError, "needs a last dimension of 3"),
    (dict(theta0=torch.tensor([0.1, float("nan"), 3.0])), ValueError, "NaN"),
    (dict(theta0=torch.zeros(2, 3)), ValueError, "one parameter vector"),
    (dict(tol=0.0), ValueError, "tol must be a positive"),
    (dict(tol=float("nan")), ValueError, "tol must be a positive"),
    (dict(max_iter=-1), ValueError, "max_iter must be a non-negative integer"),
    (dict(max_iter=2.5), ValueError, "max_iter must be a non-negative integer"),
    (dict(max_params=2), ValueError, r"supports P <= 2 parameters; .* has P = 3"),
    (dict(landscape="R_S"), TypeError, "landscape must be a Landscape"),
])
def test_rejects_bad_input(kwargs, err, match):
    args = dict(landscape=fig1_landscape(1), theta0=torch.tensor([0.09, 0.001, 3.74], dtype=D)) | kwargs
    with pytest.raises(err, match=match):
        find_critical_point(**args)


def test_documented_size_limit():
    assert MAX_PARAMS == 3000
    x = torch.zeros(3, 1, dtype=D)
    big = Landscape(MLP((1, 1001, 1), "tanh"), x, x)  # P = 3004
    with pytest.raises(ValueError, match="P <= 3000"):
        find_critical_point(big, torch.zeros(big.net.num_params))
