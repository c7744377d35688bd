"""The data sets of paper A's experiments, all available offline (nothing is downloaded at run time).

* :func:`fig1_data` -- the 50-point 1-D data of paper A Fig. 1 / paper B Fig. 4.3 (also Figs. 3a, 4).
* :func:`iris` -- Iris (paper A Fig. 3b), from scikit-learn.
* :func:`mnist` -- a 5,000-image subset of MNIST (paper A Fig. 5 used 1,000 training images),
  stored in ``data/mnist_5k.csv.gz`` (see ``data/MNIST_LICENSE.md``).

Every loader returns float64 torch tensors (targets as float64 one-hot rows or int64 labels).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["fig1_data", "iris", "mnist", "MNISTSplit", "MNIST_PATH", "MNIST_SHA256"]

MNIST_PATH = Path(__file__).resolve().parents[2] / "data" / "mnist_5k.csv.gz"
MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
_MNIST_N = 5000


def fig1_data() -> tuple[Tensor, Tensor]:
    """The data of paper A Fig. 1: x = linspace(-15, 15, 50), y = tanh(x+7) + tanh(x) + tanh(x-7).

    Recovered from the marker coordinates of the paper's figure (digest section 3.1); the paper
    does not state them. Returns x, y of shape (50, 1), float64.
    """
    x = torch.linspace(-15.0, 15.0, 50, dtype=torch.float64)
    y = torch.tanh(x + 7) + torch.tanh(x) + torch.tanh(x - 7)
    return x[:, None], y[:, None]


def _encode(labels: np.ndarray, classes: int, encoding: str) -> Tensor:
    if encoding == "onehot":
        return torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.int64), classes).to(torch.float64)
    if encoding == "labels":
        return torch.as_tensor(labels, dtype=torch.int64)
    raise ValueError(f"encoding must be 'onehot' or 'labels', got {encoding!r}")


def iris(scale: str = "standard", encoding: str = "onehot") -> tuple[Tensor, Tensor]:
    """The 150 Iris flowers (4 measurements in cm, 3 species), from ``sklearn.datasets.load_iris``.

    Paper A (Fig. 3b) uses Iris with a 4-m-3 sigmoid net and MSE, but states neither the input
    scaling nor the target encoding; the defaults here are our choice.

    Args:
        scale: ``"standard"`` (each feature to mean 0, standard deviation 1 over the 150 samples,
            as sklearn's StandardScaler), ``"minmax"`` (each feature to [0, 1]) or ``"none"`` (cm).
        encoding: ``"onehot"`` (y of shape (150, 3), float64, for MSE) or ``"labels"`` (y of
            shape (150,), int64 in {0, 1, 2}: setosa, versicolor, virginica).

    Returns:
        x (150, 4) float64 and y.
    """
    from sklearn.datasets import load_iris

    if scale not in ("standard", "minmax", "none"):
        raise ValueError(f"scale must be 'standard', 'minmax' or 'none', got {scale!r}")
    data = load_iris()
    x = np.asarray(data.data, dtype=np.float64)
    if scale == "standard":
        x = (x - x.mean(0)) / x.std(0)
    elif scale == "minmax":
        x = (x - x.min(0)) / (x.max(0) - x.min(0))
    return torch.as_tensor(x), _encode(data.target, 3, encoding)


class MNISTSplit(NamedTuple):
    """Disjoint train and test sets: x of shape (n, 784) (row-major 28x28 images), y targets."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (5000, 784) uint8, labels (5000,) int64) after checking the file's sha256 (on every call)."""
    if not path.exists():
        raise FileNotFoundError(f"the MNIST subset {path} is missing; it belongs to the repository "
                                f"(data/mnist_5k.csv.gz, see data/MNIST_LICENSE.md) -- restore it from git")
    digest = _sha256(path)
    if digest != MNIST_SHA256:
        raise ValueError(f"{path} is corrupt or not the expected file: sha256 {digest}, expected {MNIST_SHA256}; "
                         f"restore it from git (see data/MNIST_LICENSE.md)")
    return _parse_mnist(path, digest)


@functools.lru_cache(maxsize=1)
def _parse_mnist(path: Path, digest: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.shape != (_MNIST_N, 785):
        raise ValueError(f"{path} holds a table of shape {table.shape}, expected ({_MNIST_N}, 785)")
    return table[:, :-1].astype(np.uint8), table[:, -1]


def mnist(n_train: int = 1000, n_test: int | None = None, seed: int = 0, scale: str = "unit",
          encoding: str = "onehot", path: str | Path | None = None) -> MNISTSplit:
    """A random split of the 5,000-image MNIST subset into disjoint train and test sets.

    Paper A (Fig. 5) trains on 1,000 MNIST images and tests on the 10,000 official test images;
    here both sets come from the 5,000-image subset (500 images per digit), so
    n_train + n_test <= 5000.

    Args:
        n_train: number of training images (>= 1).
        n_test: number of test images; None means all the remaining ones.
        seed: seed of the random permutation that picks the two sets.
        scale: ``"unit"`` (pixels / 255, in [0, 1]) or ``"none"`` (0..255 as float64).
        encoding: ``"onehot"`` (float64 (n, 10)) or ``"labels"`` (int64 (n,)).
        path: the csv.gz file (default: the repository's ``data/mnist_5k.csv.gz``).

    Raises:
        FileNotFoundError: the file is missing. ValueError: its sha256 is wrong, or bad arguments.
    """
    for name, value in (("n_train", n_train), ("seed", seed)) + ((("n_test", n_test),) if n_test is not None else ()):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {value!r}")
    n_test = _MNIST_N - n_train if n_test is None else n_test
    if n_train < 1 or n_test < 0 or n_train + n_test > _MNIST_N:
        raise ValueError(f"need n_train >= 1, n_test >= 0 and n_train + n_test <= {_MNIST_N}; "
                         f"got n_train={n_train}, n_test={n_test}")
    if scale not in ("unit", "none"):
        raise ValueError(f"scale must be 'unit' or 'none', got {scale!r}")
    pixels, labels = _read_mnist(Path(path).resolve() if path is not None else MNIST_PATH)
    order = np.random.default_rng(seed).permutation(_MNIST_N)
    parts = order[:n_train], order[n_train:n_train + n_test]
    div = 255.0 if scale == "unit" else 1.0
    return MNISTSplit(*(t for idx in parts
                        for t in (torch.as_tensor(pixels[idx] / div), _encode(labels[idx], 10, encoding))))
