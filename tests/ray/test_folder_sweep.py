"""End to end on your own images: the folder search space over real Fashion-MNIST PNG files in class
folders runs on a real local Ray, registers a champion in MLflow, and ``gan-ray sample`` draws from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_ray.cli import main

SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "folder.yaml"


@pytest.mark.slow
def test_the_folder_sweep_registers_a_champion_that_samples(
    ray_session, fashion_mnist_folder, fashion_mnist_classifier, tmp_path
):
    from gan_ray.api import sweep
    from gan_ray.tracking.registry import champion_version

    folder = fashion_mnist_folder[0]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = sweep(
        SPACE,
        num_samples=1,
        tracking_uri=uri,
        storage_path=str(tmp_path / "ray_results"),
        study_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        verbose=0,
        overrides={
            "data.root": str(folder),
            "data.image_size": 28,
            "data.channels": 1,
            "train.steps": 40,
            "train.eval_every": 20,
            "train.eval_samples": 256,
            # The tests' small classifier, as a sweep pins its extractor: not minutes of training one.
            "metrics.extractor": str(fashion_mnist_classifier[1]),
        },
    )
    assert result.best is not None and result.best.best_objective > 0  # fid_classifier
    # The trials read the prepared file the sweep put on its storage (every node reads those bytes),
    # recorded as such in MLflow; no trial decoded the PNG files.
    import mlflow

    params = mlflow.MlflowClient(uri).get_run(result.best.mlflow_run_id).data.params
    prepared = Path(params["data.prepared"])
    assert prepared.is_file() and (tmp_path / "ray_results") in prepared.parents
    version = champion_version(result.model_name, uri)
    assert version is not None and result.model_name == "gan_ray-folder"
    out = tmp_path / "samples.png"
    argv = ["sample", "--model", f"models:/{result.model_name}@champion", "-n", "16", "--out", str(out)]
    assert main([*argv, "--tracking-uri", uri]) == 0
    assert out.stat().st_size > 0
