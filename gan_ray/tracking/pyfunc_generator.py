"""The generator's MLflow pyfunc model: what ``mlflow.pyfunc.load_model``, ``mlflow models serve``,
``build-docker`` and Spark UDFs run. Noise in, data-space samples out, bad input refused with a 400.

MLflow runs this file itself ("models from code", :func:`mlflow.models.set_model` below): no Python
object is unpickled, and the file imports only numpy, torch and mlflow, so a model logged by gan_ray
serves where gan_ray is not installed. The weights are the ``generator`` artifact, an
``mlflow.pytorch`` pt2 program, loaded by MLflow's own loader (which refuses an archive that is not
pickle-free).

Why a wrapper and not the pytorch flavor's own pyfunc with an unnamed tensor signature: that flavor
passes a NaN, an empty batch or a million rows to the program as they are (NaN samples, or a 500
with a stack trace from torch.export's batch >= 2 guard), and its input cannot grow a second tensor.

The contract (the signature): one named tensor ``noise`` float32 (-1, noise_dim); the output float32
(-1, *sample_shape), as ``gan-ray sample`` draws them. A lone ndarray is accepted too: MLflow wraps it
as ``{"noise": array}`` for a one-tensor schema. For a conditional generator, the signature gains a
second named tensor ``labels`` int64 (-1,) and ``model_config`` a ``num_classes``; requests then send
``{"noise": ..., "labels": ...}`` and unconditional requests stay valid as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

PROGRAM = "generator"  # the artifact: an mlflow.pytorch model holding the pt2 program
NOISE = "noise"  # the input tensor's name
CHUNK = 4096  # rows per forward pass


def bad_input(message: str) -> MlflowException:
    """An error the scoring server answers with 400 and this message (no stack trace)."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def checked_noise(model_input: Any, noise_dim: int, max_batch: int) -> np.ndarray:
    """``model_input`` (an ndarray, a list of rows, a DataFrame or ``{"noise": ...}``) as a float32
    (n, noise_dim) array with 1 <= n <= max_batch and only finite values; else a 400 naming the shape."""
    expected = f"expected {NOISE!r}: finite float32 of shape (n, {noise_dim}) with 1 <= n <= {max_batch}"
    if isinstance(model_input, dict):
        if NOISE not in model_input:
            raise bad_input(f"{expected}; got a dict with keys {sorted(model_input)}")
        model_input = model_input[NOISE]
    if hasattr(model_input, "to_numpy"):  # a pandas DataFrame, without importing pandas
        model_input = model_input.to_numpy()
    try:
        noise = np.asarray(model_input, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise bad_input(f"{expected}; got values that are not numbers ({err})") from None
    if noise.ndim != 2 or noise.shape[1] != noise_dim:
        raise bad_input(f"{expected}; got shape {tuple(noise.shape)}")
    if noise.shape[0] == 0:
        raise bad_input(f"{expected}; got an empty batch (n = 0)")
    if noise.shape[0] > max_batch:
        raise bad_input(f"{expected}; got n = {noise.shape[0]}: send it in smaller batches")
    finite = np.isfinite(noise)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise bad_input(f"{expected}; got NaN or infinite values in rows {rows[:10].tolist()}")
    return noise


class GeneratorModel(PythonModel):
    """Samples from the exported generator; settings from ``model_config`` (noise_dim, max_batch)."""

    def load_context(self, context) -> None:
        import mlflow.pytorch

        config = context.model_config
        self.noise_dim = int(config["noise_dim"])
        self.max_batch = int(config["max_batch"])
        self.program = mlflow.pytorch.load_model(context.artifacts[PROGRAM])

    # np.ndarray: a hint MLflow infers no schema from (the logged signature stands); it hands over
    # {"noise": array} for the named tensor, which checked_noise takes as well.
    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        noise = torch.from_numpy(checked_noise(model_input, self.noise_dim, self.max_batch))
        out = []
        with torch.no_grad():
            for chunk in noise.split(CHUNK):
                if chunk.shape[0] == 1:  # the exported batch dimension is dynamic from 2 up
                    out.append(self.program(chunk.expand(2, -1))[:1])
                else:
                    out.append(self.program(chunk))
        return torch.cat(out).float().numpy()


set_model(GeneratorModel())
