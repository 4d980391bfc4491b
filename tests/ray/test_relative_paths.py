"""A config's relative paths mean what they meant where the user typed them (issue: a relative
``data.root`` failed every trial, each resolving it from its own Tune trial folder).

A tiny MNIST root (torchvision's raw IDX files, made from scikit-learn's digits) one folder up from the
working directory, as the README's ``--set data.root=../shared/data`` reads.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gan_ray
from gan_ray.config import validate_config

pytestmark = pytest.mark.slow


def write_mnist_root(root: Path) -> None:
    """``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``: 28x28 uint8 images, as torchvision reads them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0
    images = (F.interpolate(images, size=(28, 28), mode="bilinear") * 255).round().clamp(0, 255).byte()
    labels = torch.from_numpy(digits.target).byte()
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, part in (("train", slice(0, 1500)), ("t10k", slice(1500, None))):
        x, y = images[part].squeeze(1).numpy(), labels[part].numpy()
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, len(x), 28, 28) + x.tobytes()
        )
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, len(y)) + y.astype(np.uint8).tobytes()
        )


BASE = {
    "data": {"name": "mnist", "root": "../data"},
    "model": {"name": "dcgan", "params": {"g_filters": 4, "d_filters": 4}},
    "noise": {"dim": 8},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 16, "eval_samples": 200},
}


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory with the data one folder up, reached only by the relative ``../data``."""
    write_mnist_root(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def test_a_sweep_and_a_two_worker_run_find_a_relative_data_root(ray_session, elsewhere, store):
    from mlflow import MlflowClient

    space = elsewhere / "work" / "relative.yaml"
    space.write_text(
        f"name: t_relative_root\nbase: {BASE}\n".replace("'", "")
        + "parameters:\n  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-3]}\n"
        "budget: {num_samples: 2, max_concurrent_trials: 2}\nscheduler: {type: none}\n"
        "search: {final_eval: {top: 0}}\n"
    )
    result = gan_ray.sweep(
        space, tracking_uri=store, storage_path="ray_results", study_storage="sqlite:///optuna.db", verbose=0
    )
    assert [t.status for t in result.trials] == ["completed", "completed"], [t.status for t in result.trials]
    root = str((elsewhere / "data").resolve())
    params = MlflowClient(store).get_run(result.trials[0].mlflow_run_id).data.params
    assert params["data.root"] == root  # recorded as it was found, not as it was typed
    assert Path(result.trials[0].best_checkpoint).is_relative_to(elsewhere / "work" / "ray_results")

    cfg = validate_config({**BASE, "name": "t_relative_ddp", "output_dir": "outputs"})
    ddp = gan_ray.train(cfg, workers=2, tracking=False, verbose=False)
    assert ddp.status in ("completed", "collapsed") and ddp.config.data.root == root


def test_a_trial_failing_on_what_every_trial_meets_stops_the_sweep_in_one_line(
    ray_session, tmp_path, monkeypatch
):
    """A dataset the driver reads but the trials' node cannot (tests/bad_plugins.py: DRIVER_ONLY): the first
    trial fails before its first eval, and the sweep stops with that line instead of running the other 5."""
    import os

    from gan_ray.errors import TrialsCannotRunError

    monkeypatch.setenv("GAN_RAY_TEST_DRIVER_PID", str(os.getpid()))
    space = tmp_path / "driver_only.yaml"
    space.write_text(
        "name: t_driver_only\n"
        "base: {data: {name: 'bad_plugins:DRIVER_ONLY'}, model: {params: {g_filters: 4, d_filters: 4}},"
        " train: {steps: 20, eval_every: 10, batch_size: 16, eval_samples: 100}}\n"
        "parameters:\n  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-3]}\n"
        "budget: {num_samples: 6, max_concurrent_trials: 1}\nscheduler: {type: none}\n"
    )
    with pytest.raises(TrialsCannotRunError) as err:
        gan_ray.sweep(
            space,
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            storage_path=str(tmp_path / "ray_results"),
            study_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
            verbose=0,
        )
    message = str(err.value)
    assert "\n" not in message and "DatasetNotFoundError" in message and "on this node" in message, message
    import optuna

    (study,) = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.n_trials < 6, "the sweep ran on after a trial met what every trial would meet"
