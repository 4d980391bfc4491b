"""Shared fixtures. ``ray_session`` starts one real local Ray for every test that needs it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from bench_scripts import bench_module

# Feature-extractor caches of this session stay out of the user's ~/.cache (set before any Ray
# worker starts, so workers inherit it).
os.environ.setdefault("GAN_RAY_CACHE", tempfile.mkdtemp(prefix="gan_ray_cache_"))


def real_image_root() -> Path | None:
    """A torchvision root holding the real Fashion-MNIST (``FashionMNIST/raw``): ``$GAN_RAY_TEST_DATA``,
    else the team's offline copy beside the checkout (``../shared/data``); None where neither has it.
    The package never looks there: users point ``data.root`` at torchvision's download."""
    candidates = [
        os.environ.get("GAN_RAY_TEST_DATA"),
        Path(__file__).resolve().parents[2] / "shared" / "data",
    ]
    for root in filter(None, candidates):
        if (Path(root) / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return Path(root)
    return None


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    root = real_image_root()
    if root is None:
        pytest.skip(
            "no real Fashion-MNIST: set GAN_RAY_TEST_DATA to a torchvision root with FashionMNIST/raw"
        )
    return root


@pytest.fixture(scope="session")
def fashion_mnist_classifier(fashion_mnist_root, tmp_path_factory):
    """(a feature classifier trained on 4,000 real Fashion-MNIST images, the file that holds it as a
    sweep's pinned extractor): half a minute, where the cached extractor takes 60,000 images and minutes."""
    from gan_ray.config import DataConfig
    from gan_ray.data.images import load_labelled
    from gan_ray.metrics.features import train_classifier
    from gan_ray.metrics.features.classifier import describe

    images, labels = load_labelled(DataConfig(name="fashion_mnist", root=str(fashion_mnist_root)), train=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train_classifier(images[:4000], labels[:4000], min_steps=400, max_steps=400)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("extractor") / "fashion_mnist_classifier.pt"
    torch.save(describe(model, "fashion_mnist", seed=0), path)
    return model, path


@pytest.fixture(scope="session")
def plugin_paths(tmp_path_factory) -> list[Path]:
    """The folders holding the plug-ins of tests/test_plugins.py, on this process's path and on
    PYTHONPATH, set before any Ray process starts (they inherit it): docs' example module, imported by
    path (``plugins:laplace``), and the same module packaged and pip-installed with entry points."""
    import plugin_package

    tests = Path(__file__).resolve().parent  # tests/bad_plugins.py, for the trials too
    folders = [
        plugin_package.EXAMPLE.parent,
        tests,
        plugin_package.install(tmp_path_factory.mktemp("plugins")),
    ]
    for folder in reversed(folders):
        sys.path.insert(0, str(folder))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*(str(f) for f in folders), *([old] if old else [])])
    return folders


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory, plugin_paths):
    """A real local Ray on 2 CPUs with the ``train_driver`` resource sweeps schedule trial drivers on.

    The dashboard stays on: Ray Train's placement-group cleaner needs its state API to release the
    workers of trials that Tune stops early.
    """
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=2, resources={"train_driver": 100}, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is as fast, and does not spin against a busy machine (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A fresh SQLite MLflow store per module. Creating MLflow's tables takes seconds, so they are
    created once per session in a template database that each module copies."""
    from gan_ray.tracking.store import make_client

    template = tmp_path_factory.getbasetemp() / "mlflow-template.db"
    if not template.exists():
        make_client(f"sqlite:///{template}").search_experiments(max_results=1)
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    shutil.copy(template, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def servers():
    """The bench's real PostgreSQL and ``mlflow server`` starters (``bench/servers.py``)."""
    return bench_module("servers")


@pytest.fixture(scope="module")
def postgres_uri(servers):
    """A fresh PostgreSQL database (SQLAlchemy URI) on a loopback port: ``initdb`` into a temporary
    folder, ``pg_ctl`` start (as the ``postgres`` user when root), stopped after the module."""
    if servers.postgres_bin("initdb") is None:
        pytest.skip("PostgreSQL's initdb not found (Debian: apt-get install postgresql; .ci/run does)")
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[postgres]'")
    postgres = servers.Postgres()
    yield postgres.uri
    postgres.stop()


#: Images per class the folder fixtures export (10 classes): a few thousand real images.
FOLDER_IMAGES_PER_CLASS = 300


@pytest.fixture(scope="session")
def fashion_mnist_folder(fashion_mnist_root, tmp_path_factory):
    """Real Fashion-MNIST training images as PNG files in class subfolders (``0-T-shirt/top`` ... named
    by torchvision's classes), the first FOLDER_IMAGES_PER_CLASS of each class in file order, and the
    same tree as a zip: (folder, zip file, uint8 images (N, 1, 28, 28) in the folder's sorted order,
    their labels in sorted class-folder order)."""
    import zipfile

    import numpy as np
    from PIL import Image

    from gan_ray.data.images import load_torchvision_uint8

    images, labels = load_torchvision_uint8("fashion_mnist", fashion_mnist_root, train=True)
    base = tmp_path_factory.mktemp("folder")
    folder = base / "fashion"
    picked: list[tuple[str, int, np.ndarray]] = []
    for label in range(10):
        cls = f"class_{label}"
        (folder / cls).mkdir(parents=True)
        rows = torch.nonzero(labels == label).flatten()[:FOLDER_IMAGES_PER_CLASS].tolist()
        for i in rows:
            name = f"{cls}/{i:05d}.png"
            array = images[i, 0].numpy()
            Image.fromarray(array, "L").save(folder / name)
            picked.append((name, label, array))
    archive = base / "fashion.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, _, _ in picked:
            z.write(folder / name, f"fashion/{name}")  # wrapped in one folder, as zips of a folder are
    picked.sort(key=lambda t: t[0])
    expected = torch.from_numpy(np.stack([a for _, _, a in picked]))[:, None]
    return folder, archive, expected, torch.tensor([lab for _, lab, _ in picked])
