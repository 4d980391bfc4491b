"""Equal quality from a folder: the same model and hyperparameters trained on the built-in ``fashion_mnist``
and on the same images exported as PNG files in class folders (``folder``), scored by one pinned feature
classifier, over several seeds. The folder path must reach the same ``fid_classifier`` within noise.

    python bench/folder_quality.py --data-root ../shared/data            # 3 seeds, 1,000 steps: ~10 min on 2 CPUs

Prints one JSON line per run and a summary line (mean and std per dataset, and the difference of the
means against the seeds' spread); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from gan_ray.config import validate_config
from gan_ray.data.images import load_torchvision_uint8
from gan_ray.training.local import run_local


def export_pngs(root: Path, data_root: str, folder: Path) -> None:
    """Fashion-MNIST's training split as ``folder/class_<k>/<index>.png`` (all 60,000 images)."""
    from PIL import Image

    images, labels = load_torchvision_uint8("fashion_mnist", data_root, train=True)
    for k in range(10):
        (folder / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(images.shape[0]):
        Image.fromarray(images[i, 0].numpy(), "L").save(folder / f"class_{int(labels[i])}" / f"{i:05d}.png")


def pinned_classifier(data_root: str, out: Path) -> Path:
    """One feature classifier for both datasets (the tests' small one: 4,000 images, 400 steps)."""
    from gan_ray.metrics.features import train_classifier
    from gan_ray.metrics.features.classifier import describe

    images, labels = load_torchvision_uint8("fashion_mnist", data_root, train=True)
    model = train_classifier(images[:4000], labels[:4000], min_steps=400, max_steps=400)
    torch.save(describe(model, "fashion_mnist", seed=0), out)
    return out


def config(data: dict, seed: int, steps: int, extractor: Path, out: Path):
    return validate_config(
        {
            "name": f"{data['name']}-seed{seed}",
            "output_dir": str(out / f"{data['name']}-seed{seed}"),
            "data": data,
            "model": {"name": "dcgan", "params": {"g_filters": 16, "d_filters": 16}},
            "noise": {"dim": 100},
            "train": {
                "batch_size": 64,
                "steps": steps,
                "eval_every": steps,
                "eval_samples": 5000,
                "seed": seed,
            },
            "metrics": {"extractor": str(extractor)},
        }
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="a torchvision root holding FashionMNIST/raw")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=1000)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    scores: dict[str, list[float]] = {"fashion_mnist": [], "folder": []}
    with tempfile.TemporaryDirectory(prefix="gan_ray_folder_quality_") as tmp:
        tmp_path = Path(tmp)
        print("exporting Fashion-MNIST as PNG files", file=sys.stderr)
        export_pngs(tmp_path, args.data_root, tmp_path / "fashion")
        extractor = pinned_classifier(args.data_root, tmp_path / "classifier.pt")
        datasets = {
            "fashion_mnist": {"name": "fashion_mnist", "root": args.data_root},
            "folder": {"name": "folder", "root": str(tmp_path / "fashion"), "image_size": 28, "channels": 1},
        }
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name, data in datasets.items():
                result = run_local(config(data, seed, args.steps, extractor, tmp_path), verbose=False)
                value = result.final["fid_classifier"]
                scores[name].append(value)
                print(
                    json.dumps({"dataset": name, "seed": seed, "steps": args.steps, "fid_classifier": value})
                )
    mean = {k: statistics.mean(v) for k, v in scores.items()}
    std = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in scores.items()}
    print(
        json.dumps(
            {"summary": True, "mean": mean, "std": std, "difference": mean["folder"] - mean["fashion_mnist"]}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
