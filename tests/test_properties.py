"""Hypothesis property tests of embeddings and reduction on random architectures, data and step sequences.

Random depths L = 2..4, widths 1..6, activations (tanh, sigmoid, softplus, gelu), output bias or not,
losses (mse, cross_entropy) and random sequences of one-step splitting / null embeddings (paper B
Def. 4.6). Critical points: exact ones made by choosing the targets (see test_embeddings.critical_data,
repeated here) and, on small nets, ones found by ``embedding_principle.critical.find_critical_point``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.func import grad, jacrev

from embedding_principle.critical import find_critical_point
from embedding_principle.embeddings import compose, null, splitting
from embedding_principle.landscape import Landscape, inertia
from embedding_principle.losses import get_loss
from embedding_principle.network import MLP
from embedding_principle.reduction import reduce

D = torch.float64
# derandomize: the same examples on every run (the project's explicit-seeds rule), and no example database
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
# torch's first forward-mode AD call (inside Landscape.hessian) imports a module that warns about torch.jit
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


# ----------------------------------------------------------------------------- strategies
@st.composite
def scenarios(draw, max_depth=4, max_width=6):
    """(net, theta, embedding, loss, steps): a random MLP and theta, a random K-step composition embedding
    (paper B Def. 4.6: splittings of any neuron, null neurons included, and null steps) and its steps."""
    L = draw(st.integers(2, max_depth))
    loss = draw(st.sampled_from(["mse", "cross_entropy"]))
    widths = [draw(st.integers(1, max_width)) for _ in range(L + 1)]
    if loss == "cross_entropy":
        widths[-1] = max(widths[-1], 2)
    act = draw(st.sampled_from(["tanh", "sigmoid", "softplus", "gelu"]))
    net = MLP(widths, act, output_bias=draw(st.booleans()))
    theta = net.init(draw(st.integers(0, 2**20)), 1.0)
    steps = draw(st.lists(st.tuples(st.booleans(), st.integers(1, L - 1), st.integers(0, 99),
                                    st.floats(-2, 2, allow_nan=False)), min_size=1, max_size=4))
    embeddings, current = [], net
    for is_split, layer, raw, value in steps:
        T = splitting(current, layer, raw % current.widths[layer], value) if is_split else null(current, layer, value)
        embeddings.append(T)
        current = T.target
    return net, theta, compose(*reversed(embeddings)), loss, embeddings


def critical_data(net, theta, loss, seed=0, extra=10):
    """(x, y) making theta an exact critical point of R_S with a nonzero residual (y = f - r, J^T r = 0)."""
    gen = torch.Generator().manual_seed(seed)
    k, P = net.widths[-1], net.num_params
    n = P // (k - 1 if loss == "cross_entropy" else k) + extra
    x = torch.randn(n, net.widths[0], generator=gen, dtype=D)
    J = jacrev(lambda t: net.forward(t, x))(theta).reshape(n * k, P)
    rows = [J.T] + ([torch.kron(torch.eye(n, dtype=D), torch.ones(1, k, dtype=D))] if loss == "cross_entropy" else [])
    M = torch.cat(rows)  # r must satisfy M r = 0: the rows of Vh beyond M's row count span its null space
    Vh = torch.linalg.svd(M, full_matrices=True)[2]
    r = (Vh[M.shape[0]:].T @ torch.randn(n * k - M.shape[0], generator=gen, dtype=D)).reshape(n, k)
    f = net.forward(theta, x)
    if loss == "cross_entropy":
        p = torch.softmax(f, -1)
        return x, p - r * (0.5 * p.min() / r.abs().max())
    return x, f - r * (0.5 / r.abs().max())


def grad_R(net, x, y, theta, loss):
    ell = get_loss(loss)
    return grad(lambda t: ell(net.forward(t, x), y).mean())(theta)


def hessian_R(net, x, y, theta, loss):
    ell = get_loss(loss)
    return jacrev(jacrev(lambda t: ell(net.forward(t, x), y).mean()))(theta)


# ----------------------------------------------------------------------------- properties
@SETTINGS
@given(scenarios())
def test_output_preserved(scn):
    net, theta, T, _, steps = scn
    x = torch.randn(17, net.widths[0], generator=torch.Generator().manual_seed(1), dtype=D)
    f, f_wide = net.forward(theta, x), T.target.forward(T(theta), x)
    assert (f_wide - f).abs().max() <= 1e-12 * max(1.0, f.abs().max().item())
    sequential = theta
    for step in steps:
        sequential = step(sequential)
    assert torch.allclose(T(theta), sequential, rtol=1e-15, atol=1e-15)  # compose(T_K, ..., T_1) = T_K o ... o T_1


@SETTINGS
@given(scenarios())
def test_A_injective_with_one_nonzero_per_row(scn):
    net, _, T, _, _ = scn
    A = T.A
    assert ((A != 0).sum(1) <= 1).all()
    assert torch.linalg.matrix_rank(A).item() == net.num_params


@SETTINGS
@given(scenarios())
def test_embedded_exact_critical_point_stays_critical(scn):
    net, theta, T, loss, _ = scn
    x, y = critical_data(net, theta, loss)
    assert grad_R(net, x, y, theta, loss).abs().max() <= 1e-13
    g = grad_R(T.target, x, y, T(theta), loss).abs().max()
    if T.preserves_criticality:
        assert g <= 1e-11
    else:  # only the output-bias caveat can fail for splitting / null steps
        assert all(v.startswith("output-bias caveat") for v in T.violations)


@settings(SETTINGS, max_examples=12, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(scenarios(max_depth=3, max_width=3), st.integers(0, 2**16))
def test_embedded_found_critical_point_stays_critical(scn, seed):
    net, theta0, T, loss, _ = scn
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(12, net.widths[0], generator=gen, dtype=D)
    logits = torch.randn(12, net.widths[-1], generator=gen, dtype=D)
    y = logits.argmax(1) if loss == "cross_entropy" else logits
    cp = find_critical_point(Landscape(net, x, y, loss), theta0, tol=1e-13, max_iter=30, raise_on_failure=False)
    assume(cp.converged)
    y_t = Landscape(net, x, y, loss).y
    assert grad_R(net, x, y_t, cp.theta, loss).norm() <= 1e-12
    if T.preserves_criticality:
        assert grad_R(T.target, x, y_t, T(cp.theta), loss).abs().max() <= 1e-11


@settings(SETTINGS, max_examples=25)
@given(scenarios(max_depth=3, max_width=4))
def test_inertia_never_decreases_theorem_6_2(scn):
    net, theta, T, loss, _ = scn
    assume(T.preserves_criticality)
    x, y = critical_data(net, theta, loss)
    H, H_wide = hessian_R(net, x, y, theta, loss), hessian_R(T.target, x, y, T(theta), loss)
    A = T.A
    assert torch.allclose(A.T @ H_wide @ A, H, rtol=0, atol=1e-10 * max(1.0, H.abs().max().item()))
    narrow = inertia(H)
    # v^T H v >= lambda_min+ |v|^2 and |A v| <= sigma_max |v|: the wide Hessian has >= n+ eigenvalues
    # above tol / sigma_max^2 (Courant-Fischer); A has one nonzero per row, so sigma_max^2 = max column norm^2
    wide = inertia(H_wide, rtol=0.0, atol=narrow.tol / (A ** 2).sum(0).max().item())
    assert wide.positive >= narrow.positive and wide.negative >= narrow.negative
    assert inertia(H_wide).zero >= narrow.zero


@SETTINGS
@given(scenarios())
def test_reduce_round_trip(scn):
    net, theta, T, _, _ = scn
    R = reduce(T.target, T(theta))
    assert R.net == net
    x = torch.randn(23, net.widths[0], generator=torch.Generator().manual_seed(2), dtype=D)
    f = net.forward(theta, x)
    assert (R.net.forward(R.theta, x) - f).abs().max() <= 1e-12 * max(1.0, f.abs().max().item())
    assert R.parameter_error <= 1e-12 * max(1.0, theta.abs().max().item())
