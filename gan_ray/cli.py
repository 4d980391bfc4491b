"""The ``gan-ray`` command line: one subcommand per public function of :mod:`gan_ray`."""

from __future__ import annotations

import argparse
import sys

from gan_ray.config import ConfigError
from gan_ray.loop import DivergedError


def _train(args: argparse.Namespace) -> int:
    from gan_ray.api import train

    result = train(
        args.config, workers=args.workers, gpu=args.gpu or None, backend=args.backend, resume=args.resume
    )
    if getattr(result, "diverged", False):
        print(f"gan-ray: training diverged: {result.metrics}", file=sys.stderr)
        return 1
    where = getattr(result, "output_dir", None) or getattr(result, "path", None)
    print(f"results: {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gan-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one GAN from a YAML config")
    p.add_argument("config", help="path to a YAML config (see README)")
    p.add_argument("--workers", type=int, default=None, help="Ray Train with N data-parallel workers")
    p.add_argument("--gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument(
        "--backend",
        choices=("auto", "local", "ray"),
        default="auto",
        help="local: this process; ray: Ray Train (a local Ray, or the cluster at $RAY_ADDRESS); "
        "auto: Ray when --workers/--gpu/$RAY_ADDRESS or the config asks for it",
    )
    p.add_argument(
        "--resume", action="store_true", help="local backend: continue from the output folder's checkpoint"
    )
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"gan-ray: error: {err}", file=sys.stderr)
        return 2
    except DivergedError as err:
        print(f"gan-ray: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
