"""Tests of the shared helpers of embedding_principle.network: sigma'' and the argument checks.

References: closed-form second derivatives of the named activations; torch.autograd (reverse over reverse) for a
custom activation; hand-written good and bad arguments. (The forward map, flat layout and torch.nn conversion are
exercised by every other test file.)
"""

import math

import pytest
import torch

from embedding_principle.network import ACTIVATIONS, MLP, Activation, check_int, check_mlp, check_real

D = torch.float64
U = torch.linspace(-3.0, 3.0, 41, dtype=D) + 0.013  # no sample at the ReLU kink


def _closed_form(name: str, u: torch.Tensor) -> torch.Tensor:
    t, s = torch.tanh(u), torch.sigmoid(u)
    phi = torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    return {"tanh": -2 * t * (1 - t ** 2), "sigmoid": s * (1 - s) * (1 - 2 * s), "softplus": s * (1 - s),
            "gelu": phi * (2 - u * u), "relu": torch.zeros_like(u), "identity": torch.zeros_like(u)}[name]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_second_derivative_matches_closed_forms(name):
    torch.testing.assert_close(ACTIVATIONS[name].second_derivative(U), _closed_form(name, U), rtol=1e-13,
                               atol=1e-15)


def test_second_derivative_of_a_custom_activation_matches_autograd():
    act = Activation("cubic_sine", lambda u: u ** 3 * torch.sin(u))
    u = U.clone().requires_grad_(True)
    (d1,) = torch.autograd.grad(act(u).sum(), u, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), u)
    torch.testing.assert_close(act.second_derivative(U), d2, rtol=1e-13, atol=1e-14)
    assert act.second_derivative(U.reshape(-1, 1)).shape == (U.numel(), 1)  # coordinate-wise, any shape


def test_check_int_and_check_real():
    assert check_int(3, "k") == 3 and type(check_int(torch.tensor(2).item(), "k")) is int
    assert check_int(2, "k", minimum=2) == 2
    with pytest.raises(TypeError, match="k must be an integer, got True"):
        check_int(True, "k")
    with pytest.raises(TypeError, match="k must be an integer"):
        check_int(1.0, "k")
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        check_int(0, "k", minimum=1)
    assert check_real(2, "a") == 2.0 and check_real(torch.tensor([0.5]), "a") == 0.5
    with pytest.raises(TypeError, match="a must be a real number"):
        check_real("0.5", "a")
    with pytest.raises(TypeError, match="a must be a real number"):
        check_real(False, "a")
    with pytest.raises(ValueError, match="a must be finite"):
        check_real(float("inf"), "a")
    assert check_real(1e-300, "t", positive=True) == 1e-300
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="t must be positive and finite"):
            check_real(bad, "t", positive=True)


def test_check_mlp_layer_neuron_and_one_theta():
    net = MLP((2, 3, 4, 1), "tanh", output_bias=False)
    assert check_mlp(net) is net
    with pytest.raises(TypeError, match="wide must be an MLP, got tuple"):
        check_mlp((2, 3, 1), "wide")
    assert [net.check_layer(l) for l in (1, 2)] == [1, 2]
    for bad in (0, 3):
        with pytest.raises(ValueError, match=rf"layer must be a hidden layer in 1\.\.2 for .*got {bad}"):
            net.check_layer(bad)
    with pytest.raises(TypeError, match="layer must be an integer"):
        net.check_layer(1.0)
    assert net.check_neuron(2, 3) == 3
    with pytest.raises(ValueError, match=r"neuron must be in 0\.\.2 \(layer 1 of .* has 3 neurons\), got 3"):
        net.check_neuron(1, 3)
    with pytest.raises(TypeError, match="neuron must be an integer"):
        net.check_neuron(1, True)
    theta = net.init(0, 1.0)
    assert net.check_one_theta(theta) is theta
    with pytest.raises(ValueError, match=r"reduce takes one parameter vector, not a batch.*got \(2, 29\)"):
        net.check_one_theta(net.init(0, 1.0, runs=2), "reduce")
    assert [net.has_bias(l) for l in (1, 2, 3)] == [True, True, False]
    assert MLP((2, 3, 1)).has_bias(2)
