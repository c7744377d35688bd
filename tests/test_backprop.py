"""backprop / risk_and_grad against independent references: torch.nn modules + autograd, and autograd
of the loss with respect to the features and pre-activations (the recursions of paper B App. B)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embedding_principle.backprop import backprop, risk_and_grad
from embedding_principle.losses import Loss, get_loss
from embedding_principle.network import MLP

ACTS = ["tanh", "sigmoid", "softplus", "gelu", "relu", "identity"]


def log_cosh(f, y):
    """A custom per-sample loss (smooth, not built in)."""
    return torch.log(torch.cosh(f - y)).sum(-1)


def make_problem(widths, act="tanh", output_bias=True, loss="mse", n=7, seed=0, runs=None):
    gen = torch.Generator().manual_seed(seed)
    net = MLP(widths, act, output_bias=output_bias)
    theta = net.init(seed, 0.8, runs=runs)
    x = torch.randn(n, widths[0], generator=gen, dtype=torch.float64)
    if loss == "cross_entropy":
        y = torch.randint(0, widths[-1], (n,), generator=gen)
    else:
        y = torch.randn(n, widths[-1], generator=gen, dtype=torch.float64)
    return net, theta, x, y


def torch_reference(net, theta, x, y, loss):
    """R_S and its gradient from nn.Sequential (nn.Linear + activation modules) and autograd."""
    model = net.to_torch(theta)
    out = model(x)
    if loss == "mse":
        risk = torch.nn.functional.mse_loss(out, y)
    elif loss == "cross_entropy":
        risk = torch.nn.functional.cross_entropy(out, y)
    else:
        risk = log_cosh(out, y).mean()
    grads = torch.autograd.grad(risk, list(model.parameters()))
    return risk.detach(), torch.cat([g.reshape(-1) for g in grads])


def relu_kinks_far(net, theta, x, tol=1e-6):
    if net.activation.name != "relu":
        return True
    layers = net.unflatten(theta)
    h = x
    for W, b in layers[:-1]:
        u = h @ W.T + b
        if u.abs().min() < tol:
            return False
        h = torch.relu(u)
    return True


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "custom"])
@pytest.mark.parametrize("widths", [(3, 5, 2), (2, 4, 3, 2), (3, 4, 3, 5, 2)])
@pytest.mark.parametrize("output_bias", [True, False])
def test_gradient_matches_torch_modules(act, loss, widths, output_bias):
    net, theta, x, y = make_problem(widths, act, output_bias, loss)
    assert relu_kinks_far(net, theta, x)
    lossfn = log_cosh if loss == "custom" else loss
    risk_ref, grad_ref = torch_reference(net, theta, x, y, loss)
    bp = backprop(net, theta, x, y, lossfn)
    torch.testing.assert_close(bp.grad, grad_ref, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(bp.risk, risk_ref, rtol=1e-13, atol=1e-15)
    risk, grad = risk_and_grad(net, theta, x, y, lossfn)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(risk, risk_ref, rtol=1e-13, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), depth=st.integers(2, 4), act=st.sampled_from(["tanh", "sigmoid", "gelu"]),
       m0=st.integers(1, 3), mL=st.integers(1, 3), output_bias=st.booleans())
def test_gradient_random_architectures(seed, depth, act, m0, mL, output_bias):
    hidden = [1 + (seed // 7 ** k) % 4 for k in range(depth - 1)]
    net, theta, x, y = make_problem((m0, *hidden, mL), act, output_bias, "mse", n=5, seed=seed)
    _, grad_ref = torch_reference(net, theta, x, y, "mse")
    torch.testing.assert_close(backprop(net, theta, x, y).grad, grad_ref, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(risk_and_grad(net, theta, x, y)[1], grad_ref, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_batched_equals_per_run(loss):
    net, theta, x, y = make_problem((2, 4, 3, 3), "tanh", True, loss, runs=5)
    bp = backprop(net, theta, x, y, loss)
    risk, grad = risk_and_grad(net, theta, x, y, loss)
    for r in range(5):
        one = backprop(net, theta[r], x, y, loss)
        torch.testing.assert_close(bp.grad[r], one.grad, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(grad[r], one.grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(risk[r], one.risk, rtol=1e-13, atol=0.0)
        for l in range(1, net.L + 1):
            torch.testing.assert_close(bp.z[l][r], one.z[l], rtol=1e-14, atol=1e-15)


def test_multi_dimensional_batch():
    net, theta, x, y = make_problem((1, 3, 1), "tanh", False, runs=6)
    theta = theta.reshape(2, 3, -1)
    risk, grad = risk_and_grad(net, theta, x, y)
    assert risk.shape == (2, 3) and grad.shape == (2, 3, net.num_params)
    bp = backprop(net, theta, x, y)
    assert bp.f[2].shape == (2, 3, 7, 1) and bp.grad.shape == (2, 3, net.num_params)
    torch.testing.assert_close(grad, bp.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad[1, 2], backprop(net, theta[1, 2], x, y).grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", ["tanh", "softplus", "relu"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "custom"])
def test_recursions_against_autograd_of_features(act, loss):
    """f, g, z, e of the recursions equal: the forward features, sigma'(u), dl/df^[l] and dl/du^[l]."""
    net, theta, x, y = make_problem((3, 4, 5, 3), act, True, loss, n=6, seed=3)
    lossfn = log_cosh if loss == "custom" else loss
    bp = backprop(net, theta, x, y, lossfn)
    # an independent forward pass (torch.nn.functional) keeping every u^[l] and f^[l] in the autograd graph
    modules = {"tanh": torch.tanh, "softplus": torch.nn.functional.softplus, "relu": torch.relu}
    layers = [(W.clone().requires_grad_(True), b) for W, b in net.unflatten(theta)]
    h, fs, us = x, [x], [None]
    for l, (W, b) in enumerate(layers, start=1):
        u = torch.nn.functional.linear(h, W, b)
        h = modules[act](u) if l < net.L else u
        u.retain_grad()
        h.retain_grad()
        us.append(u)
        fs.append(h)
    lobj = get_loss(lossfn)
    total = lobj(fs[-1], lobj.target(fs[-1].shape, y)).sum()   # summed over samples: per-sample gradients
    total.backward()
    for l in range(1, net.L + 1):
        torch.testing.assert_close(bp.f[l], fs[l].detach(), rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(bp.z[l], fs[l].grad, rtol=1e-12, atol=1e-14)        # z^[l] = grad_{f^[l]} l
        torch.testing.assert_close(bp.e[l], us[l].grad, rtol=1e-12, atol=1e-14)        # e^[l] = grad_{u^[l]} l
        if l < net.L:
            u = us[l].detach().requires_grad_(True)
            (gref,) = torch.autograd.grad(net.activation(u).sum(), u)
            torch.testing.assert_close(bp.g[l], gref, rtol=1e-13, atol=1e-15)
    assert bp.g[0] is None and bp.z[0] is None and bp.e[0] is None
    torch.testing.assert_close(bp.g[net.L], torch.ones_like(bp.f[net.L]))
    torch.testing.assert_close(bp.f[0], x)


def test_features_agree_with_network_forward():
    net, theta, x, y = make_problem((2, 6, 4, 2), "gelu", False, runs=3)
    bp = backprop(net, theta, x, y)
    for a, b in zip(bp.f, net.features(theta, x)):
        torch.testing.assert_close(a, b, rtol=1e-15, atol=0.0)


def test_mse_output_error_is_closed_form():
    net, theta, x, y = make_problem((2, 3, 2), "tanh", True)
    bp = backprop(net, theta, x, y)
    torch.testing.assert_close(bp.z[2], 2 * (bp.f[2] - y) / 2, rtol=1e-15, atol=0.0)


def test_gradient_matches_finite_differences():
    """A third reference: central differences of R_S."""
    net, theta, x, y = make_problem((2, 3, 2, 1), "tanh", True, seed=5)
    grad = backprop(net, theta, x, y).grad
    h = 1e-6
    eye = torch.eye(net.num_params, dtype=torch.float64)
    risk = lambda t: risk_and_grad(net, t, x, y)[0]   # noqa: E731
    fd = torch.stack([(risk(theta + h * e) - risk(theta - h * e)) / (2 * h) for e in eye])
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


def test_loss_object_and_float32():
    net, theta, x, y = make_problem((2, 4, 2), "tanh", True)
    custom = Loss("l4", lambda f, t: ((f - t) ** 4).mean(-1))
    _, ref = risk_and_grad(net, theta, x, y, custom)
    torch.testing.assert_close(backprop(net, theta, x, y, custom).grad, ref, rtol=1e-12, atol=1e-14)
    r32, g32 = risk_and_grad(net, theta.float(), x, y)
    assert g32.dtype == torch.float32 and r32.dtype == torch.float32
    torch.testing.assert_close(g32.double(), risk_and_grad(net, theta, x, y)[1], rtol=1e-4, atol=1e-5)


def test_risk_and_grad_ignores_requires_grad_and_returns_fresh_tensors():
    net, theta, x, y = make_problem((1, 3, 1), "tanh", False)
    t = theta.clone().requires_grad_(True)
    r1, g1 = risk_and_grad(net, t, x, y)
    r2, g2 = risk_and_grad(net, theta * 2, x, y)
    assert not torch.equal(g1, g2) and not g1.requires_grad


def test_bad_inputs():
    net, theta, x, y = make_problem((2, 3, 1), "tanh", True)
    with pytest.raises(ValueError, match="last dimension"):
        backprop(net, theta[:-1], x, y)
    with pytest.raises(ValueError, match="x has shape"):
        risk_and_grad(net, theta, x[:, :1], y)
    with pytest.raises(ValueError, match="targets"):
        backprop(net, theta, x, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        risk_and_grad(net, theta, x, y * float("nan"))
    with pytest.raises(ValueError, match="unknown loss"):
        backprop(net, theta, x, y, "hinge")
    with pytest.raises(TypeError, match="MLP"):
        backprop("net", theta, x, y)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        backprop(net, theta, x.expand(2, *x.shape), y)
