"""Fully connected networks in the papers' notation (paper A section 4, paper B section 3.1).

An L-layer network (L >= 2) has widths (m_0, ..., m_L), m_0 = d inputs and m_L = d' outputs.
Its parameters form the 2L-tuple theta = (W^[1], b^[1], ..., W^[L], b^[L]) with
W^[l] in R^{m_l x m_{l-1}}; we store theta as one flat vector in exactly this order, each
W^[l] row-major. The forward map is

    f^[0](x) = x,   f^[l](x) = sigma(W^[l] f^[l-1](x) + b^[l])  for l in [L-1],
    f_theta(x) = f^[L](x) = W^[L] f^[L-1](x) + b^[L].

The theory has an output bias b^[L]; every experiment of paper A has none, so it is optional
(``output_bias=False`` drops b^[L] from theta). Hidden layers are numbered 1..L-1 as in the
papers; neuron indices are 0-based.

Every method accepts a leading batch of parameter vectors, theta of shape (..., P), so that
many independent networks are evaluated in one computation.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import torch
from torch import Tensor, nn
from torch.func import jvp

__all__ = ["Activation", "ACTIVATIONS", "MLP", "as_tensor", "check_mlp", "check_int", "check_real"]

# torch imports its forward-mode decompositions on the first jvp and, in torch 2.13, warns there that
# torch.jit.script is deprecated (a torch-internal call). Import them once here, in the lowest module that uses
# forward mode (Activation.second_derivative; landscape's Hessian-vector products import this module), with that
# warning silenced, so that Hessians and HVPs stay warning-free (tests run with warnings as errors).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
    try:
        import torch._decomp.decompositions_for_jvp  # noqa: F401
    except ImportError:  # pragma: no cover - private module moved in another torch version
        pass


# ----------------------------------------------------------------------------- activations
@dataclass(frozen=True, eq=False)
class Activation:
    """A coordinate-wise activation sigma with its derivative sigma' (the g^[l] of the papers).

    ``derivative`` may be None for a user callable: sigma' is then taken by autograd.
    ReLU uses the fixed subgradient sigma'(0) = 0 (paper A, Assumption (iv)).
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    derivative_fn: Callable[[Tensor], Tensor] | None = None

    def __call__(self, u: Tensor) -> Tensor:
        return self.fn(u)

    def derivative(self, u: Tensor) -> Tensor:
        """sigma'(u), coordinate-wise."""
        if self.derivative_fn is not None:
            return self.derivative_fn(u)
        with torch.enable_grad():
            v = u.detach().requires_grad_(True)
            (d,) = torch.autograd.grad(self.fn(v).sum(), v)
        return d

    def second_derivative(self, u: Tensor) -> Tensor:
        """sigma''(u), coordinate-wise, by nested forward-mode differentiation of sigma (exact in floating point
        arithmetic up to round-off; 0 for ReLU away from the kink, like its subgradient convention at 0).

        It enters the residual curvature H^(2) (paper B section 3.3) and the splitting matrix (paper B section 6).
        """
        ones = torch.ones_like(u)
        return jvp(lambda v: jvp(self.fn, (v,), (ones,))[1], (u,), (ones,))[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activation):
            return NotImplemented
        return self.name == other.name and self.fn is other.fn

    def __hash__(self) -> int:
        return hash((self.name, id(self.fn)))

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _gelu_derivative(u: Tensor) -> Tensor:
    # d/du [u Phi(u)] = Phi(u) + u phi(u)
    return 0.5 * (1 + torch.erf(u / math.sqrt(2))) + u * torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("tanh", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2),
        Activation("sigmoid", torch.sigmoid, lambda u: torch.sigmoid(u) * (1 - torch.sigmoid(u))),
        Activation("softplus", lambda u: torch.logaddexp(u, torch.zeros_like(u)), torch.sigmoid),
        Activation("gelu", lambda u: nn.functional.gelu(u), _gelu_derivative),
        Activation("relu", torch.relu, lambda u: (u > 0).to(u.dtype)),
        Activation("identity", lambda u: u, torch.ones_like),
    ]
}


def _as_activation(activation: Union[str, Activation, Callable[[Tensor], Tensor]]) -> Activation:
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)} or pass a callable")
        return ACTIVATIONS[activation]
    if callable(activation):
        return Activation(getattr(activation, "__name__", "custom"), activation)
    raise TypeError(f"activation must be a name, an Activation or a callable, not {type(activation).__name__}")


def as_tensor(value, name: str = "theta", dtype: torch.dtype | None = None) -> Tensor:
    """Convert ``value`` to a floating tensor (float64 unless a float tensor is given) and reject NaN/inf."""
    if isinstance(value, Tensor):
        t = value if value.is_floating_point() else value.to(torch.float64)
    else:
        try:
            t = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be array-like of numbers, got {type(value).__name__}") from err
    if dtype is not None:
        t = t.to(dtype)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite entries")
    return t


# ----------------------------------------------------------------------------- argument checks
def check_int(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an int: TypeError unless it is an integer (bool is not), ValueError if below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(value, name: str, positive: bool = False) -> float:
    """``value`` (a real number or a one-element tensor) as a float: TypeError unless it is a real number (bool is
    not), ValueError unless it is finite (and > 0 with ``positive``)."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be {'positive and ' if positive else ''}finite, got {value}")
    return float(value)


def check_mlp(net, name: str = "net") -> "MLP":
    """``net`` itself if it is an :class:`MLP`, else TypeError naming the argument."""
    if not isinstance(net, MLP):
        raise TypeError(f"{name} must be an MLP, got {type(net).__name__}")
    return net


# ----------------------------------------------------------------------------- the network
@dataclass(frozen=True)
class MLP:
    """The architecture NN({m_l}_{l=0}^L) with an activation and an optional output bias.

    ``MLP((1, 500, 1), "tanh", output_bias=False)`` is the network of paper A Fig. 1.
    Two MLPs are equal when widths, activation and output bias agree.
    """

    widths: tuple[int, ...]
    activation: Activation = field(default_factory=lambda: ACTIVATIONS["tanh"])
    output_bias: bool = True

    def __init__(self, widths: Sequence[int], activation: Union[str, Activation, Callable] = "tanh",
                 output_bias: bool = True) -> None:
        widths = tuple(widths)
        if len(widths) < 3:
            raise ValueError(f"an MLP needs L >= 2 layers, i.e. at least 3 widths (m_0, m_1, m_2); got {widths}")
        if not all(isinstance(m, int) and not isinstance(m, bool) for m in widths):
            raise TypeError(f"widths must be integers, got {widths}")
        if min(widths) < 1:
            raise ValueError(f"every width must be >= 1, got {widths}")
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "activation", _as_activation(activation))
        object.__setattr__(self, "output_bias", bool(output_bias))

    # --- shape bookkeeping ------------------------------------------------------------
    @property
    def L(self) -> int:
        """Depth L: the number of affine layers."""
        return len(self.widths) - 1

    def has_bias(self, l: int) -> bool:
        """Whether layer l (1..L) has a bias b^[l]: every hidden layer does, the output layer if ``output_bias``."""
        return l < self.L or self.output_bias

    _has_bias = has_bias  # the former private name, still used by backprop.py

    def check_layer(self, layer) -> int:
        """``layer`` as an int if it is a hidden layer l in 1..L-1 (TypeError / ValueError otherwise)."""
        layer = check_int(layer, "layer")
        if not 1 <= layer <= self.L - 1:
            raise ValueError(f"layer must be a hidden layer in 1..{self.L - 1} for {self}, got {layer}")
        return layer

    def check_neuron(self, layer: int, neuron) -> int:
        """``neuron`` as an int if it is a 0-based neuron index of layer ``layer`` (TypeError / ValueError else)."""
        neuron = check_int(neuron, "neuron")
        m = self.widths[layer]
        if not 0 <= neuron < m:
            raise ValueError(f"neuron must be in 0..{m - 1} (layer {layer} of {self} has {m} neurons), got {neuron}")
        return neuron

    @property
    def layer_slices(self) -> list[tuple[slice, slice | None]]:
        """For l = 1..L (list index l-1): the slices of W^[l] and b^[l] in the flat theta."""
        out, start = [], 0
        for l in range(1, self.L + 1):
            m_out, m_in = self.widths[l], self.widths[l - 1]
            w = slice(start, start + m_out * m_in)
            start = w.stop
            b = None
            if self.has_bias(l):
                b = slice(start, start + m_out)
                start = b.stop
            out.append((w, b))
        return out

    @property
    def num_params(self) -> int:
        """M = sum_l (m_{l-1} + 1) m_l (minus m_L without output bias)."""
        w, b = self.layer_slices[-1]
        return (b or w).stop

    @property
    def num_hidden_params(self) -> int:
        """M^[L-1]: the length of theta^[L-1] = (W^[1], b^[1], ..., W^[L-1], b^[L-1]), a prefix of theta."""
        return self.layer_slices[-1][0].start

    def with_widths(self, widths: Sequence[int]) -> "MLP":
        """The same activation and output-bias convention with other widths."""
        return MLP(widths, self.activation, self.output_bias)

    def param_names(self) -> list[str]:
        """Human-readable names of the entries of theta, e.g. 'W[2][0,3]' and 'b[1][2]'."""
        names = []
        for l, (w, b) in enumerate(self.layer_slices, start=1):
            names += [f"W[{l}][{i},{j}]" for i in range(self.widths[l]) for j in range(self.widths[l - 1])]
            if b is not None:
                names += [f"b[{l}][{i}]" for i in range(self.widths[l])]
        return names

    # --- parameters -------------------------------------------------------------------
    def init(self, seed: int, std: float, runs: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """Draw every parameter i.i.d. from N(0, std^2); shape (P,) or (runs, P).

        The papers write N(0, 1/m^3) for a *variance*: pass ``std = m ** -1.5``.
        """
        if std < 0 or not math.isfinite(std):
            raise ValueError(f"std must be a finite non-negative number, got {std}")
        gen = torch.Generator().manual_seed(int(seed))
        shape = (self.num_params,) if runs is None else (int(runs), self.num_params)
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) * std

    def check_theta(self, theta) -> Tensor:
        """Return theta as a tensor of shape (..., P), raising ValueError on a wrong length or NaN."""
        theta = as_tensor(theta, "theta")
        if theta.ndim == 0 or theta.shape[-1] != self.num_params:
            raise ValueError(f"theta has shape {tuple(theta.shape)}; {self} needs a last dimension of "
                             f"{self.num_params} parameters")
        return theta

    def check_one_theta(self, theta, caller: str = "this function") -> Tensor:
        """:meth:`check_theta` for a single parameter vector (P,): ValueError naming ``caller`` on a batch."""
        theta = self.check_theta(theta)
        if theta.ndim != 1:
            raise ValueError(f"{caller} takes one parameter vector, not a batch: expected shape ({self.num_params},), "
                             f"got {tuple(theta.shape)}")
        return theta

    def check_x(self, x, like: Tensor | None = None) -> Tensor:
        """Return inputs as a tensor of shape (n, m_0) (or (..., n, m_0)), raising ValueError otherwise."""
        x = as_tensor(x, "x", None if like is None else like.dtype)
        if like is not None:
            x = x.to(like.device)
        if x.ndim < 2 or x.shape[-1] != self.widths[0]:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (n, {self.widths[0]}) inputs "
                             f"(use x[:, None] for 1-D data)")
        return x

    def unflatten(self, theta) -> list[tuple[Tensor, Tensor | None]]:
        """Split theta (..., P) into [(W^[1], b^[1]), ..., (W^[L], b^[L])]; b^[L] is None without output bias."""
        theta = self.check_theta(theta)
        batch = theta.shape[:-1]
        return [(theta[..., w].reshape(*batch, self.widths[l], self.widths[l - 1]),
                 None if b is None else theta[..., b])
                for l, (w, b) in enumerate(self.layer_slices, start=1)]

    def flatten(self, layers: Sequence[tuple[Tensor, Tensor | None]]) -> Tensor:
        """Inverse of :meth:`unflatten`: concatenate [(W^[l], b^[l])] into theta, checking every shape."""
        if len(layers) != self.L:
            raise ValueError(f"expected {self.L} layers (W, b), got {len(layers)}")
        parts = []
        for l, (W, b) in enumerate(layers, start=1):
            W = as_tensor(W, f"W^[{l}]")
            if W.shape[-2:] != (self.widths[l], self.widths[l - 1]):
                raise ValueError(f"W^[{l}] has shape {tuple(W.shape)}, expected (..., {self.widths[l]}, {self.widths[l - 1]})")
            parts.append(W.reshape(*W.shape[:-2], -1))
            if self.has_bias(l):
                if b is None:
                    raise ValueError(f"b^[{l}] is missing")
                b = as_tensor(b, f"b^[{l}]")
                if b.shape[-1:] != (self.widths[l],):
                    raise ValueError(f"b^[{l}] has shape {tuple(b.shape)}, expected (..., {self.widths[l]})")
                parts.append(b)
            elif b is not None:
                raise ValueError(f"this network has no output bias but b^[{self.L}] was given")
        return torch.cat(parts, dim=-1)

    # --- forward map ------------------------------------------------------------------
    def features(self, theta, x) -> list[Tensor]:
        """The feature vectors [f^[0], ..., f^[L]] evaluated on every row of x; f^[L] = f_theta(x).

        Shapes: x (n, m_0), theta (..., P) -> f^[l] of shape (..., n, m_l).
        """
        layers = self.unflatten(theta)
        x = self.check_x(x, like=layers[0][0])
        feats = [x]
        for l, (W, b) in enumerate(layers, start=1):
            u = feats[-1] @ W.transpose(-1, -2)
            if b is not None:
                u = u + b.unsqueeze(-2)
            feats.append(self.activation(u) if l < self.L else u)
        return feats

    def forward(self, theta, x) -> Tensor:
        """The output f_theta(x), shape (..., n, m_L)."""
        return self.features(theta, x)[-1]

    __call__ = forward

    def __repr__(self) -> str:
        bias = "" if self.output_bias else ", output_bias=False"
        return f"MLP({'-'.join(map(str, self.widths))}, {self.activation.name}{bias})"

    # --- torch.nn interoperability ----------------------------------------------------
    def to_torch(self, theta) -> nn.Sequential:
        """An ``nn.Sequential`` of Linear and activation modules computing f_theta (a copy of theta)."""
        modules: list[nn.Module] = []
        for l, (W, b) in enumerate(self.unflatten(theta), start=1):
            if W.ndim != 2:
                raise ValueError("to_torch converts a single parameter vector, not a batch")
            lin = nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=W.dtype)
            with torch.no_grad():
                lin.weight.copy_(W)
                if b is not None:
                    lin.bias.copy_(b)
            modules.append(lin)
            if l < self.L:
                modules.append(_activation_module(self.activation))
        return nn.Sequential(*modules)

    @classmethod
    def from_torch(cls, model: nn.Sequential) -> tuple["MLP", Tensor]:
        """Read an ``nn.Sequential`` of Linear layers separated by one shared activation into (net, theta).

        Every hidden Linear must have a bias; the output Linear may have one or not.
        """
        mods = list(model)
        linears, acts = mods[0::2], mods[1::2]
        if not linears or not all(isinstance(m, nn.Linear) for m in linears) or len(acts) != len(linears) - 1:
            raise ValueError("expected Sequential(Linear, act, Linear, ..., act, Linear) with at least 2 Linear layers")
        names = {_activation_name(a) for a in acts}
        if len(names) != 1:
            raise ValueError(f"all hidden activations must be the same supported module, got {[type(a).__name__ for a in acts]}")
        if any(lin.bias is None for lin in linears[:-1]):
            raise ValueError("every hidden Linear layer needs a bias (the theory's b^[l])")
        for prev, nxt in zip(linears, linears[1:]):
            if prev.out_features != nxt.in_features:
                raise ValueError(f"Linear layers do not chain: {prev.out_features} outputs feed {nxt.in_features} inputs")
        widths = [linears[0].in_features] + [lin.out_features for lin in linears]
        net = cls(widths, names.pop(), output_bias=linears[-1].bias is not None)
        theta = net.flatten([(lin.weight.detach().to(torch.float64),
                              None if lin.bias is None else lin.bias.detach().to(torch.float64)) for lin in linears])
        return net, theta


_MODULES = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "gelu": nn.GELU,
            "relu": nn.ReLU, "identity": nn.Identity}


def _activation_module(act: Activation) -> nn.Module:
    if act.name in _MODULES and ACTIVATIONS.get(act.name) == act:
        return _MODULES[act.name]()
    raise ValueError(f"activation {act.name!r} has no torch.nn module; use a named activation to convert")


def _activation_name(module: nn.Module) -> str:
    for name, cls in _MODULES.items():
        if type(module) is cls:
            if isinstance(module, nn.GELU) and module.approximate != "none":
                raise ValueError("only the exact GELU (approximate='none') is supported")
            if isinstance(module, nn.Softplus) and module.beta != 1:
                raise ValueError("only Softplus with beta=1 is supported")
            return name
    raise ValueError(f"unsupported activation module {type(module).__name__}; supported: {sorted(_MODULES)}")
