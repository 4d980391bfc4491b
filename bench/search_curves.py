"""Search efficiency without known starts: the best objective against trials and wall clock, per method.

Each method runs the sweep of a search space with its ``initial_points`` emptied, for each search seed,
through ``gan_ray.api.sweep`` (no MLflow). From Tune's per-trial results it takes each trial's end time
(seconds since the sweep was called, Ray's start included) and its best objective, and draws the
best-so-far against trials (in the order they ended) and against wall clock: one thin line per seed,
a thick one for the mean. Beside it, the expected best at a budget of k trials (the sweep report's
estimator, Lucic et al. 2018) over every seed's trials pooled, and each champion scored again on
20,000 samples (mode_distance, modes covered, high-quality fraction; on an image space the sweep's own
larger scoring of its champion).

Methods: ``random`` (random sampler, every trial run out), ``tpe`` (TPE, run out), ``tpe_asha`` (TPE with
ASHA's first rung a third into the run: the old default), ``tpe_asha_late`` (ASHA's first rung at half
the run), ``pbt`` (the space's ``*_pbt.yaml``), ``shipped`` (the file as it is, starts left out).

    python bench/search_curves.py --methods random tpe tpe_asha pbt --seeds 0 1 2 --out-dir /tmp/curves
    python bench/search_curves.py --plot-only /tmp/curves/search_curves.json   # redraw, rescore nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("random", "tpe", "tpe_asha", "tpe_asha_late", "pbt", "shipped")
CHAMPION_SAMPLES = 20_000
BUDGETS = (1, 2, 4, 8, 16)

#: ASHA's first rung for each ASHA method, as a fraction of the run.
FIRST_RUNG = {"tpe_asha": 1 / 3, "tpe_asha_late": 1 / 2}


def space_for(
    method: str,
    space: str,
    seed: int,
    steps: int | None,
    every: int | None,
    samples: int | None,
    data_root: str | None = None,
):
    """The search space ``method`` runs: no known starts, the search seed, the step overrides."""
    from gan_ray.search.load import load_search_space

    name = f"{space}_pbt" if method == "pbt" else space
    s = load_search_space(ROOT / "search_spaces" / f"{name}.yaml")
    overrides = {"train.steps": steps, "train.eval_every": every, "data.root": data_root}
    base = s.base.with_overrides({k: v for k, v in overrides.items() if v is not None})
    s = dataclasses.replace(s.with_initial_points("none"), base=base, seed=seed)
    if samples is not None:
        s = s.with_budget(num_samples=samples)
    if method in ("random", "tpe"):
        return dataclasses.replace(s, sampler=method, scheduler="none")
    if method in FIRST_RUNG:
        evals = base.train.steps // base.train.eval_every
        grace = max(1, int(evals * FIRST_RUNG[method] + 0.5))  # half up: 5 evals -> 2 and 3
        return dataclasses.replace(s, sampler="tpe", scheduler="asha", grace_period=grace)
    return s


def trial_points(storage: Path, start: float, objective) -> list[dict[str, Any]]:
    """Each Tune trial under ``storage``: its end (s since ``start``) and its best objective, and its
    evals as (s since start, best so far); trials without a finite objective are left out."""
    trials = []
    for path in sorted(storage.rglob("result.json")):
        evals, best, params = [], None, None
        for line in path.read_text().splitlines():
            row = json.loads(line)
            params = row.get("config", params)
            value = row.get("best_objective", row.get("objective"))
            if (
                not isinstance(value, (int, float))
                or value != value
                or value in (float("inf"), float("-inf"))
            ):
                continue
            best = value if best is None or objective.better(value, best) else best
            evals.append((row["timestamp"] - start, best))
        if evals:
            trials.append(
                {
                    "trial": path.parent.name,
                    "end_s": evals[-1][0],
                    "best": best,
                    "evals": evals,
                    "params": params,
                }
            )
    return sorted(trials, key=lambda t: t["end_s"])


def champion_quality(result, space) -> dict[str, Any]:
    """The sweep's champion: on a 2-D mixture scored again on 20,000 samples (sample seed 0); on images
    the sweep's own larger scoring of it (``final_objective``) beside its best training eval."""
    from gan_ray.data.catalog import MIXTURE_METRICS

    metric = space.objective.metric
    if result.best is None or not result.best.best_checkpoint:
        return {metric: None, "params": None}
    if metric not in MIXTURE_METRICS:
        return {
            metric: result.best.final_objective,
            "best_eval": result.best.best_objective,
            "samples": result.best.final_samples,
            "params": result.best.params,
        }
    from gan_ray.metrics import mode_metrics
    from gan_ray.sampling import load_generator

    generator = load_generator(result.best.best_checkpoint)
    m = mode_metrics(generator.sample(CHAMPION_SAMPLES, seed=0), space.base.data.name)
    return {
        "mode_distance": m["mode_distance"],
        "modes": m["modes_covered"],
        "high_quality": m["high_quality_fraction"],
        "params": result.best.params,
    }


def run_one(method: str, seed: int, args, root: Path) -> dict[str, Any]:
    """One sweep of ``method`` at search seed ``seed``: its trials' points and its champion."""
    from gan_ray.api import sweep

    space = space_for(method, args.space, seed, args.steps, args.eval_every, args.num_samples, args.data_root)
    folder = root / f"{method}-{seed}"
    folder.mkdir(parents=True)
    start = time.time()
    result = sweep(
        space,
        tracking=False,
        storage_path=str(folder / "ray_results"),
        study_storage=f"sqlite:///{folder / 'optuna.db'}",
        verbose=args.verbose,
    )
    wall = time.time() - start
    return {
        "space": args.space,
        "method": method,
        "seed": seed,
        "steps": space.base.train.steps,
        "num_samples": space.budget.num_samples,
        "wall_s": wall,
        "trials": trial_points(folder / "ray_results", start, space.objective),
        "statuses": {t.status: sum(u.status == t.status for u in result.trials) for t in result.trials},
        "champion": champion_quality(result, space),
        "objective": [space.objective.metric, space.objective.mode],
    }


def best_so_far(values: list[float]) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out else min(out[-1], v))
    return out


def expected_best(rows: list[dict[str, Any]], budgets=BUDGETS) -> dict[int, float]:
    """Expected best of k trials of a method, every seed's trials pooled: the report's estimator."""
    from gan_ray.objective import Objective
    from gan_ray.search.trials import expected_best_of_k

    values = [t["best"] for r in rows for t in r["trials"]]
    metric, mode = rows[0].get("objective", ("mode_distance", "min")) if rows else ("mode_distance", "min")
    curve = expected_best_of_k(values, Objective(metric, mode)) if values else []
    return {k: curve[k - 1] for k in budgets if k <= len(curve)}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: the champions' numbers per seed, and the expected best at each budget."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out.append(
            {
                "method": method,
                "seeds": [r["seed"] for r in mine],
                "wall_s": [round(r["wall_s"]) for r in mine],
                "trials": [len(r["trials"]) for r in mine],
                "best_eval": [min((t["best"] for t in r["trials"]), default=None) for r in mine],
                "champion": [{k: v for k, v in r["champion"].items() if k != "params"} for r in mine],
                "expected_best": expected_best(mine),
            }
        )
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Best-so-far against trials and against wall clock: seeds thin, the mean thick, one colour a method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_trial, by_clock) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        colour = f"C{i}"
        curves = [best_so_far([t["best"] for t in r["trials"]]) for r in rows if r["method"] == method]
        for c in curves:
            by_trial.plot(range(1, len(c) + 1), c, color=colour, lw=0.6, alpha=0.5)
        n = min(len(c) for c in curves)
        mean = [statistics.mean(c[k] for c in curves) for k in range(n)]
        by_trial.plot(range(1, n + 1), mean, color=colour, lw=2.2, label=method)
        _clock_lines(by_clock, [r for r in rows if r["method"] == method], colour, method)
    by_trial.set_xlabel("trials ended")
    by_clock.set_xlabel("wall clock since the sweep started (s)")
    for ax in (by_trial, by_clock):
        ax.set_ylabel(f"best {rows[0].get('objective', ['mode_distance'])[0]} so far (training evals)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    by_trial.legend()
    fig.suptitle(f"{rows[0]['space']}: search without known starts ({len(rows)} sweeps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _clock_lines(ax, rows: list[dict[str, Any]], colour: str, method: str) -> None:
    """Best-so-far at every eval of every trial against its time; the mean on a common time grid."""
    steps = []
    for r in rows:
        points = sorted((t, b) for trial in r["trials"] for t, b in trial["evals"])
        times = [t for t, _ in points]
        steps.append((times, best_so_far([b for _, b in points])))
        ax.step(times, steps[-1][1], where="post", color=colour, lw=0.6, alpha=0.5)
    end = min(s[0][-1] for s in steps if s[0])
    grid = [end * k / 100 for k in range(1, 101)]
    mean = []
    for g in grid:
        seen = [
            next((b for t, b in zip(reversed(ts), reversed(bs), strict=True) if t <= g), None)
            for ts, bs in steps
        ]
        mean.append(statistics.mean(seen) if all(v is not None for v in seen) else None)
    ax.plot(grid, mean, color=colour, lw=2.2, label=method)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--space", default="ring8", help="a space of search_spaces/ (default ring8)")
    parser.add_argument("--data-root", default=None, help="data.root of an image space")
    parser.add_argument("--methods", nargs="+", default=["random", "tpe", "tpe_asha", "pbt"], choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    parser.add_argument("--steps", type=int, default=None, help="steps per trial (default: the file's)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps per eval (default: the file's)")
    parser.add_argument(
        "--num-samples", type=int, default=None, help="trials per sweep (default: the file's)"
    )
    parser.add_argument("--out-dir", default=".", help="where search_curves.{json,png} go")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--plot-only", default=None, help="redraw from this JSON; run nothing")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        rows = json.loads(Path(args.plot_only).read_text())["sweeps"]
    else:
        rows = _run_all(args, out)
    plot(rows, out / "search_curves.png")
    table = summary(rows)
    (out / "search_curves.json").write_text(json.dumps({"sweeps": rows, "summary": table}, indent=1))
    for line in table:
        print(json.dumps(line))
    return 0


def _run_all(args, out: Path) -> list[dict[str, Any]]:
    """Every method at every seed (seeds outermost), the JSON rewritten after each sweep."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="search_curves_") as tmp:
        for seed in args.seeds:
            for method in args.methods:
                rows.append(run_one(method, seed, args, Path(tmp)))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "trials"}), file=sys.stderr)
                (out / "search_curves.json").write_text(json.dumps({"sweeps": rows}, indent=1))
    return rows


if __name__ == "__main__":
    sys.exit(main())
