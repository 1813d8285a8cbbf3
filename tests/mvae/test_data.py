"""Loaders on files the tests write (IDX gz or not, .npz, torchvision's folder layout) and the
synthetic set's specification."""

import gzip
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from weighted_mvae.data import (  # noqa: E402
    DataError, gaussian_modalities, load_image_labels, load_npz, read_idx, split,
)


def write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08}
    header = b"\x00\x00" + bytes([codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def fake_digits(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images, labels = fake_digits(7, 0)
    write_idx(tmp_path / "i", images, gz)
    write_idx(tmp_path / "l", labels, gz)
    assert np.array_equal(read_idx(tmp_path / "i"), images) and np.array_equal(read_idx(tmp_path / "l"), labels)


def test_read_idx_refuses_other_files(tmp_path):
    (tmp_path / "x").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "x")
    images, _ = fake_digits(3, 0)
    write_idx(tmp_path / "cut", images)
    (tmp_path / "cut").write_bytes((tmp_path / "cut").read_bytes()[:-5])
    with pytest.raises(DataError, match="bytes follow"):
        read_idx(tmp_path / "cut")


@pytest.mark.parametrize("layout", ["flat", "named", "torchvision"])
def test_official_idx_files_with_their_test_part(tmp_path, layout):
    folder = {"flat": tmp_path, "named": tmp_path / "mnist", "torchvision": tmp_path / "MNIST" / "raw"}[layout]
    folder.mkdir(parents=True, exist_ok=True)
    (tr_i, tr_l), (te_i, te_l) = fake_digits(30, 1), fake_digits(12, 2)
    write_idx(folder / "train-images-idx3-ubyte.gz", tr_i, gz=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", tr_l, gz=True)
    write_idx(folder / "t10k-images-idx3-ubyte", te_i)
    write_idx(folder / "t10k-labels-idx1-ubyte", te_l)
    data = load_image_labels("mnist", tmp_path)
    assert data.test_from == 30 and len(data.labels) == 42
    train, test = split(data, 10, 5, seed=3)
    assert train["image"].shape == (10, 784) and test["text"].shape == (5, 10)
    assert torch.allclose(test["image"], torch.from_numpy(te_i[:5].reshape(5, -1) / 255.0).float())
    assert test["text"].argmax(1).tolist() == te_l[:5].tolist()


def test_npz_by_name_and_by_path(tmp_path):
    images, labels = fake_digits(50, 4)
    np.savez(tmp_path / "fashion-mnist-small.npz", images=images, labels=labels)
    np.savez(tmp_path / "mnist-small.npz", images=images[:20], labels=labels[:20])
    assert len(load_image_labels("fashion-mnist", tmp_path).labels) == 50
    assert len(load_image_labels("mnist", tmp_path).labels) == 20
    assert len(load_image_labels("mnist", tmp_path / "fashion-mnist-small.npz").labels) == 50
    np.savez(tmp_path / "bad.npz", pixels=images)
    with pytest.raises(DataError, match="needs arrays 'images' and 'labels'"):
        load_npz(tmp_path / "bad.npz")


def test_split_is_seeded_and_never_touches_the_test_set(tmp_path):
    images, labels = fake_digits(60, 5)
    images[:, 0, 0] = np.arange(60)  # an id in each image
    np.savez(tmp_path / "mnist.npz", images=images, labels=labels)
    data = load_image_labels("mnist", tmp_path)
    a_train, a_test = split(data, 20, 10, seed=1)
    b_train, b_test = split(data, 20, 10, seed=1)
    c_train, c_test = split(data, 20, 10, seed=2)
    ids = lambda t: set((t["image"][:, 0] * 255).round().int().tolist())  # noqa: E731
    assert ids(a_train) == ids(b_train) and ids(a_train) != ids(c_train) and ids(a_test) == ids(c_test)
    assert not ids(a_train) & ids(a_test)
    with pytest.raises(DataError, match="only 50 outside the test set"):
        split(data, 51, 10, seed=0)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="--data-dir is needed"):
        load_image_labels("mnist", None)
    with pytest.raises(DataError, match="no mnist\\*.npz and no IDX files"):
        load_image_labels("mnist", tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        load_image_labels("mnist", tmp_path / "nope")


def test_synthetic_set_as_specified():
    data = gaussian_modalities(200_000, seed=0)
    for i in (1, 2, 3):
        x = data[f"m{i}"]
        assert x.shape == (200_000, 1)
        assert float(x.mean()) == pytest.approx(i, abs=0.02) and float(x.var()) == pytest.approx(i, rel=0.02)
    # conditionally independent given z, all sharing z: cov(x_i, x_j) = var(z) = 1
    cov = torch.cov(torch.cat([data["m1"], data["m2"], data["m3"]], 1).T)
    assert float(cov[0, 2]) == pytest.approx(1.0, abs=0.02) and float(cov[1, 2]) == pytest.approx(1.0, abs=0.02)
    assert torch.equal(gaussian_modalities(10, 7)["m2"], gaussian_modalities(10, 7)["m2"])
    assert not torch.equal(gaussian_modalities(10, 7)["m2"], gaussian_modalities(10, 8)["m2"])
