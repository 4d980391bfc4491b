"""The ``gan-ray`` command line: one subcommand per public function of :mod:`gan_ray`."""

from __future__ import annotations

import argparse
import sys

from gan_ray.config import ConfigError


def _train(args: argparse.Namespace) -> int:
    from gan_ray.api import train

    result = train(args.config, resume=args.resume)
    print(f"output: {result.output_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gan-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one GAN from a YAML config")
    p.add_argument("config", help="path to a YAML config (see README)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"gan-ray: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
