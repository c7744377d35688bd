"""Tests of embedding_principle.embeddings against hand computations, autograd and the papers' lemmas.

Independent references used here: flat vectors written out by hand; features and back-propagated
errors z^[l] taken by torch autograd on a forward pass written in this file; gradients and Hessians of
R_S by torch.func; random alpha satisfying Conditions 1-2 drawn by a *constructive* helper (not the
library's checker). Exact critical points are obtained by choosing the data: for a given theta and
inputs x, targets y = f_theta(x) - r with the residual r in the left null space of the Jacobian make
grad R_S(theta) = 0 to round-off while the loss stays nonzero (paper B: the results hold for every S).
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, jacrev

from embedding_principle import degeneracy
from embedding_principle.critical import find_critical_point
from embedding_principle.embeddings import (NULL, check_index_map, compose, constant_inputs, critical_subspace,
                                            equal_split, general_compatible, null, split_operators, splitting, t_global,
                                            t_gn)
from embedding_principle.landscape import Landscape, inertia
from embedding_principle.losses import get_loss
from embedding_principle.network import MLP

D = torch.float64


# ----------------------------------------------------------------------------- helpers (independent oracles)
def risk(net, x, y, loss="mse"):
    ell = get_loss(loss)
    return lambda t: ell(net.forward(t, x), y).mean()


def grad_R(net, x, y, theta, loss="mse"):
    return grad(risk(net, x, y, loss))(theta)


def hessian_R(net, x, y, theta, loss="mse"):
    return jacrev(jacrev(risk(net, x, y, loss)))(theta)  # reverse-over-reverse: exact in float64


def critical_data(net, theta, loss="mse", seed=0):
    """(x, y) for which theta is an exact critical point of R_S with a nonzero residual (the library's construction,
    tested in test_representation / test_degeneracy; criticality is asserted here with the oracles above)."""
    return degeneracy.critical_data(net, theta, loss=loss, seed=seed)


def features_and_errors(net, theta, x, y, loss="mse"):
    """f^[l], g^[l] and z^[l] = d l / d f^[l] per sample, by autograd on a forward pass written here."""
    theta = theta.clone().requires_grad_(True)
    f, feats, gs = x, [x], [None]
    layers = net.unflatten(theta)
    for l, (W, b) in enumerate(layers, start=1):
        u = f @ W.T + (0 if b is None else b)
        f = net.activation(u) if l < net.L else u
        f.retain_grad()
        feats.append(f)
        gs.append(net.activation.derivative(u.detach()) if l < net.L else None)
    get_loss(loss)(f, y).sum().backward()
    return [t.detach() for t in feats], gs, [None] + [t.grad for t in feats[1:]]


def random_compatible(net, index_map, seed=0):
    """Random alpha satisfying Conditions 1-2 for a total index map, built constructively.

    beta^[l]: random shares over the copies of each narrow neuron, summing to 1 (so beta^[L] = 1 propagates).
    A block alpha[copies of k, copies of s] = 1 beta_prev^T + P_beta Z P_1 has unit row sums (forward)
    and beta^T alpha = beta_prev^T (backward). Null rows get zero-sum rows per narrow s; columns of null
    neurons into effective rows are orthogonal to beta per block and, per row, to sigma(b*) (Condition 2).
    """
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=D)  # noqa: E731
    L, m = net.L, net.widths
    I = [list(range(m[0])), *[list(v) for v in index_map], list(range(m[-1]))]
    wide = [len(v) for v in I]
    copies = lambda l, s: [i for i, v in enumerate(I[l]) if v == s]  # noqa: E731
    nulls = lambda l: [i for i, v in enumerate(I[l]) if v == NULL]  # noqa: E731
    beta = [torch.ones(wide[0], dtype=D)]
    for l in range(1, L):
        b = torch.zeros(wide[l], dtype=D)
        for s in range(m[l]):
            c = copies(l, s)
            share = rnd(len(c))
            b[c] = share - share.mean() + 1.0 / len(c)
        beta.append(b)
    beta.append(torch.ones(wide[L], dtype=D))
    alpha, b_star = [], torch.zeros(wide[0], dtype=D)
    for l in range(1, L + 1):
        A = torch.zeros(wide[l], wide[l - 1], dtype=D)
        for k in range(m[l]):
            rows = copies(l, k)
            br = beta[l][rows]
            Pb = torch.eye(len(rows), dtype=D) - torch.outer(br, br) / br.dot(br)
            for s in range(m[l - 1]):
                cols = copies(l - 1, s)
                P1 = torch.eye(len(cols), dtype=D) - 1.0 / len(cols)
                A[torch.tensor(rows)[:, None], torch.tensor(cols)] = (
                    torch.outer(torch.ones(len(rows), dtype=D), beta[l - 1][cols]) + Pb @ rnd(len(rows), len(cols)) @ P1)
            null_cols = nulls(l - 1)
            if null_cols:
                A[torch.tensor(rows)[:, None], torch.tensor(null_cols)] = Pb @ rnd(len(rows), len(null_cols))
        for i in nulls(l):
            for s in range(m[l - 1]):
                cols = copies(l - 1, s)
                v = rnd(len(cols))
                A[i, cols] = v - v.mean()
            if nulls(l - 1):
                A[i, nulls(l - 1)] = rnd(len(nulls(l - 1)))
        ab = torch.zeros(wide[l], dtype=D)
        if nulls(l - 1):  # constant inputs from null neurons cancel in every effective row
            sig = net.activation(b_star[nulls(l - 1)])
            eff = [i for i, v in enumerate(I[l]) if v != NULL]
            block = A[torch.tensor(eff)[:, None], torch.tensor(nulls(l - 1))]
            A[torch.tensor(eff)[:, None], torch.tensor(nulls(l - 1))] = block - torch.outer(block @ sig, sig) / sig.dot(sig)
        new_b_star = torch.zeros(wide[l], dtype=D)
        for i in nulls(l):
            ab[i] = rnd(1).item()
            new_b_star[i] = ab[i] + (A[i, nulls(l - 1)] @ net.activation(b_star[nulls(l - 1)]) if nulls(l - 1) else 0.0)
        alpha.append((A, ab if l < L or net.output_bias else None))
        b_star = new_b_star
    return alpha


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


NET3 = MLP((2, 3, 2, 1), "tanh")
NET4 = MLP((2, 2, 3, 2, 2), "sigmoid")


# ----------------------------------------------------------------------------- hand-computed cases
def test_splitting_hand_computed_1_2_1():
    net = MLP((1, 2, 1), "tanh")
    theta = torch.tensor([1.5, -2.0, 0.25, 0.75, 3.0, -4.0, 0.5], dtype=D)  # w0 w1 c0 c1 a0 a1 d
    T = splitting(net, 1, 0, 0.3)
    expected = torch.tensor([1.5, -2.0, 1.5, 0.25, 0.75, 0.25, 0.7 * 3.0, -4.0, 0.3 * 3.0, 0.5], dtype=D)
    assert T.target == MLP((1, 3, 1), "tanh") and T.K == 1
    assert torch.allclose(T(theta), expected, rtol=0, atol=1e-15)
    assert T.index_map == ((0, 1, 0),)
    assert T.violations == [] and T.preserves_criticality


def test_null_and_equal_split_hand_computed():
    net = MLP((1, 2, 1), "tanh", output_bias=False)
    theta = torch.tensor([1.5, -2.0, 0.25, 0.75, 3.0, -4.0], dtype=D)
    assert torch.equal(null(net, 1, 0.5)(theta), torch.tensor([1.5, -2.0, 0.0, 0.25, 0.75, 0.5, 3.0, -4.0, 0.0], dtype=D))
    assert null(net, 1, 0.5).index_map == ((0, 1, NULL),)
    E = equal_split(net, 1, 1, 3)  # neuron 1 -> copies 1, 2, 3 with a1 / 3 each
    assert torch.allclose(E(theta), torch.tensor([1.5, -2.0, -2.0, -2.0, 0.25, 0.75, 0.75, 0.75,
                                                  3.0, -4 / 3, -4 / 3, -4 / 3], dtype=D), rtol=0, atol=1e-15)
    assert torch.equal(equal_split(net, 1, 0, 2).A, splitting(net, 1, 0, 0.5).A)  # Net2WiderNet = alpha 1/2


def test_t_global_and_t_gn_match_examples_5_1_and_5_2():
    theta = NET3.init(1, 1.0)
    (W1, b1), (W2, b2), (W3, b3) = NET3.unflatten(theta)
    wide = MLP((2, 9, 6, 1), "tanh")
    expected = wide.flatten([(torch.cat([W1] * 3), torch.cat([b1] * 3)), (torch.block_diag(W2, W2, W2), torch.cat([b2] * 3)),
                             (torch.cat([W3, W3, -W3], 1), b3)])
    T = t_global(NET3)
    assert T.target == wide and torch.equal(T(theta), expected) and T.violations == []
    bias1, bias2 = torch.tensor([0.1, 0.2, 0.3], dtype=D), torch.tensor([-1.0, 2.0], dtype=D)
    z = lambda *s: torch.zeros(*s, dtype=D)  # noqa: E731
    expected = MLP((2, 6, 4, 1), "tanh").flatten([
        (torch.cat([W1, z(3, 2)]), torch.cat([b1, bias1])),
        (torch.block_diag(W2, z(2, 3)), torch.cat([b2, bias2])),
        (torch.cat([W3, z(1, 2)], 1), b3)])
    G = t_gn(NET3, [bias1, bias2])
    assert torch.equal(G(theta), expected) and G.index_map == ((0, 1, 2, NULL, NULL, NULL), (0, 1, NULL, NULL))


def test_multipliers_beta_and_b_star_hand_computed():
    """Embedding.beta (Condition 1, = the error factors of Lemma 5.1) and Embedding.b_star (Condition 2)."""
    one = lambda m: torch.ones(m, dtype=D)  # noqa: E731
    T = splitting(NET3, 1, 1, 0.3)
    assert [b.tolist() for b in T.beta] == [[1.0, 1.0], [1.0, 0.7, 1.0, 0.3], [1.0, 1.0], [1.0]]
    assert all(torch.equal(b, torch.zeros_like(b)) for b in T.b_star) and len(T.b_star) == NET3.L + 1
    G = t_global(NET3)
    assert torch.equal(G.beta[1], torch.cat([one(6), -one(3)])) and torch.equal(G.beta[2], torch.cat([one(4), -one(2)]))
    bias1, bias2 = torch.tensor([0.1, 0.2, 0.3], dtype=D), torch.tensor([-1.0, 2.0], dtype=D)
    N = t_gn(NET3, [bias1, bias2])
    assert torch.equal(N.b_star[1], torch.cat([torch.zeros(3, dtype=D), bias1]))
    assert torch.equal(N.b_star[2], torch.cat([torch.zeros(2, dtype=D), bias2]))
    assert torch.equal(N.beta[1], torch.cat([one(3), torch.zeros(3, dtype=D)]))
    assert torch.equal(N.beta[0], one(2)) and torch.equal(N.beta[3], one(1))


def test_constant_inputs_and_check_index_map():
    alpha = torch.tensor([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]], dtype=D)
    I_prev = torch.tensor([0, NULL, NULL])
    b_star = torch.tensor([9.0, 0.4, -1.2], dtype=D)  # entry 0 (an effective neuron) is ignored
    expected = alpha[:, 1:] @ torch.tanh(b_star[1:])
    torch.testing.assert_close(constant_inputs(alpha, I_prev, b_star, torch.tanh), expected, rtol=1e-15, atol=0.0)
    assert torch.equal(constant_inputs(alpha, torch.tensor([0, 1, 2]), b_star, torch.tanh), torch.zeros(2, dtype=D))
    assert check_index_map(NET3, [torch.tensor([2, 0, 1, NULL]), (1, 0)]) == ((2, 0, 1, NULL), (1, 0))
    with pytest.raises(ValueError, match=r"not total: narrow neurons \[2\] of layer 1"):
        check_index_map(NET3, [[0, 1, 1], [0, 1]])


def test_sparse_structure_injective_and_batched_call():
    theta = NET4.init(2, 1.0, runs=5)
    for T in [splitting(NET4, 2, 1, -0.4), null(NET4, 3, 0.7), t_global(NET4), t_gn(NET4, 0.3), equal_split(NET4, 1, 0, 4)]:
        A = T.A
        assert ((A != 0).sum(1) <= 1).all()
        assert torch.linalg.matrix_rank(A).item() == NET4.num_params  # Def. 4.1: injective
        assert torch.allclose(T(theta), theta @ A.T + T.c, rtol=0, atol=1e-14)
        assert T(theta).shape == (5, T.target.num_params)


def test_alpha_round_trip_through_general_compatible():
    T = compose(null(MLP((2, 4, 2, 1), "tanh"), 2, 0.4), splitting(NET3, 1, 2, 0.25))
    for E in [T, t_global(NET4), t_gn(NET4, 0.5), equal_split(NET4, 3, 1, 3)]:
        R = general_compatible(E.source, E.index_map, E.alpha)
        assert torch.equal(R.A, E.A) and torch.equal(R.c, E.c)


# ----------------------------------------------------------------------------- Lemmas 4.1 / 4.2 (paper A Lemma 1)
@pytest.mark.parametrize("layer,neuron,alpha", [(1, 0, 0.3), (2, 1, -0.6), (1, 2, 1.7)])
def test_lemma_4_2_features_duplicated_and_errors_split(layer, neuron, alpha):
    theta = NET3.init(3, 1.0)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(7, 2, generator=gen, dtype=D), torch.randn(7, 1, generator=gen, dtype=D)
    T = splitting(NET3, layer, neuron, alpha)
    f, g, z = features_and_errors(NET3, theta, x, y)
    fw, gw, zw = features_and_errors(T.target, T(theta), x, y)
    for l in range(1, NET3.L + 1):
        if l != layer:
            assert torch.allclose(fw[l], f[l], atol=1e-14) and torch.allclose(zw[l], z[l], atol=1e-14)
            continue
        assert torch.allclose(fw[l], torch.cat([f[l], f[l][:, [neuron]]], 1), atol=1e-14)
        assert torch.allclose(gw[l], torch.cat([g[l], g[l][:, [neuron]]], 1), atol=1e-14)
        expected = z[l].clone()
        expected[:, neuron] *= 1 - alpha
        assert torch.allclose(zw[l], torch.cat([expected, alpha * z[l][:, [neuron]]], 1), atol=1e-13)


def test_lemma_4_1_null_features_and_errors():
    theta = NET3.init(5, 1.0)
    gen = torch.Generator().manual_seed(6)
    x, y = torch.randn(6, 2, generator=gen, dtype=D), torch.randn(6, 1, generator=gen, dtype=D)
    T = null(NET3, 2, 0.8)
    f, g, z = features_and_errors(NET3, theta, x, y)
    fw, gw, zw = features_and_errors(T.target, T(theta), x, y)
    const = torch.full((6, 1), torch.tanh(torch.tensor(0.8, dtype=D)).item(), dtype=D)
    assert torch.allclose(fw[2], torch.cat([f[2], const], 1), atol=1e-15)
    assert torch.allclose(gw[2], torch.cat([g[2], 1 - const ** 2], 1), atol=1e-15)
    assert torch.allclose(zw[2], torch.cat([z[2], torch.zeros(6, 1, dtype=D)], 1), atol=1e-15)
    assert torch.allclose(fw[1], f[1]) and torch.allclose(zw[1], z[1], atol=1e-14)


# ----------------------------------------------------------------------------- output and criticality
def _embeddings(net):
    """A family of compatible embeddings of ``net`` (>= 3 layers) covering every builder."""
    hidden = net.widths[1:-1]
    out = [splitting(net, 1, 0, 0.3), splitting(net, net.L - 1, hidden[-1] - 1, -1.2), null(net, 1, 0.9),
           equal_split(net, net.L - 1, 0, 3), t_global(net), t_gn(net, 0.7)]
    T1 = splitting(net, 1, 0, 0.4)
    T2 = splitting(T1.target, 1, hidden[0], 2.0)  # splits the copy made by T1
    out.append(compose(null(T2.target, net.L - 1, -0.3), T2, T1))
    index_map = [list(range(m)) + [NULL, m - 1, NULL, 0] for m in hidden]
    out.append(general_compatible(net, index_map, random_compatible(net, index_map, seed=7)))
    return out


@pytest.mark.parametrize("net", [NET3, NET4, MLP((3, 2, 2, 2), "softplus", output_bias=False)], ids=repr)
def test_output_preserved(net):
    theta = net.init(8, 1.0)
    x = torch.randn(11, net.widths[0], generator=torch.Generator().manual_seed(9), dtype=D)
    for T in _embeddings(net):
        assert rel_err(T.target.forward(T(theta), x), net.forward(theta, x)) <= 1e-12, T


@pytest.mark.parametrize("net,loss", [(NET3, "mse"), (NET4, "mse"), (MLP((2, 3, 3, 3), "gelu"), "cross_entropy")], ids=repr)
def test_criticality_preserved(net, loss):
    theta = net.init(10, 1.0)
    x, y = critical_data(net, theta, loss)
    assert grad_R(net, x, y, theta, loss).abs().max() <= 1e-14
    assert risk(net, x, y, loss)(theta) > 1e-3  # not an interpolating (trivially critical) point
    for T in _embeddings(net):
        assert T.preserves_criticality
        g = grad_R(T.target, x, y, T(theta), loss)
        assert g.abs().max() <= 1e-11, (T, g.abs().max())


def test_random_compatible_alpha_passes_the_checker():
    for net in [NET3, NET4]:
        for seed in range(5):
            # two null neurons per layer in odd seeds: their constants must cancel nontrivially (Condition 2)
            index_map = [list(range(m)) + [NULL] * 2 * (seed % 2) + [seed % m] * 2 for m in net.widths[1:-1]]
            T = general_compatible(net, index_map, random_compatible(net, index_map, seed))  # strict: must not raise
            assert T.violations == []


def _backward_violation(strict):
    """Split neuron 1 of layer 1 of NET3; layer-2 rows share the copies 0.7/0.3 and 1.5/-0.5: every row sums
    to 1 (Condition 1 forward holds, the output is kept) but beta_j is not common to both rows (backward fails)."""
    index_map = [[0, 1, 2, 1], [0, 1]]
    alpha = [list(p) for p in splitting(NET3, 1, 1, 0.3).alpha]
    alpha[1][0][1, 1], alpha[1][0][1, 3] = 1.5, -0.5
    return general_compatible(NET3, index_map, alpha, strict=strict)


def test_condition_1_backward_violation_raises_or_breaks_criticality():
    with pytest.raises(ValueError, match=r"Condition 1 \(backward\) fails at layer 2, wide neuron 1 of layer 1"):
        _backward_violation(strict=True)
    T = _backward_violation(strict=False)
    assert not T.preserves_criticality and "backward" in T.violations[0]
    theta = NET3.init(11, 1.0)
    x, y = critical_data(NET3, theta)
    assert rel_err(T.target.forward(T(theta), x), NET3.forward(theta, x)) <= 1e-12  # the output is still kept
    assert grad_R(T.target, x, y, T(theta)).abs().max() > 1e-5  # but criticality is lost (1e-16 when compatible)
    good = splitting(NET3, 1, 1, 0.3)
    assert grad_R(good.target, x, y, good(theta)).abs().max() < 1e-14


@pytest.mark.parametrize("bias,keeps", [(0.0, True), (1.0, False)])
def test_no_output_bias_null_caveat(bias, keeps):
    net = MLP((1, 2, 1), "tanh", output_bias=False)
    theta = net.init(12, 1.0)
    x, y = critical_data(net, theta)
    T = null(net, 1, bias)  # does not raise either way
    assert T.preserves_criticality is keeps
    if not keeps:
        assert "output-bias caveat" in T.violations[0] and "no output bias" in T.violations[0]
    g = grad_R(T.target, x, y, T(theta)).abs().max()
    assert (g <= 1e-11) if keeps else (g > 1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch forward-mode import
def test_found_width_1_minimum_embeds_with_degeneracy_2_paper_a_fig_4():
    """Paper A Fig. 4 (data of Fig. 1): the width-1 minimum, loss 0.109, embedded into width 3 is critical with
    degeneracy 2 = m - m_0, and a strict saddle (digest 2c: the splitting block has a negative eigenvalue)."""
    x = torch.linspace(-15, 15, 50, dtype=D)[:, None]
    y = torch.tanh(x + 7) + torch.tanh(x) + torch.tanh(x - 7)
    net = MLP((1, 1, 1), "tanh", output_bias=False)
    land = Landscape(net, x, y)
    cp = find_critical_point(land, torch.tensor([0.1, 0.0, 3.0], dtype=D), tol=1e-14)
    assert cp.risk == pytest.approx(0.109023, abs=1e-6)
    assert inertia(hessian_R(net, x, y, cp.theta)).positive == 3  # a strict local minimum of width 1
    two_steps = compose(splitting(MLP((1, 2, 1), "tanh", output_bias=False), 1, 0, 0.3), splitting(net, 1, 0, 0.6))
    for T in [equal_split(net, 1, 0, 3), two_steps]:
        assert grad_R(T.target, x, y, T(cp.theta)).abs().max() <= 1e-13
        wide = inertia(hessian_R(T.target, x, y, T(cp.theta)))
        assert wide.zero == 2 and wide.negative >= 1


# ----------------------------------------------------------------------------- critical affine subspace
def test_critical_subspace_is_critical_with_constant_loss_and_output():
    theta = NET3.init(13, 1.0)
    x, y = critical_data(NET3, theta)
    steps = [(1, 0), (2, 1), (1, 2), (1, 0)]  # split neurons with nonzero output columns (Thm 2 hypothesis)
    theta_B, V = critical_subspace(NET3, steps, theta)
    wide = MLP((2, 6, 3, 1), "tanh")
    assert V.shape == (wide.num_params, 4) and torch.linalg.matrix_rank(V).item() == 4
    R0 = risk(NET3, x, y)(theta)
    x_test = torch.randn(9, 2, generator=torch.Generator().manual_seed(14), dtype=D)
    gen = torch.Generator().manual_seed(15)
    for _ in range(5):
        point = theta_B + V @ (2 * torch.randn(4, generator=gen, dtype=D))
        assert grad_R(wide, x, y, point).abs().max() <= 1e-11
        assert abs(risk(wide, x, y)(point) - R0) <= 1e-13
        assert rel_err(wide.forward(point, x_test), NET3.forward(theta, x_test)) <= 1e-12


def test_split_operators_and_one_step_subspace():
    theta = NET3.init(16, 1.0)
    T, V = split_operators(NET3, 2, 1)
    theta_B, basis = critical_subspace(NET3, [(2, 1)], theta)
    assert torch.allclose(theta_B, T @ theta) and torch.allclose(basis[:, 0], V @ theta)
    for a in [0.0, 0.3, -2.0]:  # T^alpha_{l,s} = T_{l,s} + alpha V_{l,s}
        assert torch.allclose((T + a * V) @ theta, splitting(NET3, 2, 1, a)(theta), atol=1e-15)


# ----------------------------------------------------------------------------- composition
def test_compose_order_associativity_and_matrices():
    net = MLP((1, 2, 1), "tanh")
    T1 = splitting(net, 1, 0, 0.3)  # 1-2-1 -> 1-3-1
    T2 = splitting(T1.target, 1, 2, 0.5)  # splits the new copy: 1-3-1 -> 1-4-1
    T3 = null(T2.target, 1, -0.2)
    theta = net.init(17, 1.0)
    C = compose(T2, T1)
    assert torch.allclose(C(theta), T2(T1(theta)), rtol=0, atol=1e-15)
    assert torch.allclose(C.A, T2.A @ T1.A) and C.index_map == ((0, 1, 0, 0),)
    left, right, flat = compose(compose(T3, T2), T1), compose(T3, compose(T2, T1)), compose(T3, T2, T1)
    for other in (right, flat):
        assert torch.equal(left.A, other.A) and torch.equal(left.c, other.c) and left.index_map == other.index_map
    with pytest.raises(ValueError, match=r"cannot compose.*MLP\(1-4-1, tanh\).*MLP\(1-2-1, tanh\)"):
        compose(T1, T2)  # wrong order: T2 maps into 1-4-1 but T1 starts from 1-2-1


def test_compose_carries_constants_of_null_neurons():
    net = MLP((1, 2, 1), "tanh")
    N = null(net, 1, 0.7)  # constant entry b = 0.7 (A row empty, c = 0.7)
    S = splitting(N.target, 1, 2, 0.4)  # split the null neuron itself: its constants are copied
    C = compose(S, N)
    theta = net.init(20, 1.0)
    w, c, a = theta[:2], theta[2:4], theta[4:6]
    z = torch.zeros(2, dtype=D)
    assert torch.equal(C(theta), torch.cat([w, z, c, torch.tensor([0.7, 0.7], dtype=D), a, z, theta[6:]]))
    assert C.index_map == ((0, 1, NULL, NULL),) and C.violations == []


# ----------------------------------------------------------------------------- paper B Thm 6.2
def test_hessian_pullback_theorem_6_2():
    theta = NET3.init(18, 1.0)
    gen = torch.Generator().manual_seed(19)
    x, y = torch.randn(8, 2, generator=gen, dtype=D), torch.randn(8, 1, generator=gen, dtype=D)
    H = hessian_R(NET3, x, y, theta)
    for T in _embeddings(NET3):
        H_wide = hessian_R(T.target, x, y, T(theta))
        assert torch.allclose(T.A.T @ H_wide @ T.A, H, rtol=0, atol=1e-11 * H.abs().max())


# ----------------------------------------------------------------------------- bad inputs
def _alpha_split(layer_edit):
    alpha = [list(p) for p in splitting(NET3, 1, 0, 0.3).alpha]
    layer_edit(alpha)
    return alpha


def _alpha_null_output():
    """A null neuron (bias 0.2) of layer 1 with output weight 1 into wide neuron 0 of layer 2: tanh(0.2) leaks."""
    alpha = [list(p) for p in null(NET3, 1, 0.2).alpha]
    alpha[1][0][0, 3] = 1.0
    return alpha


@pytest.mark.parametrize("call,exc,match", [
    (lambda: splitting(NET3, 0, 0, 0.5), ValueError, r"layer must be a hidden layer in 1\.\.2.*got 0"),
    (lambda: splitting(NET3, 3, 0, 0.5), ValueError, r"layer must be a hidden layer in 1\.\.2.*got 3"),
    (lambda: splitting(NET3, 1, 3, 0.5), ValueError, r"neuron must be in 0\.\.2.*got 3"),
    (lambda: splitting(NET3, 1, -1, 0.5), ValueError, r"neuron must be in 0\.\.2"),
    (lambda: splitting(NET3, 1, 1.0, 0.5), TypeError, r"neuron must be an integer"),
    (lambda: splitting(NET3, True, 0, 0.5), TypeError, r"layer must be an integer"),
    (lambda: splitting(NET3, 1, 0, float("nan")), ValueError, r"alpha must be finite"),
    (lambda: null(NET3, 2, "0.1"), TypeError, r"bias must be a real number"),
    (lambda: equal_split(NET3, 1, 0, 0), ValueError, r"k \(the number of copies\) must be >= 1"),
    (lambda: general_compatible(NET3, [[0, 1, 1], [0, 1]], splitting(NET3, 1, 0, 0.0).alpha), ValueError,
     r"not total: narrow neurons \[2\] of layer 1"),
    (lambda: general_compatible(NET3, [[0, 1, 2]], None), ValueError, r"one entry per hidden layer l = 1\.\.2.*got 1"),
    (lambda: general_compatible(NET3, [[0, 1, 2, 5], [0, 1]], None), ValueError, r"layer 1 has entries \[5\] out of range"),
    (lambda: general_compatible(NET3, [[0, 1, 2, 0.5], [0, 1]], None), TypeError,
     r"index_map entry of layer 1 must be an integer"),
    (lambda: general_compatible(NET3, [[0, 1, 2, 0], [0, 1]], torch.ones(5)), ValueError,
     r"alpha does not fit the wide net"),
    (lambda: general_compatible(NET3, [[0, 1, 2, 0], [0, 1]], _alpha_split(lambda a: a[1][0].__setitem__((0, 3), 0.4))),
     ValueError,
     r"Condition 1 \(forward\) fails at layer 2, wide neuron 0: sum over copies of narrow neuron 0 is 1\.1, expected 1"),
    (lambda: _backward_violation(strict=True), ValueError, r"Condition 1 \(backward\) fails at layer 2"),
    (lambda: general_compatible(NET3, [[0, 1, 2, 0], [0, 1]], _alpha_split(lambda a: a[1][1].__setitem__(1, 0.1))),
     ValueError, r"Condition 2 fails at layer 2, wide neuron 1: alpha_b is 0\.1"),
    (lambda: general_compatible(NET3, [[0, 1, 2, NULL], [0, 1]], _alpha_null_output()), ValueError,
     r"Condition 2 fails at layer 2, wide neuron 0: alpha_b is 0 and the constant input from null neurons is 0\.197"),
    (lambda: compose(splitting(NET3, 1, 0, 0.1), splitting(NET3, 1, 0, 0.1)), ValueError,
     r"cannot compose.*2-4-2-1.*2-3-2-1"),
    (lambda: compose(), ValueError, r"at least one embedding"),
    (lambda: splitting(NET3, 1, 0, 0.1)(torch.zeros(5)), ValueError, r"needs a last dimension of 20 parameters"),
    (lambda: splitting(NET3, 1, 0, 0.1)(torch.full((20,), float("nan"))), ValueError, r"NaN"),
    (lambda: t_gn(NET3, [[0.0, 0.0], [0.0, 0.0]]), ValueError, r"biases of layer 1 must have 3 entries"),
    (lambda: critical_subspace(NET3, [(1,)], NET3.init(0, 1.0)), ValueError, r"step 0 must be a pair \(layer, neuron\)"),
    (lambda: t_global((2, 3, 1)), TypeError, r"net must be an MLP, got tuple"),
])
def test_bad_inputs_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
