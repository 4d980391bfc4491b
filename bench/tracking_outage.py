"""A tracking server that is away for minutes mid-sweep, with MLflow's client settings as a user has
them (its own HTTP retries included): one sweep trial, recorded by the sweep's own classes, logs an
eval (metrics and a sample image) every second while a real ``mlflow server`` is killed and, ``--outage``
seconds later, started again on the same port and database. Prints what arrived, as one JSON line.

    python bench/tracking_outage.py --outage 150
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import MlflowServer  # noqa: E402

SPACE = """\
name: bench_outage
base:
  data: {name: ring8}
  train: {steps: 100000, eval_every: 10}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
budget: {num_samples: 1}
"""


def log_through_outage(run, server, root: Path, before: float, outage: float, after: float):
    """An eval a second: ``before`` seconds, then ``outage`` seconds with the server killed, then
    ``after`` seconds once it is back. Returns the evals and the slowest ``on_eval`` (s)."""
    import numpy as np
    from PIL import Image

    from gan_ray.training.observers import EvalRecord

    history, slowest, step = [], 0.0, 0
    started = time.monotonic()
    killed_at = started + before
    back_at = killed_at + outage
    end_at = back_at + after
    state = "up"
    while time.monotonic() < end_at:
        now = time.monotonic()
        if state == "up" and now >= killed_at:
            server.kill()
            state = "down"
        elif state == "down" and now >= back_at:
            server.start()
            state = "back"
        step += 10
        metrics = {"step": step, "mode_distance": 1.0 / step, "loss_d": 0.5, "loss_g": 0.7}
        Image.fromarray(np.full((64, 64, 3), step % 255, np.uint8)).save(root / "samples.png")
        t = time.perf_counter()
        run.on_eval(EvalRecord(step, metrics, root))
        slowest = max(slowest, time.perf_counter() - t)
        history.append(metrics)
        time.sleep(1.0)
    return history, slowest


def main(argv: list[str] | None = None) -> None:
    from gan_ray.objective import Objective
    from gan_ray.search.load import parse_search_space
    from gan_ray.search.trials import SweepResult
    from gan_ray.tracking.run import logged_sample_steps
    from gan_ray.tracking.store import TAG_LOST, make_client
    from gan_ray.tracking.sweep import MlflowSweep
    from gan_ray.training.observers import RunOutcome

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=150.0, help="seconds the server is away")
    parser.add_argument("--before", type=float, default=20.0, help="seconds of logging before it goes")
    parser.add_argument("--after", type=float, default=20.0, help="seconds of logging once it is back")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="gan_ray_outage_"))
    server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root / "server", workers=2).start()
    space = parse_search_space(SPACE)
    sweep = MlflowSweep(server.uri, space, f"bench_outage-{int(time.time())}", register=False)
    values = space.resolve({"optim.lr_g": 1e-3})
    cfg = space.trial_config(values)
    run = sweep.trial("o0001", cfg, values)
    run.start(cfg)
    history, slowest = log_through_outage(run, server, root, args.before, args.outage, args.after)
    run.end(RunOutcome("completed", history, None))
    drain = time.monotonic()
    sweep.finish(
        SweepResult(space.name, sweep.study_name, Objective("mode_distance", "min")), "FINISHED", None
    )
    client = make_client(server.uri)
    logged = client.get_run(run.run_id)
    points = len(client.get_metric_history(run.run_id, "mode_distance"))
    images = len(set(logged_sample_steps(client, run.run_id)))
    row = {
        "outage_s": args.outage,
        "evals": len(history),
        "metric_points": f"{points}/{len(history)}",
        "sample_images": f"{images}/{len(history)}",
        "status": logged.info.status,
        "lost_tag": logged.data.tags.get(TAG_LOST),
        "slowest_on_eval_ms": round(slowest * 1000, 1),
        "drain_after_end_s": round(time.monotonic() - drain, 1),
    }
    server.kill()
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
