"""A trained generator as an ONNX file, for tools outside PyTorch (onnxruntime, TensorRT, other GAN
tools): input ``noise`` (batch, noise_dim) float32, output ``samples`` (batch, *sample_shape), batch dynamic."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import nn

from gan_ray.errors import MissingExtraError

INPUT_NAME = "noise"
OUTPUT_NAME = "samples"
ONNX_PACKAGES = ("onnx", "onnxscript")  # torch's export-based ONNX exporter needs both


def check_onnx_available() -> None:
    """Raise one line naming the missing packages, before any model is loaded."""
    import importlib.util

    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"ONNX export needs {', '.join(missing)}: pip install 'gan-ray[onnx]' (or pip install onnx onnxscript)"
        )


def export_onnx(module: nn.Module, noise_dim: int, path: str | Path) -> Path:
    """Write ``module`` (a generator on the CPU, in eval mode) to ``path`` as ONNX; returns the path.

    Exported with torch's ``torch.export``-based exporter (the TorchScript one is deprecated since
    torch 2.9), the batch dimension a symbol from 1 up.
    """
    check_onnx_available()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(4, noise_dim, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    # The exporter prints its progress on stdout; the CLI says where the file went instead.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
        )
    return path
