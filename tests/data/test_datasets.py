"""Data sources: the 2-D mixtures, the bundled digits, resizing, sharding, and the torchvision loaders
on tiny fake dataset files written in the exact on-disk formats torchvision reads."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from gan_ray.config import DataConfig
from gan_ray.data.catalog import DATASETS, IMAGE_DATASETS, MIXTURE_DATASETS
from gan_ray.data.images import TensorSource, load_digits, load_images, load_torchvision, resize
from gan_ray.data.mixtures import MixtureSource, mixture
from gan_ray.data.sources import data_shape, make_source

# P(||e|| <= 3) for e ~ N(0, I_2): the chi distribution with 2 degrees of freedom, 1 - exp(-9/2).
WITHIN_3_STD = 1 - math.exp(-4.5)


def test_registries():
    assert set(DATASETS) == set(MIXTURE_DATASETS) | set(IMAGE_DATASETS)
    assert set(MIXTURE_DATASETS) == {"ring8", "grid25"}
    assert set(IMAGE_DATASETS) == {"digits", "mnist", "fashion_mnist", "cifar10", "folder"}


def test_ring8_modes():
    m = mixture("ring8")
    assert m.modes.shape == (8, 2)
    assert m.std == 0.01
    torch.testing.assert_close(m.modes.norm(dim=1), torch.ones(8))
    angles = torch.atan2(m.modes[:, 1].double(), m.modes[:, 0].double()).remainder(2 * math.pi)
    torch.testing.assert_close(
        angles.sort().values, torch.arange(8, dtype=torch.float64) * math.pi / 4, atol=1e-6, rtol=0
    )


def test_grid25_modes():
    m = mixture("grid25")
    assert m.modes.shape == (25, 2)
    assert m.std == 0.05
    expected = {(float(x), float(y)) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert {tuple(p) for p in m.modes.tolist()} == expected


def test_unknown_mixture():
    with pytest.raises(ValueError, match="'ring9'"):
        mixture("ring9")


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_source_samples_lie_near_the_modes(name):
    src = MixtureSource(name)
    assert src.shape == (2,)
    n = 100_000
    x = src.sample(n, generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, 2) and x.dtype == torch.float32
    m = mixture(name)
    dist, nearest = torch.cdist(x.double(), m.modes.double()).min(dim=1)
    # Modes are far apart relative to std, so the nearest mode is the one sampled from.
    assert (dist <= 3 * m.std).double().mean().item() == pytest.approx(WITHIN_3_STD, abs=0.003)
    # Per-coordinate spread is the mixture's std, and modes are hit with equal weight.
    offsets = x.double() - m.modes.double()[nearest]
    torch.testing.assert_close(
        offsets.std(dim=0), torch.full((2,), m.std, dtype=torch.float64), rtol=0.02, atol=0
    )
    counts = torch.bincount(nearest, minlength=len(m.modes)).double()
    expected = n / len(m.modes)
    assert (counts - expected).abs().max().item() < 6 * math.sqrt(expected)


def test_mixture_source_is_seeded_by_generator():
    src = MixtureSource("ring8")
    a = src.sample(10, generator=torch.Generator().manual_seed(3))
    b = src.sample(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, src.sample(10, generator=torch.Generator().manual_seed(4)))


def test_digits():
    x, labels = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    # The 17 grey levels 0..16 map to -1 + k/8.
    levels = torch.unique(x)
    assert len(levels) == 17
    torch.testing.assert_close(levels, -1 + torch.arange(17) / 8.0)


def test_load_images_digits_native_and_resized():
    native = load_images(DataConfig(name="digits"))
    assert native.shape == (1797, 1, 8, 8)
    for size in (32, 64):
        cfg = DataConfig(name="digits", image_size=size)
        x = load_images(cfg)
        assert x.shape == (1797, 1, size, size) == (1797, *data_shape(cfg))
        assert x.min() >= -1 and x.max() <= 1
        assert x.min() < -0.99 and x.max() > 0.9  # still uses the range


def test_resize():
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    assert resize(x, None) is x
    assert resize(x, 8) is x
    const = torch.full((2, 1, 8, 8), 0.25)
    torch.testing.assert_close(resize(const, 32), torch.full((2, 1, 32, 32), 0.25))
    # Downsampling a checkerboard of 4x4 blocks keeps each block's sign; the antialiasing filter blurs the
    # values towards 0 but never past the [-1, 1] range.
    pattern = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    blocks = pattern.repeat_interleave(4, 0).repeat_interleave(4, 1)
    small = resize(blocks[None, None], 2)[0, 0]
    assert torch.equal(small.sign(), pattern)
    assert small.abs().max() <= 1
    # Upsampling a full-range image stays within [-1, 1].
    up = resize(x, 64)
    assert up.shape == (4, 3, 64, 64) and up.min() >= -1 and up.max() <= 1


def test_tensor_source_draws_rows_of_the_data():
    data = torch.arange(50 * 6, dtype=torch.float32).reshape(50, 1, 2, 3)
    src = TensorSource(data)
    assert src.shape == (1, 2, 3)
    batch = src.sample(200, generator=torch.Generator().manual_seed(0))
    assert batch.shape == (200, 1, 2, 3)
    rows = {tuple(r) for r in data.flatten(1).tolist()}
    assert all(tuple(r) in rows for r in batch.flatten(1).tolist())
    assert len({tuple(r) for r in batch.flatten(1).tolist()}) > 25  # draws across the whole set
    again = src.sample(200, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)


def test_tensor_source_rejects_empty_data():
    with pytest.raises(ValueError, match="empty"):
        TensorSource(torch.zeros(0, 2))


def test_make_source_mixture():
    src = make_source(DataConfig(name="grid25"))
    assert isinstance(src, MixtureSource)
    assert src.sample(5).shape == (5, 2)


def test_make_source_shards_are_disjoint_and_cover_the_data():
    cfg = DataConfig(name="digits")
    full = make_source(cfg)
    assert isinstance(full, TensorSource) and full.data.shape == (1797, 1, 8, 8)
    world = 3
    shards = [make_source(cfg, rank=r, world_size=world).data for r in range(world)]
    assert sum(s.shape[0] for s in shards) == 1797
    assert max(s.shape[0] for s in shards) - min(s.shape[0] for s in shards) <= 1
    # Compare by index: rank r holds rows r, r + world, ... of the full set.
    for r, shard in enumerate(shards):
        torch.testing.assert_close(shard, full.data[r::world])
    index_sets = [set(range(r, 1797, world)) for r in range(world)]
    assert set.union(*index_sets) == set(range(1797))
    assert all(not (a & b) for i, a in enumerate(index_sets) for b in index_sets[i + 1 :])


@pytest.mark.parametrize(
    ("cfg", "shape"),
    [
        (DataConfig(name="ring8"), (2,)),
        (DataConfig(name="grid25"), (2,)),
        (DataConfig(name="digits"), (1, 8, 8)),
        (DataConfig(name="mnist", root="/x"), (1, 28, 28)),
        (DataConfig(name="fashion_mnist", root="/x"), (1, 28, 28)),
        (DataConfig(name="cifar10", root="/x"), (3, 32, 32)),
        (DataConfig(name="cifar10", root="/x", image_size=64), (3, 64, 64)),
        (DataConfig(name="mnist", root="/x", image_size=32), (1, 32, 32)),
    ],
)
def test_data_shape(cfg, shape):
    assert data_shape(cfg) == shape


def test_load_images_rejects_mixtures():
    with pytest.raises(ValueError, match="ring8"):
        load_images(DataConfig(name="ring8"))


# --- torchvision datasets from fake files -------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of LeCun's MNIST files: magic 0x0000 08 NDIM (uint8), big-endian int32 dims, data."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def _fake_mnist(root: Path, folder: str, n_train: int = 6, n_test: int = 3) -> dict[str, np.ndarray]:
    """The four uncompressed files torchvision checks for under ROOT/<folder>/raw/."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[0, 0, 0], x[0, 0, 1] = 0, 255  # both ends of the range are present
        _write_idx(raw / f"{split}-images-idx3-ubyte", x)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, size=n, dtype=np.uint8))
        images[split] = x
    return images


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to reach the network fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(tvd.MNIST, "download", refuse)
    monkeypatch.setattr(tvd.CIFAR10, "download", refuse)


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_load_torchvision_mnist_family(tmp_path, no_download, name, folder):
    images = _fake_mnist(tmp_path, folder)
    for train, split in ((True, "train"), (False, "t10k")):
        x, labels = load_torchvision(name, tmp_path, train=train)
        assert labels.shape == (len(images[split]),) and labels.dtype == torch.int64
        expected = torch.from_numpy(images[split]).double()[:, None] / 127.5 - 1
        assert x.shape == (len(images[split]), 1, 28, 28) and x.dtype == torch.float32
        torch.testing.assert_close(x.double(), expected, atol=1e-6, rtol=0)
        assert x.min().item() == -1.0 and x.max().item() == 1.0
    cfg = DataConfig(name=name, root=str(tmp_path), image_size=32)
    x = load_images(cfg)
    assert x.shape == (6, *data_shape(cfg))
    assert x.min() >= -1 and x.max() <= 1
    shards = [make_source(cfg, rank=r, world_size=2).data for r in range(2)]
    assert [s.shape[0] for s in shards] == [3, 3]


def _fake_cifar10(root: Path, per_batch: int = 2) -> dict[str, np.ndarray]:
    """cifar-10-batches-py as torchvision reads it: pickled dicts with 'data' rows of 3072 uint8
    (channel-major: 1024 R, then G, then B) and 'labels', plus batches.meta with 'label_names'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = {}
    for i, name in enumerate(
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    ):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        if i == 0:
            data[0, 0], data[0, 1] = 0, 255
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [int(v) for v in rng.integers(0, 10, per_batch)]}, f)
        rows[name] = data
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return rows


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch):
    """A fake CIFAR-10 root. torchvision verifies each file against the real archive's md5, which fake
    files cannot match; so the checksums it expects are replaced by those of the files written here.
    The integrity check itself still runs (on these files), as does every line of the loading code."""
    rows = _fake_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    monkeypatch.setattr(
        tvd.CIFAR10,
        "train_list",
        [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)],
    )
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    meta = dict(tvd.CIFAR10.meta, md5=_md5(folder / "batches.meta"))
    monkeypatch.setattr(tvd.CIFAR10, "meta", meta)
    return tmp_path, rows


def test_load_torchvision_cifar10(fake_cifar10, no_download):
    root, rows = fake_cifar10
    x, labels = load_torchvision("cifar10", root)
    assert labels.shape == (10,) and labels.dtype == torch.int64
    train_rows = np.concatenate([rows[f"data_batch_{i}"] for i in range(1, 6)])
    # Row layout is (C, H, W) flattened; the loader returns (N, C, H, W).
    expected = torch.from_numpy(train_rows.reshape(-1, 3, 32, 32)).double() / 127.5 - 1
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    torch.testing.assert_close(x.double(), expected, atol=1e-6, rtol=0)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    # One pixel by hand: image 0, green channel, row 5, column 7 is byte 1024 + 5 * 32 + 7 of its row.
    assert x[0, 1, 5, 7].item() == pytest.approx(train_rows[0, 1024 + 5 * 32 + 7] / 127.5 - 1, abs=1e-6)

    test, _ = load_torchvision("cifar10", root, train=False)
    expected = torch.from_numpy(rows["test_batch"].reshape(-1, 3, 32, 32)).double() / 127.5 - 1
    torch.testing.assert_close(test.double(), expected, atol=1e-6, rtol=0)

    cfg = DataConfig(name="cifar10", root=str(root))
    assert load_images(cfg).shape == (10, *data_shape(cfg))


def test_fake_cifar10_without_matching_checksums_is_reported_missing(tmp_path, no_download):
    _fake_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar10"):
        load_torchvision("cifar10", tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_root_is_a_clear_error_without_download(tmp_path, no_download, name):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError) as err:
        load_torchvision(name, missing)
    msg = str(err.value)
    assert str(missing) in msg and repr(name) in msg and "data.root" in msg
    assert not missing.exists()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_root_without_the_files_is_a_clear_error_without_download(tmp_path, no_download, name):
    with pytest.raises(FileNotFoundError) as err:
        load_torchvision(name, tmp_path)
    assert str(tmp_path) in str(err.value) and repr(name) in str(err.value)


def test_a_root_holding_another_dataset_is_refused_up_front(tmp_path, no_download):
    """A root with Fashion-MNIST's files must not pass the up-front check for MNIST (the check looks
    at the dataset's own files, not just at the folder)."""
    from gan_ray.data.sources import check_available

    _fake_mnist(tmp_path, "FashionMNIST")
    check_available(DataConfig(name="fashion_mnist", root=str(tmp_path)))
    with pytest.raises(FileNotFoundError) as err:
        check_available(DataConfig(name="mnist", root=str(tmp_path)))
    msg = str(err.value)
    assert "\n" not in msg and repr("mnist") in msg
    # Every file torchvision's MNIST reader opens is named, and the line says how to get them.
    assert all(name in msg for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    assert "MNIST/raw/{" in msg and "FashionMNIST" not in msg
    assert f"torchvision.datasets.MNIST('{tmp_path}', download=True)" in msg


def test_the_download_line_in_the_message_names_what_the_reader_needs(tmp_path, no_download):
    """What ``check_available`` asks for is what torchvision's readers open: with exactly the files
    it names in place, the reader loads (MNIST) and the check passes; one fewer and it is refused."""
    from gan_ray.data.images import expected_files
    from gan_ray.data.sources import check_available

    _fake_mnist(tmp_path, "MNIST")
    assert {p.name for p in (tmp_path / "MNIST" / "raw").iterdir()} == {
        p.name for p in expected_files("mnist", tmp_path)
    }
    check_available(DataConfig(name="mnist", root=str(tmp_path)))
    tvd.MNIST(str(tmp_path), train=False)


def test_cifar10_without_its_class_names_file_is_refused_up_front(fake_cifar10, no_download):
    """CIFAR-10's reader opens batches.meta as well as the batches: a root without it must fail the
    up-front check, not every trial."""
    from gan_ray.data.sources import check_available

    root, _ = fake_cifar10
    check_available(DataConfig(name="cifar10", root=str(root)))
    (root / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"\(missing cifar-10-batches-py/batches\.meta\)"):
        check_available(DataConfig(name="cifar10", root=str(root)))


def test_an_mnist_sweep_on_a_fashion_mnist_root_fails_in_one_line_before_anything_starts(tmp_path):
    """The case met on a cluster: ~/data holds Fashion-MNIST, the sweep asks for MNIST. The command
    exits 2 with one line, before Ray, MLflow or Optuna is touched."""
    import subprocess
    import sys

    _fake_mnist(tmp_path / "data", "FashionMNIST")
    space = Path(__file__).resolve().parents[2] / "search_spaces" / "mnist.yaml"
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-m", "gan_ray", "sweep", str(space), "--set", f"data.root={tmp_path / 'data'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gan-ray: error: dataset 'mnist' not found under data.root"), line
    assert "MNIST/raw/{train-images-idx3-ubyte" in line and "download=True" in line
    assert list(work.iterdir()) == [], "nothing may be created: no mlflow.db, optuna.db or ray_results"


def test_mnist_missing_test_files_is_an_error(tmp_path, no_download):
    _fake_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError):
        load_torchvision("mnist", tmp_path)
