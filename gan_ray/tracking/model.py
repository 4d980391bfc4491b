"""The generator as an MLflow model: logging it (from a run-state folder or a live module) and downloading it.

A logged generator is one MLflow model directory holding three views of the same weights, none of
which runs pickled code when loaded:

- ``python_function``: :mod:`gan_ray.tracking.pyfunc_generator`, a pyfunc model MLflow runs from its
  code file (``pyfunc_generator.py``): noise in, samples out, bad input refused. What
  ``mlflow.pyfunc.load_model``, ``mlflow models serve``, ``build-docker`` and Spark UDFs use; it needs
  numpy, torch and mlflow only, not gan_ray.
- ``artifacts/generator/``: the ``torch.export`` program (MLflow's ``pt2`` format, dynamic batch size)
  the pyfunc model runs; the top-level ``pytorch`` flavor points at it, so plain
  ``mlflow.pytorch.load_model`` gives the program too. MLflow checks it is pickle-free.
- ``extra_files/generator.pt``: the state dict (tensors only, read with ``weights_only=True``) and
- ``extra_files/config.yaml``: the run's config, from which :func:`gan_ray.sampling.load_generator`
  rebuilds the exact eager module on any device.

Not a cloudpickled ``PythonModel`` and not ``serialization_format="pickle"``. Logging takes ~1 s (the
first call in a process ~1-3 s more, for one-time imports) because the pip requirements are given
rather than inferred.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gan_ray.config import GanConfig, config_yaml, validate_config
from gan_ray.data.sources import data_shape
from gan_ray.models import unwrap
from gan_ray.tracking.contract import NOISE, PROGRAM, example_noise, serving_config, signature
from gan_ray.tracking.params import run_params
from gan_ray.tracking.registry import GENERATOR_NAME, resolve_model_uri
from gan_ray.tracking.store import TAG_DATASET, TAG_LOSS, make_client, resolve_tracking_uri
from gan_ray.training.checkpoint import generator_weights, load_checkpoint
from gan_ray.training.networks import generator_from_state

CONFIG_FILE = "config.yaml"
STATE_FILE = "generator.pt"
EXTRA_FILES_DIR = "extra_files"  # where mlflow.pytorch.save_model puts ``extra_files``
PYFUNC_CODE = Path(__file__).with_name("pyfunc_generator.py")  # run by MLflow, never imported here
PROGRAM_DIR = f"artifacts/{PROGRAM}"  # where mlflow.pyfunc puts the ``generator`` artifact


def pip_requirements() -> list[str]:
    """What serving the model needs (mlflow is added by MLflow). Given explicitly: MLflow's inference of
    them takes seconds."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def export_ready_generator(generator: nn.Module, cfg: GanConfig) -> nn.Module:
    """A fresh CPU fp32 copy of ``generator`` in eval mode (BatchNorm on running statistics).

    Rebuilt from ``cfg`` and loaded with the trained weights, so what is logged is exactly what
    :func:`gan_ray.sampling.load_generator` rebuilds (and a DDP wrapper or channels_last layout
    from training does not leak into it).
    """
    state = {
        k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu())
        for k, v in unwrap(generator).state_dict().items()
    }
    return generator_from_state(cfg, state)


def _save_program(module: nn.Module, cfg: GanConfig, path: Path) -> None:
    """The pt2 program as an ``mlflow.pytorch`` model (the pyfunc model's ``generator`` artifact)."""
    import mlflow.pytorch
    from mlflow.models import infer_signature

    example = example_noise(cfg)
    with torch.no_grad():
        output = module(torch.from_numpy(example)).numpy()
    mlflow.pytorch.save_model(
        module,
        str(path),
        serialization_format="pt2",
        # unnamed, as the pytorch flavor's own pyfunc needs; the outer model's signature is the contract
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=pip_requirements(),
    )


def _save_model(module: nn.Module, cfg: GanConfig, model_dir: Path, mlflow_model) -> None:
    """The pyfunc model (from code) around the pt2 program, plus the pytorch flavor and extra files."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / PROGRAM
        _save_program(module, cfg, program)
        mlflow.pyfunc.save_model(
            str(model_dir),
            python_model=str(PYFUNC_CODE),
            artifacts={PROGRAM: str(program)},
            model_config=serving_config(cfg),
            mlflow_model=mlflow_model,
            signature=signature(cfg),
            input_example={NOISE: example_noise(cfg)},
            pip_requirements=pip_requirements(),
        )
    _add_extra_files(model_dir, {CONFIG_FILE: config_yaml(cfg)}, module.state_dict())


def log_generator(
    generator: nn.Module,
    cfg: GanConfig,
    run_id: str,
    tracking_uri: str | None = None,
    *,
    name: str = GENERATOR_NAME,
    step: int = 0,
) -> str:
    """Log ``generator`` as an MLflow model of run ``run_id``; returns its URI ``models:/<model id>``.

    Registering it is :func:`gan_ray.tracking.registry.register_champion`'s job.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    tracking_uri = resolve_tracking_uri(tracking_uri)
    client = make_client(tracking_uri)
    module = export_ready_generator(generator, cfg)
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params=run_params(cfg),
        tags={TAG_LOSS: cfg.loss.name, TAG_DATASET: cfg.data.name},
        model_type="gan_generator",
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            mlflow_model = Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=run_id,
                model_id=logged.model_id,
                metadata={
                    "gan_ray": {
                        "dataset": cfg.data.name,
                        "noise_distribution": cfg.noise.distribution,
                        "noise_dim": cfg.noise_dim,
                        "sample_shape": list(data_shape(cfg.data)),
                    }
                },
            )
            _save_model(module, cfg, model_dir, mlflow_model)
            client.log_model_artifacts(logged.model_id, str(model_dir))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    return f"models:/{logged.model_id}"


def log_generator_from_folder(folder: str | Path, run_id: str, tracking_uri: str | None = None) -> str:
    """Log the generator of a run-state folder (its checkpoint's weights, the EMA's where the run kept
    one, and its config) as a model of ``run_id``."""
    state = load_checkpoint(folder)
    cfg = validate_config(state["config"])
    generator = generator_from_state(cfg, generator_weights(state))
    return log_generator(generator, cfg, run_id, tracking_uri, step=int(state["step"]))


def _add_extra_files(model_dir: Path, texts: dict[str, str], state: dict[str, torch.Tensor]) -> None:
    """Write the config and the state dict into ``extra_files/``, and add a ``pytorch`` flavor that
    names the pt2 program and lists them, as ``mlflow.pytorch.save_model(extra_files=...)`` would."""
    from mlflow.models import Model

    extra = model_dir / EXTRA_FILES_DIR
    extra.mkdir()
    for name, text in texts.items():
        (extra / name).write_text(text)
    torch.save(state, extra / STATE_FILE)
    mlmodel = model_dir / "MLmodel"
    model = Model.load(str(mlmodel))
    pyfunc = model.flavors["python_function"]
    # MLflow records where the code file and the artifact were copied from (this machine's paths)
    # and reads only their names back.
    pyfunc["model_code_path"] = PYFUNC_CODE.name
    for artifact in pyfunc["artifacts"].values():
        artifact["uri"] = artifact["path"]
    model.add_flavor(
        "pytorch",
        model_data=f"{PROGRAM_DIR}/data",
        pytorch_version=str(torch.__version__),
        code=None,
        extra_files=[{"path": f"{EXTRA_FILES_DIR}/{p.name}"} for p in sorted(extra.iterdir())],
    )
    model.save(str(mlmodel))


def download_model(model_uri: str, dst: str | Path, tracking_uri: str | None = None) -> Path:
    """Download the model directory of ``model_uri`` into ``dst``; returns its local path.

    Raises FileNotFoundError naming the URI when the store has no such model.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    tracking_uri = resolve_tracking_uri(tracking_uri)
    try:
        location = resolve_model_uri(model_uri, tracking_uri)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except MlflowException as err:
        raise FileNotFoundError(
            f"no model at {model_uri} in tracking store {tracking_uri}: {err.message}"
        ) from None
    return Path(local)
