"""The bench scripts run end to end and print the JSON lines they promise (ring8 only, quick)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bench_scripts import bench_module

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "throughput.py"
THROUGHPUT_KEYS = ("model", "batch", "device", "reference_images_per_s", "gan_ray_images_per_s", "ratio")


def run_bench(*args: str, timeout: float = 120) -> list[dict]:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--device",
            "cpu",
            "--models",
            "ring8",
            "--threads",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_ring8_prints_throughput_lines():
    lines = run_bench("--no-ray")
    throughput = [line for line in lines if line.get("measurement") == "throughput"]
    assert len(throughput) == 1
    (line,) = throughput
    for key in THROUGHPUT_KEYS:
        assert key in line, key
    assert (line["model"], line["batch"], line["device"]) == ("ring8", 256, "cpu")
    for key in ("reference_images_per_s", "gan_ray_images_per_s", "ratio"):
        assert positive_finite(line[key]), (key, line[key])
    env = [line for line in lines if line.get("measurement") == "environment"]
    assert env and env[0]["torch"]


def test_quick_ray_train_overhead_line(ray_session):
    # In this process, on the session's Ray: a cluster start-up fewer than running the script.
    bench = bench_module("throughput")
    line = bench.ray_overhead(argparse.Namespace(quick=True))
    json.dumps(line)
    assert line["measurement"] == "ray_train_overhead"
    for key in ("ray_train_overhead", "core_images_per_s", "ray_worker_images_per_s", "fit_wall_s"):
        assert positive_finite(line[key]), (key, line[key])
    assert line["worker_threads"] >= 1


PACKING = BENCH.with_name("packing.py")


def test_packing_runs_trials_side_by_side_and_sums_them():
    out = subprocess.run(
        [sys.executable, str(PACKING), "--quick", "--models", "ring8", "--trials", "1,2"]
        + ["--contenders", "gan_ray", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    packing = {line["trials"]: line for line in lines if line.get("measurement") == "packing"}
    assert sorted(packing) == [1, 2]
    for n, line in packing.items():
        assert (line["contender"], line["model"], line["device"]) == ("gan_ray", "ring8", "cpu")
        # One figure per trial process, each of which really ran, and the aggregate is their sum.
        assert len(line["per_trial_images_per_s"]) == n
        assert all(positive_finite(v) for v in line["per_trial_images_per_s"])
        assert line["aggregate_images_per_s"] == pytest.approx(sum(line["per_trial_images_per_s"]))
    assert packing[1]["scaling"] == 1.0
    assert positive_finite(packing[2]["scaling"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "dcgan99"], "unknown model"),
        (["--trials", "1,0"], "at least 1"),
        (["--trials", "two"], "comma-separated integers"),
    ],
)
def test_packing_rejects_bad_arguments_before_starting_trials(args, message):
    out = subprocess.run([sys.executable, str(PACKING), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr
    assert "packing" not in out.stdout


ABLATION = BENCH.with_name("ablation.py")


def run_ablation(*args: str) -> tuple[list[dict], str]:
    """bench/ablation.py's JSON lines and its stderr (the Markdown table)."""
    out = subprocess.run(
        [sys.executable, str(ABLATION), *args], capture_output=True, text=True, timeout=180, check=True
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()], out.stderr


def test_sharpening_ablation_runs_each_variant_from_the_sweep_defaults():
    lines, table = run_ablation(
        "--study",
        "sharpening",
        "--datasets",
        "ring8",
        "--variants",
        "plain,ema",
        "--seeds",
        "1",
        "--steps",
        "60",
    )
    runs = {line["variant"]: line for line in lines if line["measurement"] == "sharpening_run"}
    assert sorted(runs) == ["ema", "plain"]
    for line in runs.values():
        # The base is ring8.yaml's first known-good start, cut to the requested steps.
        assert line["base"]["loss"] == "hinge" and line["base"]["k"] == 5 and line["steps"] == 60
        assert 0 <= line["high_quality_fraction"] <= 1 and 0 <= line["modes_covered"] <= 8
    # Same seed, same steps: only the EMA tells the two apart, so the samples (and scores) differ.
    assert runs["ema"]["mode_distance_20000"] != runs["plain"]["mode_distance_20000"]
    summaries = [line for line in lines if line["measurement"] == "sharpening"]
    assert {s["variant"] for s in summaries} == {"plain", "ema"}
    assert "| ring8 | ema |" in table


def test_anticollapse_ablation_starts_from_the_plain_gan_and_turns_each_option_on():
    lines, table = run_ablation(
        "--study",
        "anticollapse",
        "--datasets",
        "grid25",
        "--seeds",
        "1",
        "--variants",
        "plain,pac2,minibatch_std",
        "--steps",
        "40",
    )
    runs = {line["variant"]: line for line in lines if line["measurement"] == "anticollapse_run"}
    assert sorted(runs) == ["minibatch_std", "pac2", "plain"]
    for line in runs.values():
        assert line["base"]["loss"] == "non_saturating" and line["base"]["k"] == 1 and line["steps"] == 40
        assert 0 <= line["modes_covered"] <= 25
    assert [runs[v]["base"]["d_pac"] for v in ("plain", "pac2", "minibatch_std")] == [1, 2, 1]
    assert [runs[v]["base"]["d_minibatch_std"] for v in ("plain", "pac2", "minibatch_std")] == [0, 0, 4]
    assert "| grid25 | pac2 |" in table


def test_objectives_ablation_adds_penalties_then_the_relativistic_loss_then_r3gans_recipe():
    lines, table = run_ablation(
        "--study", "objectives", "--datasets", "ring8", "--seeds", "1", "--steps", "40",
        "--variants", "ns,ns+r1,rpgan+r1+r2,r3gan",
    )  # fmt: skip
    runs = {line["variant"]: line for line in lines if line["measurement"] == "objectives_run"}
    assert sorted(runs) == ["ns", "ns+r1", "r3gan", "rpgan+r1+r2"]
    base = {v: (r["base"]["loss"], r["base"]["penalty"], r["base"]["beta1"]) for v, r in runs.items()}
    assert base == {
        "ns": ("non_saturating", "none", 0.5),
        "ns+r1": ("non_saturating", "r1", 0.5),
        "rpgan+r1+r2": ("rpgan", "r1_r2", 0.5),
        "r3gan": ("rpgan", "r1_r2", 0.0),
    }
    assert runs["r3gan"]["base"]["lr_schedule"] == "cosine" and runs["r3gan"]["base"]["ema"] == 0.999
    assert all(r["health"] in ("ok", "d_won", "g_stalled", "no_variance") for r in runs.values())
    assert "| ring8 | r3gan |" in table


def test_an_image_ablation_needs_the_objectives_study_and_a_data_root():
    cmd = [sys.executable, str(ABLATION), "--study", "objectives", "--datasets", "fashion_mnist"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--data-root" in out.stderr


def test_ablation_rejects_an_unknown_variant():
    cmd = [sys.executable, str(ABLATION), "--study", "sharpening", "--variants", "swa"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "swa" in out.stderr


OVERHEAD_SPACE = """\
name: t_overhead
base:
  data: {name: ring8}
  noise: {dim: 8}
  model: {hidden_dim: 32, hidden_layers: 2}
  train: {steps: 400, eval_every: 100, batch_size: 64, eval_samples: 500}
parameters:
  optim.lr_g: {log_uniform: [5.0e-4, 2.0e-3]}
budget: {num_samples: 3, max_concurrent_trials: 2}
scheduler: {type: none}
"""


def test_sweep_overhead_accounts_for_every_trial(ray_session, tmp_path):
    space = tmp_path / "t_overhead.yaml"
    space.write_text(OVERHEAD_SPACE)
    # It joins the session's Ray: two local Rays on one machine break Ray Train's cleaner.
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    out = subprocess.run(
        [sys.executable, str(BENCH.parent / "sweep_overhead.py"), str(space), "--label", "t"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=env,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    trials = [line for line in lines if line["measurement"] == "trial"]
    (sweep,) = [line for line in lines if line["measurement"] == "sweep"]
    assert len(trials) == 3 and sweep["trials"] == 3 and sweep["statuses"] == {"completed": 3}
    for t in trials:
        assert t["evals"] == 4 and 0 < t["steps_s"] <= t["wall_s"], t
        assert t["overhead_s"] == pytest.approx(t["wall_s"] - t["steps_s"])
    assert sweep["steps_s"] == pytest.approx(sum(t["steps_s"] for t in trials))
    assert 0 < sweep["efficiency"] <= 1.0 and sweep["concurrent_trials"] == 2


QUALITY = BENCH.with_name("quality.py")


def run_quality(*args: str, timeout: float = 300) -> tuple[list[dict], str]:
    out = subprocess.run(
        [sys.executable, str(QUALITY), *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()], out.stderr


def test_quality_table_sets_the_champion_and_the_defaults_beside_the_data_and_the_published_rows(tmp_path):
    lines, table = run_quality(
        "--datasets", "ring8", "--seeds", "2", "--steps", "40", "--grids", str(tmp_path)
    )  # fmt: skip
    runs = [line for line in lines if line["measurement"] == "quality_run"]
    by_variant = {v: [r for r in runs if r["variant"] == v] for v in ("real data", "baseline", "champion")}
    assert [len(v) for v in by_variant.values()] == [2, 2, 2]
    # The data scores (almost) perfectly: every mode, nearly all samples within 3 std of one.
    assert all(r["modes_covered"] == 8 and r["high_quality_fraction"] > 0.97 for r in by_variant["real data"])
    assert {r["base"]["loss"] for r in by_variant["baseline"]} == {"non_saturating"}
    assert {r["base"]["loss"] for r in by_variant["champion"]} == {"hinge"}  # ring8's champion recipe
    assert {p.name for p in tmp_path.iterdir()} == {
        f"ring8-{v}-seed{s}.png" for v in ("baseline", "champion", "real_data") for s in (0, 1)
    }
    for row in ("| real data |", "| baseline |", "| champion |", "| GAN (PacGAN, Table 1) | 6.3 |"):
        assert row in table, row


def test_quality_table_on_real_images_scores_the_test_split_as_its_floor(
    fashion_mnist_root, fashion_mnist_classifier, tmp_path
):
    """Scored by a small classifier pinned with --set metrics.extractor (a sweep's way), not the cached
    one that would take minutes to train in the session's fresh cache."""
    extractor = fashion_mnist_classifier[1]
    lines, table = run_quality(
        "--datasets", "fashion_mnist", "--data-root", str(fashion_mnist_root), "--seeds", "1",
        "--steps", "20", "--grids", str(tmp_path), "--set", f"metrics.extractor={extractor}",
    )  # fmt: skip
    runs = {r["variant"]: r for r in lines if r["measurement"] == "quality_run"}
    assert sorted(runs) == ["baseline", "champion", "real data"]
    assert {r["feature_extractor"] for r in runs.values()} == {torch.load(extractor)["meta"]["cache_id"]}
    assert runs["real data"]["classes_covered"] == 10 and runs["real data"]["class_reverse_kl"] < 0.05
    # 20 steps draw static: far from the data, which is not far from itself
    assert runs["real data"]["fid_classifier"] < 0.1 * runs["baseline"]["fid_classifier"]
    assert runs["baseline"]["base"]["lr_g"] == 2e-4 and runs["baseline"]["base"]["beta1"] == 0.5
    assert "fid_classifier" in table and (tmp_path / "fashion_mnist-champion-seed0.png").is_file()


def test_quality_table_checks_its_arguments_first(tmp_path):
    for args, message in (
        (["--datasets", "fashion_mnist"], "--data-root"),
        (["--datasets", "ring9"], "ring9"),
        (["--datasets", "ring8,grid25", "--champion", str(tmp_path / "c.yaml")], "one dataset"),
        (["--datasets", "ring8", "--set", "model.widthh=64"], "model.widthh"),
    ):
        out = subprocess.run(
            [sys.executable, str(QUALITY), *args], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
        assert not out.stdout


def test_quality_table_takes_the_champion_from_a_runs_config(tmp_path):
    """A champion's ``config.yaml`` artifact: its searched keys make the champion row, on the base's budget."""
    (tmp_path / "config.yaml").write_text(
        "data: {name: ring8}\nloss: {name: least_squares}\noptim: {lr_g: 3.0e-4, lr_d: 3.0e-4}\n"
        "train: {steps: 99999, d_steps_per_g_step: 2}\n"
    )
    lines, _ = run_quality(
        "--datasets", "ring8", "--seeds", "1", "--steps", "20", "--grids", str(tmp_path / "grids"),
        "--champion", str(tmp_path / "config.yaml"), "--set", "model.hidden_dim=24",
    )  # fmt: skip
    (champion,) = [r for r in lines if r["measurement"] == "quality_run" and r["variant"] == "champion"]
    assert champion["base"]["loss"] == "least_squares" and champion["base"]["k"] == 2
    assert champion["base"]["lr_g"] == 3e-4 and champion["steps"] == 20  # the budget stays the table's
    assert {r["base"]["hidden_dim"] for r in lines if r["measurement"] == "quality_run" and "base" in r} == {
        24
    }


DATA_PATH = BENCH.with_name("data_path.py")


def test_data_path_measures_decoding_batches_and_memory(one_thread):
    """The folder data path's bench, tiny: every size gets a decode line (decoding once is faster than
    decoding every epoch), a batches line per path, and uint8 memory a quarter of float32's."""
    out = subprocess.run(
        [sys.executable, str(DATA_PATH), "--quick", "--images", "40", "--seconds", "0.1", "--sizes", "28"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    by_kind = {
        kind: [r for r in lines if r["measurement"] == kind] for kind in ("decode", "batches", "memory")
    }
    assert by_kind["decode"][0]["speedup"] > 1 and by_kind["decode"][0]["images"] == 40
    assert {r["path"] for r in by_kind["batches"]} == {"device", "host"}
    assert all(r["step_images_per_s"] > 0 for r in by_kind["batches"])
    memory = by_kind["memory"][0]
    assert memory["float32_bytes"] == 4 * memory["uint8_bytes"] == 4 * 40 * 3 * 28 * 28


def test_lazy_penalty_bench_times_every_variant_and_gives_ratios():
    lines = bench_module("lazy_penalty").measure("dcgan28", [2], steps=2, repeats=1, batch=8)
    (line,) = lines
    assert line["measurement"] == "lazy_penalty" and line["every"] == 2
    for key in (
        "ms_per_step_every_step",
        "ms_per_step_lazy",
        "ms_per_step_no_penalty",
        "speedup",
        "floor_speedup",
    ):
        assert positive_finite(line[key]), key


def test_nets_quality_bench_runs_the_conditional_and_small_data_experiments(capsys):
    """bench/nets_quality.py at its smoke size (digits at 8 px, 2 steps): one line a run, with the
    class accuracy of the conditional run and D's train/held-out gap of the small-data runs."""
    bench = bench_module("nets_quality")
    argv = ["--quick", "--image-size", "8", "--experiments", "conditional,small", "--threads", "1"]
    assert bench.main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    runs = [(r["experiment"], r["conditional"], r["augment"]) for r in lines]
    assert runs == [
        ("conditional", False, "none"),
        ("conditional", True, "none"),
        ("small", False, "none"),
        ("small", False, "diffaug"),
        ("small", False, "ada"),
    ]
    assert 0.0 <= lines[1]["class_accuracy"] <= 1.0 and "class_accuracy" not in lines[0]
    assert all(r["train_images"] == 200 and math.isfinite(r["d_gap"]) for r in lines[2:])


CURVES = BENCH.with_name("search_curves.py")


def test_search_curves_spaces_leave_out_the_known_starts_and_set_each_method():
    curves = bench_module("search_curves")
    random = curves.space_for("random", "ring8", 3, 1500, 250, None)
    assert random.initial_points == () and random.seed == 3
    assert (random.sampler, random.scheduler, random.base.train.steps) == ("random", "none", 1500)
    early, late = (curves.space_for(m, "ring8", 0, 1500, 250, 16) for m in ("tpe_asha", "tpe_asha_late"))
    # 6 evals: the first rung after 2 evals (a third of the run) or 3 (half of it)
    assert (early.scheduler, early.grace_period, late.grace_period) == ("asha", 2, 3)
    pbt = curves.space_for("pbt", "ring8", 0, None, None, None)
    assert pbt.scheduler == "pbt" and pbt.initial_points == () and pbt.budget.num_samples == 8


def test_search_curves_expected_best_pools_the_seeds_like_the_report():
    curves = bench_module("search_curves")
    rows = [{"trials": [{"best": 0.4}, {"best": 0.2}]}, {"trials": [{"best": 0.3}, {"best": 0.1}]}]
    expected = curves.expected_best(rows, budgets=(1, 2, 4, 8))
    assert expected[1] == pytest.approx(0.25) and expected[4] == pytest.approx(0.1)
    # best of 2 of 4 drawn without replacement: 0.1 in half the pairs, 0.2 in 2 of 6, 0.3 in 1 of 6
    assert expected[2] == pytest.approx((3 * 0.1 + 2 * 0.2 + 0.3) / 6) and 8 not in expected
    assert curves.best_so_far([0.5, 0.7, 0.2, 0.3]) == [0.5, 0.5, 0.2, 0.2]


def test_search_curves_draws_each_methods_best_so_far_and_scores_the_champions(ray_session, tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    args = ["--methods", "random", "tpe_asha", "--seeds", "0", "--steps", "100", "--eval-every", "50"]
    subprocess.run(
        [sys.executable, str(CURVES), *args, "--num-samples", "2", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=env,
    )
    written = json.loads((tmp_path / "search_curves.json").read_text())
    sweeps, summary = written["sweeps"], written["summary"]
    assert [s["method"] for s in sweeps] == ["random", "tpe_asha"] and (
        tmp_path / "search_curves.png"
    ).stat().st_size
    for s in sweeps:
        ends = [t["end_s"] for t in s["trials"]]
        assert len(ends) == 2 and ends == sorted(ends) and 0 < ends[-1] <= s["wall_s"], s
        assert all(0 <= t["best"] <= 1 and t["params"]["loss.name"] for t in s["trials"])
        assert 0 <= s["champion"]["mode_distance"] <= 1 and s["champion"]["modes"] <= 8
    for line in summary:
        assert (
            set(line["expected_best"]) == {"1", "2"}
            and line["expected_best"]["2"] <= line["expected_best"]["1"]
        )
