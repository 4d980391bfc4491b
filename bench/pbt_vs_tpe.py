"""Population-based training against TPE + ASHA on ring8, on the same wall clock: champion quality.

For each seed: the PBT sweep of ``search_spaces/ring8_pbt.yaml`` runs its population to the end and
its time is measured; then the TPE + ASHA sweep of ``search_spaces/ring8.yaml`` gets that much time
(``budget.time_budget_s``) and as many trials as it can start in it. Each sweep's champion (its best
trial, chosen as a sweep chooses it) is scored on 2,500 samples at three sample seeds: modes covered,
high-quality fraction, reverse KL (the VEEGAN/PacGAN protocol). Nothing is recorded in MLflow.

    python bench/pbt_vs_tpe.py                        # one seed, population 8 (about 5 minutes on 2 CPUs)
    python bench/pbt_vs_tpe.py --seeds 0 1 2 --steps 1500 --out pbt_vs_tpe.json
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

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SEEDS = (0, 1, 2)


def _space(path: Path, seed: int, steps: int | None, every: int | None, starts: bool, **budget):
    from gan_ray.search.load import load_search_space

    space = load_search_space(path)
    if not starts:  # without the files' known-good points: what each search finds by itself
        space = dataclasses.replace(space, initial_points=())
    overrides = {"train.steps": steps, "train.eval_every": every}
    base = space.base.with_overrides({k: v for k, v in overrides.items() if v is not None})
    return dataclasses.replace(space, base=base, seed=seed).with_budget(**budget)


def _champion_quality(result) -> dict:
    """The champion's modes, high-quality fraction and reverse KL, averaged over the sample seeds."""
    from gan_ray.metrics import mode_metrics
    from gan_ray.sampling import load_generator

    if result.best is None or not result.best.best_checkpoint:
        return {"modes": None, "high_quality": None, "reverse_kl": None}
    generator = load_generator(result.best.best_checkpoint)
    scores = [mode_metrics(generator.sample(2500, seed=s), "ring8") for s in SAMPLE_SEEDS]
    return {
        "modes": statistics.mean(m["modes_covered"] for m in scores),
        "high_quality": statistics.mean(m["high_quality_fraction"] for m in scores),
        "reverse_kl": statistics.mean(m["reverse_kl"] for m in scores),
    }


def _run(space, root: Path, name: str) -> tuple[object, float]:
    from gan_ray.api import sweep

    (root / name).mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    result = sweep(
        space,
        tracking=False,
        storage_path=str(root / name / "ray_results"),
        study_storage=f"sqlite:///{root / name / 'optuna.db'}",
        verbose=1,
    )
    return result, time.monotonic() - start


def compare(
    seed: int, population: int, steps: int | None, every: int | None, starts: bool, root: Path
) -> list[dict]:
    """One seed: PBT to the end, then TPE + ASHA on the same wall clock."""
    pbt_space = _space(
        ROOT / "search_spaces" / "ring8_pbt.yaml", seed, steps, every, starts, num_samples=population
    )
    pbt, pbt_s = _run(pbt_space, root, f"pbt-{seed}")
    tpe_space = _space(
        ROOT / "search_spaces" / "ring8.yaml",
        seed,
        steps,
        every,
        starts,
        num_samples=10_000,
        time_budget_s=pbt_s,
    )
    tpe, tpe_s = _run(tpe_space, root, f"tpe-{seed}")
    rows = []
    for method, result, seconds in (("PBT", pbt, pbt_s), ("TPE+ASHA", tpe, tpe_s)):
        rows.append(
            {
                "method": method,
                "seed": seed,
                "known_good_starts": starts,
                "wall_s": round(seconds, 1),
                "trials": len(result.trials),
                "champion_mode_distance": result.best.champion_score if result.best else None,
                "exploits": sum(len(t.lineage) for t in result.trials),
                **_champion_quality(result),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| method | seed | known-good starts | wall s | trials | exploits | modes (of 8) | high quality | reverse KL |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        quality = (
            f"{r['modes']:.1f} | {100 * r['high_quality']:.1f} % | {r['reverse_kl']:.3f}"
            if r["modes"] is not None
            else "- | - | -"
        )
        lines.append(
            f"| {r['method']} | {r['seed']} | {'yes' if r['known_good_starts'] else 'no'} | {r['wall_s']:.0f} | {r['trials']} | {r['exploits']} | {quality} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="search seeds (default 0)")
    parser.add_argument("--population", type=int, default=8, help="PBT's population (default 8)")
    parser.add_argument("--steps", type=int, default=None, help="steps per trial (default: the files' 3000)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps per eval (default: 500)")
    parser.add_argument(
        "--no-initial-points", action="store_true", help="leave out the files' known-good starting points"
    )
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pbt_vs_tpe_") as tmp:
        for seed in args.seeds:
            rows += compare(
                seed, args.population, args.steps, args.eval_every, not args.no_initial_points, Path(tmp)
            )
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
