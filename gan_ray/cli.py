"""The ``gan-ray`` command line: one subcommand per public function of :mod:`gan_ray`.

Nothing heavy is imported until a subcommand runs, so ``gan-ray --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from gan_ray import __version__
from gan_ray.errors import USER_ERRORS, DivergedError

EXAMPLES = """examples:
  gan-ray train gan_ray/configs/ring8.yaml --no-tracking
  gan-ray train gan_ray/configs/ring8.yaml --workers 2
  gan-ray sweep search_spaces/ring8.yaml
  gan-ray sweep search_spaces/ring8.yaml --resume --num-samples 8
  gan-ray sweep search_spaces/ring8_pbt.yaml -v
  gan-ray sweep search_spaces/fashion_mnist_laptop.yaml --set data.root=~/data
  gan-ray prepare ~/photos --size 64
  gan-ray sweep search_spaces/folder.yaml --set data.root=~/photos
  gan-ray sample --model models:/gan_ray-ring8@champion -n 2500 --out ring8.png
  gan-ray export models:/gan_ray-ring8@champion --onnx ring8.onnx
  gan-ray report ring8
"""


#: What every --tracking-uri falls back to (gan_ray.settings.tracking_uri); the registry follows
#: $MLFLOW_REGISTRY_URI where it is set.
TRACKING_HELP = (
    "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db in the current folder; "
    "the model registry: $MLFLOW_REGISTRY_URI, else the same store)"
)


def _overrides(args: argparse.Namespace) -> dict:
    from gan_ray.config import parse_overrides

    return parse_overrides(args.set)


def _train(args: argparse.Namespace) -> int:
    from gan_ray.api import train
    from gan_ray.training.result import divergence

    result = train(
        args.config,
        workers=args.workers,
        gpu=args.gpu or None,
        backend=args.backend,
        resume=args.resume,
        tracking_uri=args.tracking_uri,
        tracking=not args.no_tracking,
        overrides=_overrides(args),
    )
    if result.diverged:
        print(f"gan-ray: {divergence(result)}", file=sys.stderr)
        return 1
    print(f"results: {result.output}")
    return 0


#: The libraries whose INFO lines flood a sweep's terminal (Ray's driver and Tune, MLflow, Optuna).
LIBRARY_LOGGERS = ("ray", "mlflow", "optuna")


def _console(args: argparse.Namespace) -> int:
    """The sweep's verbosity (2 with -v), with the libraries' console handlers at ``--log-level``
    (default WARNING; INFO with -v). Their INFO lines are one per checkpoint and per study load: only
    noise between the progress tables."""
    import logging

    # Imported for their loggers' handlers, which they install on import (the sweep imports them anyway).
    import mlflow  # noqa: F401
    import optuna  # noqa: F401
    import ray  # noqa: F401

    level = args.log_level or ("INFO" if args.verbose else "WARNING")
    for name in LIBRARY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(level)
    # gan_ray's own one-off lines: a feature classifier trained once before the first trial (minutes on a
    # busy CPU, with nothing else on the console meanwhile) and its held-out accuracy.
    features = logging.getLogger("gan_ray.metrics.features")
    if not features.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("gan_ray: %(message)s"))
        features.addHandler(handler)
        features.setLevel(logging.INFO)
    return 2 if args.verbose else 1


def _sweep(args: argparse.Namespace) -> int:
    from gan_ray.api import sweep

    verbose = _console(args)

    result = sweep(
        args.search_space,
        num_samples=args.num_samples,
        resume=args.resume,
        tracking=not args.no_tracking,
        tracking_uri=args.tracking_uri,
        storage_path=args.storage_path,
        study_storage=args.study_storage,
        model_name=args.model_name,
        overrides=_overrides(args),
        initial_points=args.initial_points,
        verbose=verbose,
    )
    if result.interrupted:
        return 130  # what a shell reports for Ctrl-C
    return 0 if result.best is not None else 1


def _sample(args: argparse.Namespace) -> int:
    from gan_ray.api import load_generator

    generator = load_generator(args.model, tracking_uri=args.tracking_uri, device=args.device)
    if args.interpolate is not None:
        grid = generator.interpolate(
            args.interpolate,
            args.steps,
            seed=args.seed,
            path=args.path,
            truncation=args.truncation,
            label=args.label,
        )
        path = generator.save(grid, args.out, per_row=args.steps)
        print(f"interpolation grid ({args.interpolate} x {args.steps}, {args.path}): {path}")
        return 0
    labels = None if args.label is None else [args.label] * args.num_samples
    samples = generator.sample(args.num_samples, seed=args.seed, truncation=args.truncation, labels=labels)
    # A conditional G's samples go through the classes in turn: a row of num_classes is one of each.
    by_class = generator.num_classes if labels is None and generator.num_classes else None
    path = generator.save(samples, args.out, per_row=by_class)
    print(f"samples: {path}" + (f" (one column a class, 0 to {by_class - 1})" if by_class else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    from gan_ray.api import export

    path = export(args.model, onnx=args.onnx, tracking_uri=args.tracking_uri)
    print(f"onnx: {path}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from gan_ray.api import prepare

    path = prepare(args.source, size=args.size, channels=args.channels, labels=args.labels, out=args.out)
    print(f"prepared file: {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from gan_ray.api import report
    from gan_ray.tracking.report import importance_line

    done = report(args.name, tracking_uri=args.tracking_uri, study_storage=args.study_storage, out=args.out)
    study = done.study
    print(f"study {study.name}: {len(study.trials)} trials, {len(study.completed)} completed")
    print(importance_line(study).replace("`", ""))
    print(f"report: {done.tracking_uri} run {done.run_id}, artifacts {', '.join(done.artifacts)}")
    if args.out:
        print(f"files: {args.out}")
    return 0


def _add_set(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"replace a dotted key of {what}, e.g. --set data.root=~/data (VALUE is read as YAML; repeatable)",
    )


def _add_sample_parser(sub) -> None:
    p = sub.add_parser(
        "sample", help="draw samples (or an interpolation grid) from a trained generator into a PNG"
    )
    p.add_argument(
        "--model",
        required=True,
        help="models:/NAME@champion, models:/NAME/VERSION, runs:/RUN_ID/generator, or a local folder",
    )
    p.add_argument("-n", "--num-samples", type=int, default=64, help="how many samples (default 64)")
    p.add_argument("--out", default="samples.png", help="PNG to write (default samples.png)")
    p.add_argument("--seed", type=int, default=None, help="noise seed: the same seed gives the same samples")
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="PSI",
        help="draw z x PSI (normal noise only): PSI < 1 trades variety for typical samples",
    )
    p.add_argument(
        "--interpolate",
        type=int,
        default=None,
        metavar="K",
        help="write a grid of K rows, each a path between two noise vectors (images only; -n is ignored)",
    )
    p.add_argument(
        "--class",
        dest="label",
        type=int,
        default=None,
        metavar="K",
        help="class-conditional models: draw every sample of class K (default: the classes in turn)",
    )
    p.add_argument("--steps", type=int, default=8, help="samples along each interpolation path (default 8)")
    p.add_argument(
        "--path", choices=("slerp", "lerp"), default="slerp", help="interpolation path (default slerp)"
    )
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.set_defaults(func=_sample)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a trained generator as an ONNX file (dynamic batch) for tools outside PyTorch"
    )
    p.add_argument(
        "model",
        metavar="MODEL_URI",
        help="models:/NAME@champion, models:/NAME/VERSION, runs:/RUN_ID/generator, or a local folder",
    )
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=_export)


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="which hyperparameters mattered: a sweep's report (charts, tables) on its MLflow parent run",
    )
    p.add_argument(
        "name",
        metavar="EXPERIMENT_OR_STUDY",
        help="an MLflow experiment (its latest sweep) or an Optuna study",
    )
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument(
        "--study-storage",
        default=None,
        help="Optuna RDB URL (default $GAN_RAY_OPTUNA_STORAGE or ./optuna.db)",
    )
    p.add_argument("--out", default=None, help="also write the report's files to this folder")
    p.set_defaults(func=_report)


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="decode a folder of images (a folder, a .zip, s3://...) once into the file a folder run reads",
    )
    p.add_argument("source", help="a folder (class subfolders give labels), a .zip, or s3://bucket/prefix")
    p.add_argument(
        "--size", type=int, required=True, help="side length: the short side resized, centre cropped"
    )
    p.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1: grey, 3: RGB (default)")
    p.add_argument(
        "--labels",
        choices=("auto", "none"),
        default="auto",
        help="auto: from class subfolders (a flat folder has none); none: ignore the folders",
    )
    p.add_argument(
        "--out",
        default=None,
        help="write it here (a run reads it with data.prepared); default: the cache, where runs find it",
    )
    p.set_defaults(func=_prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gan-ray",
        description="Train GANs with Ray Train, search their hyperparameters with Ray Tune + Optuna, "
        "and track every run in MLflow.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gan-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one GAN from a YAML config")
    p.add_argument("config", help="path to a YAML config (see docs/configuration.md)")
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
        "--resume",
        action="store_true",
        help="continue the latest checkpoint of the run's name (output_dir/NAME locally, the storage's NAME "
        "under Ray); without it an earlier run of the name starts afresh (its checkpoints on a local disk "
        "are removed, with a line saying so; remote storage is refused)",
    )
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument("--no-tracking", action="store_true", help="do not record the run in MLflow")
    _add_set(p, "the config")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "sweep", help="search hyperparameters with Ray Tune + Optuna; register the best generator"
    )
    p.add_argument("search_space", help="a search-space YAML, e.g. search_spaces/ring8.yaml")
    p.add_argument("--num-samples", type=int, default=None, help="trials to run (default: the file's budget)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue this sweep's latest study in the study storage (an error if it has none): run the "
        "trials its plan still misses, or --num-samples more; what an interrupted sweep left running is ended",
    )
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument(
        "--storage-path",
        default=None,
        help="Ray storage for checkpoints (default $GAN_RAY_STORAGE or ./ray_results)",
    )
    p.add_argument(
        "--study-storage",
        default=None,
        help="Optuna RDB URL (default $GAN_RAY_OPTUNA_STORAGE or ./optuna.db)",
    )
    p.add_argument("--model-name", default=None, help="registered model name (default gan_ray-<sweep name>)")
    p.add_argument(
        "--initial-points",
        default=None,
        metavar="FILE|none",
        help="points to try first instead of the file's search.initial_points: a YAML list of "
        "{parameter: value}, e.g. search_spaces/starts/ring8.yaml (known-good recipes); none: none",
    )
    p.add_argument(
        "--no-tracking",
        action="store_true",
        help="record nothing in MLflow (the summary still names the best)",
    )
    _add_set(p, "the search space's base config (not a searched one)")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also Ray's worker lines, Tune's tables and the libraries' INFO lines (default: a progress "
        "table every 30 s and the summary; the rest stays in Ray's log files)",
    )
    p.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=None,
        help="the level of Ray's, MLflow's and Optuna's log lines on the terminal (default WARNING, INFO with -v)",
    )
    p.set_defaults(func=_sweep)

    _add_sample_parser(sub)
    _add_prepare(sub)
    _add_export(sub)
    _add_report(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A model is a handful of small files (logged at a run's end, loaded to sample, export or score the
    # sweep's best again): MLflow's per-file progress bars only break the console's lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"gan-ray: error: {err}", file=sys.stderr)
        return 2
    except DivergedError as err:
        print(f"gan-ray: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
