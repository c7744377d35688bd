"""Tests of embedding_principle.critical_sets: the compatible set A_I of paper B section 5 and its dimension.

Independent references used here: Conditions 1-2 written out below as explicit equations F(alpha, beta, b*) = 0
(not the library's checker), whose Jacobian rank gives the dimension of A_I by the implicit function theorem;
gradients and Hessians by torch.func on a risk written here; torch.linalg.matrix_rank; hand counts of the
paper's heuristic; a literal construction of T_global's beta = (1, 1, -1) (paper B Example 5.1).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.func import grad, jacrev  # noqa: E402

from embedding_principle import degeneracy  # noqa: E402
from embedding_principle.critical_sets import (  # noqa: E402
    CompatibleFamily, chord_midpoint, compatibility_multipliers, dimension_count, draw_compatible, heuristic_dimension,
    kernel_excess, lemma_5_1_check, numerical_rank, random_compatible_alpha, sampled_dimension,
    zero_output_critical_point, zero_output_freedom)
from embedding_principle.embeddings import NULL, general_compatible, splitting, t_global  # noqa: E402
from embedding_principle.landscape import Landscape  # noqa: E402
from embedding_principle.losses import get_loss  # noqa: E402
from embedding_principle.network import MLP  # noqa: E402

D = torch.float64
N = NULL

# (net, index map): splitting and null neurons, depths 2-4, with and without output bias
CASES = [
    (MLP((2, 3, 1), "tanh"), [[0, 1, 2, 0, N]]),
    (MLP((2, 3, 2, 1), "tanh"), [[0, 1, 2, 0, N, 1], [0, 1, 1, N]]),
    (MLP((2, 2, 2, 1), "softplus"), [[0, 1, 0, N, N], [0, 1, 1, N]]),
    (MLP((2, 2, 3, 2, 2), "sigmoid"), [[0, 1, 1, N], [0, 1, 2, 2, 0, N], [0, 1, 1]]),
    (MLP((3, 2, 2, 2), "gelu", output_bias=False), [[0, 1, 1, 0], [1, 0, 1]]),
]
IDS = [f"{net}-{I}" for net, I in CASES]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- independent oracles
def risk(net, x, y, loss="mse"):
    ell = get_loss(loss)
    return lambda t: ell(net.forward(t, x), y).mean()


def critical_data(net, theta, loss="mse", seed=0):
    """(x, y) making theta an exact critical point with nonzero loss (the library's construction y = f - r with
    J^T r = 0, tested in test_representation / test_degeneracy), on n = 3 P samples."""
    return degeneracy.critical_data(net, theta, n=3 * net.num_params, loss=loss, seed=seed)


class Equations:
    """Conditions 1-2 of paper B as explicit equations in z = (alpha entries, beta of effective hidden neurons,
    b* of null neurons); ``sum_rule`` replaces 'alpha_b = 0 and sum_null alpha sigma(b*) = 0' for effective
    neurons by the single 'sum_null alpha sigma(b*) + alpha_b = 0'."""

    def __init__(self, net, index_map, sum_rule=False):
        self.net, self.sum_rule = net, sum_rule
        self.I = [list(range(net.widths[0])), *map(list, index_map), list(range(net.widths[-1]))]
        self.wide = net.with_widths([len(v) for v in self.I])
        self.eff = [[i for i, v in enumerate(I_l) if v != N] for I_l in self.I]
        self.null = [[i for i, v in enumerate(I_l) if v == N] for I_l in self.I]
        self.n_alpha = self.wide.num_params
        self.n_beta = sum(len(self.eff[l]) for l in range(1, net.L))
        self.n_bstar = sum(len(self.null[l]) for l in range(1, net.L))

    def pack(self, alpha_layers, beta, b_star):
        a = self.wide.flatten(alpha_layers)
        bt = torch.cat([beta[l][self.eff[l]] for l in range(1, self.net.L)])
        bs = torch.cat([b_star[l][self.null[l]] for l in range(1, self.net.L)] + [torch.zeros(0, dtype=D)])
        return torch.cat([a, bt, bs])

    def __call__(self, z):
        net, L, sigma = self.net, self.net.L, self.net.activation
        layers = self.wide.unflatten(z[:self.n_alpha])
        rest = z[self.n_alpha:]
        beta, b_star, k0, k1 = [None] * (L + 1), [None] * (L + 1), 0, self.n_beta
        beta[L] = torch.ones(len(self.I[L]), dtype=D)
        for l in range(1, L):
            full = torch.zeros(len(self.I[l]), dtype=D)
            beta[l] = full.index_put((torch.tensor(self.eff[l], dtype=torch.long),), rest[k0:k0 + len(self.eff[l])])
            k0 += len(self.eff[l])
            full = torch.zeros(len(self.I[l]), dtype=D)
            idx = torch.tensor(self.null[l], dtype=torch.long)
            b_star[l] = full.index_put((idx,), rest[k1:k1 + len(self.null[l])])
            k1 += len(self.null[l])
        out = []
        for l in range(1, L + 1):
            A, ab = layers[l - 1]
            for i in range(len(self.I[l])):
                for s in range(net.widths[l - 1]):
                    cols = [j for j, v in enumerate(self.I[l - 1]) if v == s]
                    out.append(A[i, cols].sum() - (1.0 if self.I[l][i] != N else 0.0))  # forward
            if l >= 2:
                for k in range(net.widths[l]):
                    rows = [i for i, v in enumerate(self.I[l]) if v == k]
                    for j in range(len(self.I[l - 1])):
                        target = beta[l - 1][j] if self.I[l - 1][j] != N else torch.zeros((), dtype=D)
                        out.append((beta[l][rows] * A[rows, j]).sum() - target)  # backward
            nul_prev = self.null[l - 1]
            const = torch.zeros(len(self.I[l]), dtype=D)
            if nul_prev:
                const = A[:, nul_prev] @ sigma(b_star[l - 1][nul_prev])
            ab = torch.zeros(len(self.I[l]), dtype=D) if ab is None else ab
            for i in range(len(self.I[l])):
                if self.I[l][i] == N:
                    out.append(const[i] + ab[i] - b_star[l][i])
                elif self.sum_rule:
                    out.append(const[i] + ab[i])
                else:
                    out += [ab[i], const[i]]
        return torch.stack(out)

    def dimension(self, z):
        """dim of {F = 0} at z: number of unknowns minus the rank of dF (implicit function theorem)."""
        J = jacrev(self)(z)
        s = torch.linalg.svdvals(J)
        return z.numel() - int((s > 1e-9 * s.max()).sum())


# ----------------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("net,I", CASES, ids=IDS)
def test_samples_satisfy_conditions_independently_and_pass_the_library_checker(net, I):
    family = CompatibleFamily(net, I)
    eqs = Equations(net, I)
    for seed in range(3):
        p = family.sample(seed)
        alpha = family.alpha(p)
        T = general_compatible(net, I, alpha)  # strict: raises on any violation of Conditions 1-2
        assert T.target == family.target
        z = eqs.pack(alpha, family.beta(p), family.b_star(p))
        assert eqs(z).abs().max() <= 1e-12
        mult = compatibility_multipliers(T)  # the library's reading of beta and b* must match the construction
        for l in range(1, net.L):
            assert torch.allclose(mult.beta[l], family.beta(p)[l], atol=1e-12)
            assert torch.allclose(mult.b_star[l], family.b_star(p)[l], atol=1e-12)


@pytest.mark.parametrize("net,I", CASES, ids=IDS)
def test_samples_preserve_output_and_criticality(net, I):
    theta = net.init(3, 1.0)
    loss = "cross_entropy" if net.widths[-1] > 1 and not net.output_bias else "mse"
    x, y = critical_data(net, theta, loss)
    assert grad(risk(net, x, y, loss))(theta).abs().max() <= 1e-14
    x_test = torch.randn(17, net.widths[0], generator=torch.Generator().manual_seed(1), dtype=D)
    for seed in range(3):
        T = general_compatible(net, I, random_compatible_alpha(net, I, seed))
        wide = T(theta)
        assert (T.target.forward(wide, x_test) - net.forward(theta, x_test)).abs().max() <= 1e-12
        assert grad(risk(T.target, x, y, loss))(wide).abs().max() <= 1e-12


def test_sum_rule_family_is_critical_but_flagged_by_the_literal_condition_2():
    net, I = MLP((2, 2, 2, 1), "tanh"), [[0, 1, 0, N], [0, 1, 1, N]]
    family = CompatibleFamily(net, I, condition2="sum")
    p = family.sample(0)
    eqs = Equations(net, I, sum_rule=True)
    assert eqs(eqs.pack(family.alpha(p), family.beta(p), family.b_star(p))).abs().max() <= 1e-12
    with pytest.raises(ValueError, match="Condition 2 fails.*they cancel"):
        family.embedding(p)
    T = family.embedding(p, strict=False)
    theta = net.init(6, 1.0)
    x, y = critical_data(net, theta)
    assert grad(risk(T.target, x, y))(T(theta)).abs().max() <= 1e-12
    assert (T.target.forward(T(theta), x) - net.forward(theta, x)).abs().max() <= 1e-12


def test_points_match_the_library_embedding_and_seeds_are_reproducible():
    net, I = CASES[1]
    family = CompatibleFamily(net, I)
    theta = net.init(0, 1.0)
    ps = torch.stack([family.sample(s) for s in range(4)])
    expected = torch.stack([family.embedding(p)(theta) for p in ps])
    assert torch.allclose(family.points(ps, theta), expected, rtol=0, atol=1e-14)
    assert torch.equal(family.points(ps[0], theta), family.points(ps, theta)[0])
    a, b = random_compatible_alpha(net, I, 5), random_compatible_alpha(net, I, 5)
    assert all(torch.equal(u[0], v[0]) for u, v in zip(a, b))
    assert not torch.equal(random_compatible_alpha(net, I, 6)[1][0], a[1][0])
    zero = family.alpha(family.sample(0, scale=0.0))  # equal shares: beta = 1/c, alpha blocks 1 beta^T
    assert torch.allclose(zero[0][0][:3], torch.ones(3, 2, dtype=D))
    assert torch.allclose(zero[1][0][1], torch.tensor([0.5, 0.5, 1.0, 0.5, 0.0, 0.5], dtype=D))  # beta of layer 1


def test_t_global_multipliers_are_one_one_minus_one():
    net = MLP((2, 3, 2, 1), "tanh")
    mult = compatibility_multipliers(t_global(net))
    for l, m in ((1, 3), (2, 2)):
        assert torch.equal(mult.beta[l], torch.tensor([1.0] * 2 * m + [-1.0] * m, dtype=D))
    assert torch.equal(mult.beta[3], torch.ones(1, dtype=D))


# ----------------------------------------------------------------------------- dimension
def test_heuristic_dimension_hand_counts():
    net = MLP((2, 3, 2, 1), "tanh")
    assert heuristic_dimension(net, [[0, 1, 2, 0], [0, 1]]) == 1  # K = 1, K_1 K_2 = 0
    assert heuristic_dimension(net, [[0, 1, 2, 0], [0, 1, 1]]) == 2 + 1
    assert heuristic_dimension(net, [[0, 1, 2] * 3, [0, 1] * 3]) == 10 + 6 * 4  # T_global: K = 6 + 4, K_1 K_2 = 24
    assert heuristic_dimension(MLP((3, 4, 2), "tanh"), [[0, 1, 2, 3, N, 0, 0]]) == 3  # L = 2: just K
    c = dimension_count(net, [[0, 1, 2, 0, N, N], [0, 1, 1]])
    assert (c.K, c.beta, c.alpha, c.null_biases, c.condition2, c.heuristic, c.total) == (4, 2, 3, 2, -1, 7, 6)


@pytest.mark.parametrize("net,I", CASES[:4], ids=IDS[:4])
@pytest.mark.parametrize("rule", ["paper", "sum"])
def test_sampled_dimension_matches_the_implicit_function_theorem(net, I, rule):
    family = CompatibleFamily(net, I, condition2=rule)
    p0 = family.sample(2)
    eqs = Equations(net, I, sum_rule=rule == "sum")
    reference = eqs.dimension(eqs.pack(family.alpha(p0), family.beta(p0), family.b_star(p0)))
    measured = sampled_dimension(family, net.init(4, 1.0), p0, seed=5)
    assert measured.dimension == reference
    assert measured.gap > 1e4
    count = dimension_count(net, I)
    assert reference == (count.total if rule == "paper" else count.heuristic)


def test_numerical_rank_against_matrix_rank():
    gen = torch.Generator().manual_seed(0)
    for r in (0, 1, 3, 5):
        A = torch.randn(12, r, generator=gen, dtype=D) @ torch.randn(r, 9, generator=gen, dtype=D)
        res = numerical_rank(A if r else torch.zeros(12, 9, dtype=D) + 0.0 * A.sum())
        assert res.dimension == torch.linalg.matrix_rank(A).item()
        assert res.basis.shape == (r, 9)
        if r:
            assert torch.allclose(res.basis @ res.basis.T, torch.eye(r, dtype=D), atol=1e-12)


def test_kernel_excess_on_a_known_matrix():
    Q = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=D)).Q
    H = Q @ torch.diag(torch.tensor([0.0, 0.0, 0.0, 1.0, -2.0, 3.0], dtype=D)) @ Q.T
    res = kernel_excess(H, torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=D) @ Q[:, :2].T)
    assert (res.kernel_dim, res.tangent_dim, res.excess.shape[0]) == (3, 2, 1)
    assert res.tangent_in_kernel <= 1e-14
    assert abs(abs((res.excess[0] @ Q[:, 2]).item()) - 1.0) <= 1e-12
    assert kernel_excess(H, Q[:, 3:4].T).tangent_in_kernel == pytest.approx(1 / 3)  # a tangent outside the kernel


def test_hessian_kernel_is_heuristic_plus_zero_output_freedom():
    """2-2-2-1 with null neurons in both layers: A_I has 7 dimensions (paper's Condition 2), 8 with the summed
    rule (= the heuristic), and the Hessian kernel one more: the null neuron of layer 2 has zero output weights."""
    net, I = MLP((2, 2, 2, 1), "tanh"), [[0, 1, 0, N], [0, 1, 1, N]]
    theta = net.init(6, 1.0)
    x, y = critical_data(net, theta)
    names = MLP((2, 4, 4, 1), "tanh").param_names()
    dead = torch.tensor([n.startswith("W[2][3,") or n == "b[2][3]" for n in names])
    for rule, dim in (("paper", 7), ("sum", 8)):
        family = CompatibleFamily(net, I, condition2=rule)
        p0 = family.sample(0)
        T = family.embedding(p0, strict=rule == "paper")
        H = jacrev(jacrev(risk(T.target, x, y)))(T(theta))
        tangent = sampled_dimension(family, theta, p0, seed=3)
        res = kernel_excess(H, tangent.basis)
        assert (tangent.dimension, res.kernel_dim) == (dim, 9)
        assert res.tangent_in_kernel <= 1e-8
        assert zero_output_freedom(T, theta) == 1
        assert res.kernel_dim == heuristic_dimension(net, I) + zero_output_freedom(T, theta)
        if rule == "sum":  # what the summed rule leaves unexplained lives on the dead neuron's incoming weights
            assert res.excess.shape[0] == 1 and res.excess[0, dead].norm() > 0.999


def test_zero_output_critical_point_moves_a_dead_neuron_and_stays_critical():
    net, I = MLP((2, 2, 2, 1), "tanh"), [[0, 1, 0, N], [0, 1, 1, N]]
    theta = net.init(6, 1.0)
    x, y = critical_data(net, theta)
    T = CompatibleFamily(net, I).embedding(CompatibleFamily(net, I).sample(0))
    land = Landscape(T.target, x, y)
    start = T(theta)
    for t in (0.05, 0.3):
        new = zero_output_critical_point(land, start, 2, 3, torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=D), t)
        assert grad(risk(T.target, x, y))(new).abs().max() <= 1e-12
        assert (T.target.forward(new, x) - net.forward(theta, x)).abs().max() <= 1e-12
        f2 = T.target.features(new, x)[2][:, 3]
        assert (f2.max() - f2.min()).item() > 0.1 * t  # the neuron is no longer null: representation changed
        assert (new - start).norm().item() == pytest.approx(t * 2 ** 0.5, rel=0.2)
    null_only = CompatibleFamily(MLP((3, 2, 2, 1), "tanh"), [[0, 1, N], [0, 1, N]])
    T2 = null_only.embedding(null_only.sample(0))  # layer-1 null feeds only the dead layer-2 null: both dead
    assert zero_output_freedom(T2, MLP((3, 2, 2, 1), "tanh").init(5, 1.0)) == (3 - 2) + (2 - 1)
    with pytest.raises(ValueError, match="nonzero outgoing weights"):
        zero_output_critical_point(land, start, 2, 0, torch.zeros(5, dtype=D), 0.1)


# ----------------------------------------------------------------------------- curvature
def test_chord_midpoint_affine_for_two_layers_and_one_split_layer_curved_otherwise():
    gen = torch.Generator().manual_seed(1)
    for net, I, curved in [(MLP((2, 3, 1), "tanh"), [[0, 1, 2, 0, 1]], False),
                           (MLP((2, 2, 2, 1), "tanh"), [[0, 1, 0], [0, 1]], False),
                           (MLP((2, 2, 2, 1), "tanh"), [[0, 1, 0], [0, 1, 1]], True)]:
        theta = net.init(6, 1.0)
        x, y = critical_data(net, theta)
        family = CompatibleFamily(net, I)
        land = Landscape(family.target, x, y)
        p0, xi = family.sample(0), torch.randn(family.num_params, generator=gen, dtype=D)
        grads = []
        for t in (0.2, 0.1):
            r = chord_midpoint(family.embedding(p0 + t * xi), family.embedding(p0 - t * xi), theta, land)
            assert max(r.grad_a, r.grad_b) <= 1e-13 and r.output_gap_mid <= 1e-13  # forward rule is linear
            grads.append(r.grad_mid)
            assert (len(r.violations_mid) > 0) is curved
        if curved:
            assert grads[1] > 1e-9 and 3.0 < grads[0] / grads[1] < 5.0  # ~ chord length squared
            assert "Condition 1 (backward)" in r.violations_mid[0]
        else:
            assert max(grads) <= 1e-13


# ----------------------------------------------------------------------------- Lemma 5.1
def test_lemma_5_1_features_copied_errors_scaled_by_beta():
    net, I = CASES[1]
    theta = net.init(2, 1.0)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(9, 2, generator=gen, dtype=D), torch.randn(9, 1, generator=gen, dtype=D)  # any data
    T = general_compatible(net, I, random_compatible_alpha(net, I, 1))
    res = lemma_5_1_check(T, theta, x, y)
    assert max(res.features, res.null_features, res.errors, res.null_errors) <= 1e-13
    assert len(res.pairs) == net.L - 1 and res.pairs[0][0].numel() == 9 * 5
    bad = general_compatible(net, I, [(W * 1.1, b) for W, b in random_compatible_alpha(net, I, 1)], strict=False)
    assert lemma_5_1_check(bad, theta, x, y).features > 1e-3


# ----------------------------------------------------------------------------- diagrams
def test_draw_compatible_prints_alpha_beta_and_the_sums():
    net = MLP((1, 2, 2, 1), "tanh")
    family = CompatibleFamily(net, [[0, 1, 0], [0, 1, 1]])
    T = family.embedding(family.sample(2, 0.5))
    theta = net.init(3, 1.0)
    _, ax = plt.subplots()
    draw_compatible(ax, T, theta, into=(2, 1))
    texts = [t.get_text() for t in ax.texts]
    assert len(ax.patches) == sum(T.target.widths)
    alpha = T.alpha[1][0]
    assert {f"{alpha[1, j].item():.2f}".rstrip("0").rstrip(".") for j in range(3)} <= set(texts)
    sums = texts[-1].splitlines()
    assert sums[0].startswith("s=0: Σα = ") and sums[0].split(";")[0].endswith("= 1")
    assert "W[2][1,0]" in sums[0]
    assert sum(t.startswith("β=") for t in texts) == 6
    _, ax = plt.subplots()
    draw_compatible(ax, T, theta, out_of=(1, 0))
    assert ax.texts[-1].get_text().splitlines()[-1].startswith("common value β_j")


# ----------------------------------------------------------------------------- bad inputs
NET = MLP((2, 3, 2, 1), "tanh")
FAM = CompatibleFamily(NET, [[0, 1, 2, 0], [0, 1]])


@pytest.mark.parametrize("call,exc,match", [
    (lambda: CompatibleFamily((2, 3, 1), [[0, 1, 2]]), TypeError, r"net must be an MLP"),
    (lambda: CompatibleFamily(NET, [[0, 1, 1], [0, 1]]), ValueError, r"not total"),
    (lambda: CompatibleFamily(NET, [[0, 1, 2]]), ValueError, r"one entry per hidden layer"),
    (lambda: CompatibleFamily(NET, [[0, 1, 2], [0, 1]], condition2="loose"), ValueError, r"condition2 must be"),
    (lambda: FAM.alpha(torch.zeros(3)), ValueError, r"p must have shape"),
    (lambda: FAM.alpha(torch.full((FAM.num_params,), float("nan"))), ValueError, r"NaN"),
    (lambda: FAM.sample(0, scale=-1.0), ValueError, r"scale must be a finite non-negative"),
    (lambda: FAM.sample(1.5), TypeError, r"seed must be an integer"),
    (lambda: FAM.points(FAM.sample(0), NET.init(0, 1.0, runs=2)), ValueError, r"not a batch"),
    (lambda: random_compatible_alpha(NET, [[0, 1, 2, 7], [0, 1]], 0), ValueError, r"out of range"),
    (lambda: compatibility_multipliers("T"), TypeError, r"T must be an Embedding"),
    (lambda: numerical_rank(torch.zeros(0, 3)), ValueError, r"non-empty matrix"),
    (lambda: numerical_rank(torch.eye(3), rtol=0.0), ValueError, r"rtol must be positive"),
    (lambda: sampled_dimension("family", NET.init(0, 1.0)), TypeError, r"CompatibleFamily"),
    (lambda: sampled_dimension(FAM, NET.init(0, 1.0), n_samples=0), ValueError, r"n_samples must be >= 1"),
    (lambda: sampled_dimension(FAM, NET.init(0, 1.0), eps=-1.0), ValueError, r"eps must be positive"),
    (lambda: kernel_excess(torch.eye(3), torch.zeros(1, 4)), ValueError, r"tangent must have shape \(d, 3\)"),
    (lambda: kernel_excess(torch.zeros(3, 2), torch.zeros(1, 3)), ValueError, r"hessian must be a square"),
    (lambda: chord_midpoint(splitting(NET, 1, 0, 0.3), splitting(NET, 1, 1, 0.3), NET.init(0, 1.0),
                            Landscape(MLP((2, 4, 2, 1)), torch.zeros(3, 2), torch.zeros(3, 1))),
     ValueError, r"same narrow net with the same index map"),
    (lambda: chord_midpoint(splitting(NET, 1, 0, 0.3), splitting(NET, 1, 0, 0.6), NET.init(0, 1.0),
                            Landscape(NET, torch.zeros(3, 2), torch.zeros(3, 1))),
     ValueError, r"Landscape of the wide net"),
    (lambda: draw_compatible(plt.gca(), splitting(NET, 1, 0, 0.3), neurons="all"), ValueError, r"neurons must be"),
    (lambda: draw_compatible(plt.gca(), splitting(NET, 1, 0, 0.3), into=(1, 0), out_of=(1, 0)), ValueError,
     r"at most one of into and out_of"),
    (lambda: draw_compatible(plt.gca(), splitting(NET, 1, 0, 0.3), into=(0, 0)), ValueError, r"into must be a"),
    (lambda: draw_compatible(plt.gca(), splitting(NET, 1, 0, 0.3), out_of=(3, 0)), ValueError, r"out_of must be a"),
    (lambda: zero_output_critical_point(Landscape(NET, torch.zeros(3, 2), torch.zeros(3, 1)), NET.init(0, 1.0),
                                        3, 0, torch.zeros(3), 0.1), ValueError, r"hidden layer in 1\.\.2"),
    (lambda: zero_output_freedom(None, NET.init(0, 1.0)), TypeError, r"T must be an Embedding"),
])
def test_bad_inputs_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
