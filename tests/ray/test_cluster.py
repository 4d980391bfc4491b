"""What the cluster can hold: autoscaler ceilings from the launcher config, sweep concurrency from them,
and runs that could never be placed refused before anything starts (on a real local Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_ray.config import validate_config
from gan_ray.ray.cluster import autoscaler_max_resources, check_fits, cluster_capacity
from gan_ray.ray.strategy import concurrency_note, max_concurrent
from gan_ray.search.load import load_search_space, parse_search_space

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "search_spaces"

CPU_SPACE = """\
name: t_fits
base:
  data: {name: ring8}
  train: {steps: 20, eval_every: 10}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
budget: {num_samples: 2, gpus_per_worker: 0.5}
"""


def test_shipped_cluster_yaml_counts_every_gpu_worker_the_autoscaler_may_add():
    # cluster.yaml as `ray up` leaves it on the head node: up to 8 GPU workers of 4 CPUs and 1 GPU,
    # a head with no CPUs for trials and the trial-driver resource.
    most = autoscaler_max_resources(ROOT / "cluster.yaml")
    assert most["GPU"] == 8
    assert most["CPU"] == 32
    assert most["train_driver"] == 100


def test_global_max_workers_caps_each_node_type(tmp_path):
    config = tmp_path / "bootstrap.yaml"
    config.write_text(
        "max_workers: 3\nhead_node_type: head\navailable_node_types:\n"
        "  head: {resources: {CPU: 2}, max_workers: 0, node_config: {}}\n"
        "  gpu: {resources: {CPU: 8, GPU: 4}, min_workers: 0, max_workers: 10, node_config: {}}\n"
    )
    assert autoscaler_max_resources(config) == {"CPU": 2 + 3 * 8, "GPU": 3 * 4}
    assert autoscaler_max_resources(tmp_path / "absent.yaml") == {}


def test_several_worker_types_share_the_global_max_workers(tmp_path):
    # A spot and an on-demand type of 8 each under a cluster-wide 8: 8 GPU nodes at most, not 16. For
    # each resource the richest types fill the budget first (GPU: the GPU nodes; CPU: the 16-CPU ones).
    config = tmp_path / "bootstrap.yaml"
    config.write_text(
        "max_workers: 8\nhead_node_type: head\navailable_node_types:\n"
        "  head: {resources: {CPU: 0, train_driver: 100}, max_workers: 0, node_config: {}}\n"
        "  spot: {resources: {CPU: 4, GPU: 1}, min_workers: 0, max_workers: 8, node_config: {}}\n"
        "  on_demand: {resources: {CPU: 4, GPU: 1}, min_workers: 0, max_workers: 8, node_config: {}}\n"
        "  cpu: {resources: {CPU: 16}, min_workers: 0, max_workers: 2, node_config: {}}\n"
    )
    assert autoscaler_max_resources(config) == {"CPU": 2 * 16 + 6 * 4, "GPU": 8, "train_driver": 100}


@pytest.mark.parametrize(("name", "expected"), [("mnist", 32), ("fashion_mnist", 32), ("cifar10", 8)])
def test_gpu_sweeps_size_concurrency_for_the_autoscaled_cluster(name, expected):
    # At submission an autoscaling cluster often has no GPU yet; what it may grow to decides how many
    # trials Tune keeps in flight (4 packed trials per GPU for the 28x28 sets, 1 for CIFAR-10).
    space = load_search_space(SPACES / f"{name}.yaml")
    now = {"CPU": 0.0, "train_driver": 100.0}
    assert max_concurrent(space, now) == 1
    ceiling = autoscaler_max_resources(ROOT / "cluster.yaml")
    assert max_concurrent(space, {**now, **ceiling}) == expected
    note = concurrency_note(space, {**now, **ceiling}, expected)
    assert note.startswith(f"up to {expected} trial(s) at once (8 GPUs")
    assert f"{space.budget.gpus_per_worker:g} per worker" in note


def test_check_fits_names_what_is_missing():
    gpu = validate_config({"scaling": {"num_workers": 2, "use_gpu": True, "gpus_per_worker": 1}}).scaling
    check_fits(gpu, {"CPU": 4.0, "GPU": 2.0}, "run 'x'")
    with pytest.raises(RuntimeError, match=r"run 'x' needs 2 GPU .* has 1 and no autoscaler"):
        check_fits(gpu, {"CPU": 4.0, "GPU": 1.0}, "run 'x'")
    cpu = validate_config({"scaling": {"num_workers": 3, "cpus_per_worker": 1}}).scaling
    with pytest.raises(RuntimeError, match=r"needs 3 CPU"):
        check_fits(cpu, {"CPU": 2.0}, "run 'y'")


@pytest.mark.slow
def test_on_real_ray_capacity_and_refusals(ray_session, store, tmp_path, capsys):
    import gan_ray
    from gan_ray.cli import main
    from gan_ray.tracking.store import make_client

    # The session's Ray: 2 CPUs, no GPU, no launcher config; a launcher config raises the ceiling.
    plain = cluster_capacity(tmp_path / "absent.yaml")
    assert plain["CPU"] == 2 and plain.get("GPU", 0) == 0
    scaled = cluster_capacity(ROOT / "cluster.yaml")
    assert scaled["GPU"] == 8 and scaled["CPU"] == 32

    # A GPU budget on a cluster that can never have a GPU fails at once, before a trial or a run exists.
    space = parse_search_space(CPU_SPACE)
    with pytest.raises(RuntimeError, match="needs 0.5 GPU"):
        gan_ray.sweep(space, tracking_uri=store, storage_path=str(tmp_path / "ray"))
    cfg = validate_config({"name": "t_gpu_run", "scaling": {"use_gpu": True}, "train": {"steps": 10}})
    with pytest.raises(RuntimeError, match="needs 1 GPU"):
        gan_ray.train(cfg, backend="ray", tracking_uri=store)
    # The command line says it in one line and exits 2, as for any other bad input.
    space_file = tmp_path / "t_fits.yaml"
    space_file.write_text(CPU_SPACE)
    code = main(["sweep", str(space_file), "--tracking-uri", store, "--storage-path", str(tmp_path / "ray")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("gan-ray: error: search space 't_fits' needs 0.5 GPU"), err
    assert not any("Traceback" in line for line in err)
    client = make_client(store)
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments]) if experiments else []
    assert not [r for r in runs if r.info.run_name in ("t_fits", "t_gpu_run")], runs
    assert not (tmp_path / "ray").exists()
