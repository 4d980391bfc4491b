"""The resume rule of Ray Train runs, before any worker starts (no Ray is started here): without
``resume`` a run must not continue what an earlier run of its name left in the storage."""

from __future__ import annotations

import json

import pytest

from gan_ray.config import ConfigError, validate_config
from gan_ray.ray.train import RAY_RUN_SNAPSHOT, prepare_storage
from gan_ray.training.checkpoint import write_divergence


def _earlier_run(storage, name: str):
    run = storage / name
    (run / "checkpoint_00000001").mkdir(parents=True)
    (run / RAY_RUN_SNAPSHOT).write_text(json.dumps({}))
    return run


def test_a_fresh_start_removes_the_earlier_run_on_a_local_disk(tmp_path, capsys):
    cfg = validate_config({"name": "again"})
    run = _earlier_run(tmp_path, "again")
    other = _earlier_run(tmp_path, "other")
    prepare_storage(cfg, str(tmp_path), "again", resume=False)
    assert not run.exists() and other.exists()
    err = capsys.readouterr().err
    assert (
        err
        == f"gan_ray: run 'again' starts afresh: removed its earlier checkpoints in {run} (--resume continues a run)\n"
    )
    prepare_storage(cfg, str(tmp_path), "new", resume=False)  # nothing there: nothing said
    assert capsys.readouterr().err == ""


def test_a_fresh_start_on_remote_storage_is_refused_in_one_line(tmp_path):
    cfg = validate_config({"name": "again"})
    run = _earlier_run(tmp_path, "again")
    with pytest.raises(ConfigError, match=r"run 'again' already has checkpoints in .*: pass --resume") as err:
        prepare_storage(cfg, f"file://{tmp_path}", "again", resume=False)
    assert "\n" not in str(err.value) and run.exists()


def test_a_resume_of_a_diverged_run_is_refused(tmp_path):
    cfg = validate_config({"name": "nan"})
    run = _earlier_run(tmp_path, "nan")
    write_divergence(run / "checkpoint_00000001", 100, {"loss_d": float("nan")}, [])
    with pytest.raises(ConfigError, match="diverged at step 100"):
        prepare_storage(cfg, str(tmp_path), "nan", resume=True)
    assert run.exists()
