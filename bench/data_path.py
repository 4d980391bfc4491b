"""The folder dataset's data path: decoding once against decoding every epoch, batches from the prepared
file to the device against what a training step consumes, and device memory of uint8 against float32.

Prints one JSON line per measurement (stdout; progress goes to stderr)::

    python bench/data_path.py --quick                 # CPU smoke run: a few hundred images, about a minute
    python bench/data_path.py --device cuda           # on a GPU: 28, 64 and 128 px, batch 64 and 256

The source is synthetic photographs: ``--images`` JPEGs of 256x256 (smooth colour fields and noise, so a
JPEG codec has work to do), written once into a temporary folder.

- ``"measurement": "decode"``, per size: ``decode_images_per_s`` (Pillow: read, decode, resize, crop: what
  an epoch of a decode-every-epoch loader costs), ``prepared_images_per_s`` (the same images as device
  batches from the prepared file), ``speedup`` = prepared / decode, ``prepare_s`` (the one-off decode).
- ``"measurement": "batches"``, per size, batch and path: ``images_per_s`` from the prepared file to float
  batches on the device, ``path`` ``device`` (uint8 held on the device, indexed there: TensorSource) or
  ``host`` (pinned host memory, gathered on the CPU, copied: HostSource); ``step_images_per_s``: what the
  DCGAN's training step on the same device consumes at that size and batch (none at 128: no network).
- ``"measurement": "memory"``, per size: ``uint8_bytes`` and ``float32_bytes`` of the set on the device
  (measured with ``torch.cuda.memory_allocated`` on CUDA, from the element count on the CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gan_ray.config import validate_config  # noqa: E402
from gan_ray.data.batches import DEVICE_FRACTION, HostSource, TensorSource  # noqa: E402
from gan_ray.data.decode import decode  # noqa: E402
from gan_ray.data.prepared import Preprocessing, prepare  # noqa: E402
from gan_ray.training.loop import build_training  # noqa: E402


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def write_jpegs(folder: Path, n: int, side: int = 256, seed: int = 0) -> None:
    """``n`` JPEGs of ``side`` x ``side`` in two class folders: colour gradients, blobs and noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for i in range(n):
        cls = folder / f"class_{i % 2}"
        cls.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(0, 1, 3)
        base = np.stack([xx * a, yy * b, (xx + yy) * c / 2], axis=-1)
        blob = np.exp(-(((xx - rng.uniform()) ** 2 + (yy - rng.uniform()) ** 2) / 0.02))[..., None]
        img = np.clip((base + blob * rng.uniform(0, 1, 3)) * 255 + rng.normal(0, 8, base.shape), 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(cls / f"{i:06d}.jpg", quality=90)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn, n_per_call: int, device: torch.device, seconds: float) -> float:
    """Images per second of ``fn`` run for about ``seconds`` (after two warm-up calls)."""
    fn(), fn()
    sync(device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    sync(device)
    return calls * n_per_call / (time.perf_counter() - start)


def decode_rate(folder: Path, size: int, limit: int) -> float:
    """Images/s of decoding the files one by one, as a loader that decodes every epoch does (one thread)."""
    files = sorted(folder.rglob("*.jpg"))[:limit]
    start = time.perf_counter()
    for f in files:
        decode(f.read_bytes(), size, 3)
    return len(files) / (time.perf_counter() - start)


def step_rate(size: int, batch: int, device: torch.device, seconds: float) -> float | None:
    """Real images/s the DCGAN's training step consumes at ``size`` (None where no DCGAN builds)."""
    if size not in (28, 32, 64):
        return None
    cfg = validate_config(
        {
            "data": {"name": "cifar10", "root": "unused", "image_size": size},
            "model": {"name": "dcgan", "params": {"g_filters": 64, "d_filters": 64}},
            "noise": {"dim": 100},
            "train": {"batch_size": batch, "device": device.type},
        }
    )
    data = torch.randint(0, 256, (batch * 16, 3, size, size), dtype=torch.uint8)
    training = build_training(cfg, device=device, source=TensorSource(data, device))
    return rate(training.step_fn, batch, device, seconds)


def batch_rates(images: np.ndarray, batch: int, device: torch.device, seconds: float) -> dict[str, float]:
    data = torch.from_numpy(np.array(images))  # a writable copy of the memmap, in memory
    resident, streamed = TensorSource(data, device), HostSource(data, device)
    return {
        "device": rate(lambda: resident.sample(batch), batch, device, seconds),
        "host": rate(lambda: streamed.sample(batch), batch, device, seconds),
    }


def memory(images: np.ndarray, device: torch.device) -> dict[str, int]:
    data = torch.from_numpy(np.array(images))  # a writable copy of the memmap, in memory
    if device.type != "cuda":
        return {"uint8_bytes": data.numel(), "float32_bytes": data.numel() * 4}
    sync(device)
    before = torch.cuda.memory_allocated(device)
    held = data.to(device)
    u8 = torch.cuda.memory_allocated(device) - before
    as_float = held.float()
    f32 = torch.cuda.memory_allocated(device) - before - u8
    del held, as_float
    return {"uint8_bytes": u8, "float32_bytes": f32}


def run(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="gan_ray_data_path_") as tmp:
        folder = Path(tmp) / "photos"
        say(f"writing {args.images} JPEGs of 256x256")
        write_jpegs(folder, args.images)
        for size in args.sizes:
            start = time.perf_counter()
            prepared = prepare(str(folder), Preprocessing(size, 3), cache_dir=Path(tmp) / "cache", say=say)
            prepare_s = time.perf_counter() - start
            decoded = decode_rate(folder, size, args.decode_limit)
            batches = {b: batch_rates(prepared.images, b, device, args.seconds) for b in args.batches}
            best = max(batches[args.batches[0]].values())
            emit(
                {
                    "measurement": "decode",
                    "size": size,
                    "decode_images_per_s": round(decoded, 1),
                    "prepared_images_per_s": round(best, 1),
                    "speedup": round(best / decoded, 1),
                    "prepare_s": round(prepare_s, 2),
                    "images": int(prepared.images.shape[0]),
                    "device": device.type,
                }
            )
            for b, rates in batches.items():
                step = step_rate(size, b, device, args.seconds)
                for path, value in rates.items():
                    emit(
                        {
                            "measurement": "batches",
                            "size": size,
                            "batch": b,
                            "path": path,
                            "images_per_s": round(value, 1),
                            "step_images_per_s": None if step is None else round(step, 1),
                            "device": device.type,
                        }
                    )
            emit(
                {
                    "measurement": "memory",
                    "size": size,
                    **memory(prepared.images, device),
                    "device": device.type,
                }
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="300 images, 28 and 64 px, batch 64, 1 s per rate")
    p.add_argument("--images", type=int, default=None, help="JPEGs to write (default 4000; 300 quick)")
    p.add_argument("--seconds", type=float, default=None, help="how long each rate is measured (3; 1 quick)")
    p.add_argument("--sizes", default=None, help="side lengths, e.g. 28,64,128 (default; 28,64 quick)")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in (args.sizes or ("28,64" if args.quick else "28,64,128")).split(",")]
    args.batches = [64] if args.quick else [64, 256]
    args.images = args.images or (300 if args.quick else 4000)
    args.seconds = args.seconds or (1.0 if args.quick else 3.0)
    args.decode_limit = min(args.images, 2000)
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    say(f"device fraction for the resident path: {DEVICE_FRACTION} of free device memory")
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
