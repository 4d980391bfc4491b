"""The Ray cluster: connecting to it (the one way gan_ray starts Ray), what it can hold now and, with
an autoscaler, at its largest, and whether its nodes can all reach a storage path.

Sweeps size their concurrency from it, and refuse a trial that no node could ever hold (its Train
workers would wait for resources forever) before any trial starts.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from gan_ray import settings
from gan_ray.config import ScalingConfig
from gan_ray.errors import ClusterError

#: The custom resource trial drivers take (0.01 each) instead of a CPU: on a 2-CPU machine a driver
#: holding a CPU would leave too few for its own Train workers, and the sweep would hang.
DRIVER_RESOURCE = "train_driver"
DRIVER_SHARE = 0.01


def connect(log_to_driver: bool = True) -> None:
    """Connect to the cluster at ``$RAY_ADDRESS``, or start a local Ray offering the trial-driver resource.

    Once per process; a Ray already initialised (by a test, a notebook) is used as it is. Without
    ``log_to_driver`` the workers' output stays in Ray's log files (:func:`logs_dir`).
    """
    import ray

    if ray.is_initialized():
        return
    if settings.ray_address():
        ray.init(log_to_driver=log_to_driver)  # reads $RAY_ADDRESS; a submitted job must not pass num_cpus
    else:
        ray.init(resources={DRIVER_RESOURCE: 100}, log_to_driver=log_to_driver)


def logs_dir() -> str | None:
    """Where Ray writes this node's logs (the workers' output among them), or None if it cannot say."""
    try:
        from ray._private.worker import _global_node  # no public API names the session's folder

        return _global_node.get_logs_dir_path() if _global_node is not None else None
    except Exception:  # noqa: BLE001 - a private API: without it, the line that names the folder goes
        return None


def require_driver_resource() -> None:
    """Refuse a cluster without the trial-driver resource (every sweep trial's driver asks for it)."""
    import ray

    if ray.cluster_resources().get(DRIVER_RESOURCE, 0) <= 0:
        raise ClusterError(
            f"the Ray cluster offers no {DRIVER_RESOURCE!r} resource for trial drivers; start the head with "
            f"--resources='{{\"{DRIVER_RESOURCE}\": 100}}' (cluster.yaml does)"
        )


def check_storage(storage_path: str) -> None:
    """Refuse a local storage path when workers may run on other nodes: they could not write to it."""
    import ray

    if "://" in storage_path:
        return
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and not settings.shared_filesystem():
        raise ClusterError(
            f"storage path {storage_path!r} is local to this node, but the cluster has {len(alive)} nodes; "
            "set GAN_RAY_STORAGE (or --storage-path) to s3://BUCKET/PREFIX or a shared filesystem mounted "
            "on every node (then also set GAN_RAY_SHARED_FS=1)"
        )


# Where Ray's cluster launcher (`ray up`) leaves the autoscaler's config on the head node, where a
# submitted job runs; Ray Tune looks for the same file to tell an autoscaling cluster.
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def autoscaler_max_resources(path: str | Path = BOOTSTRAP_CONFIG) -> dict[str, float]:
    """The resources of an autoscaling cluster at its largest, from its launcher config; {} if none.

    The head counts once; worker types count with their ``max_workers``, and all of them together with
    no more nodes than the cluster-wide ``max_workers`` (for each resource, the node types richest in it
    first): a sweep must size its concurrency for the GPU workers the autoscaler will add, not for the
    none it may have when the sweep starts, nor for a spot and an on-demand type both at their maximum.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        return {}
    config = yaml.safe_load(path.read_text()) or {}
    head = config.get("head_node_type")
    types = config.get("available_node_types") or {}
    out = {k: float(v) for k, v in ((types.get(head) or {}).get("resources") or {}).items()}
    workers = [
        (n.get("resources") or {}, int(n.get("max_workers", 0))) for k, n in types.items() if k != head
    ]
    keys = {key for resources, _ in workers for key in resources}
    for key in keys:
        left = config.get("max_workers")
        for resources, count in sorted(workers, key=lambda w: -float(w[0].get(key, 0))):
            taken = count if left is None else min(count, int(left))
            out[key] = out.get(key, 0.0) + float(resources.get(key, 0)) * taken
            left = None if left is None else left - taken
    return out


def cluster_capacity(bootstrap_config: str | Path = BOOTSTRAP_CONFIG) -> dict[str, float]:
    """The running cluster's resources, raised to what its autoscaler may add where it has one."""
    import ray

    capacity = dict(ray.cluster_resources())
    ceilings = [autoscaler_max_resources(bootstrap_config)]
    try:  # autoscalers that report their config to the GCS (KubeRay); Ray Train V2 reads the same
        from ray._private.state import state

        ceilings.append(dict(state.get_max_resources_from_cluster_config() or {}))
    except Exception:  # noqa: BLE001 - a private API: without it, the running resources are the answer
        pass
    for ceiling in ceilings:
        for key, amount in ceiling.items():
            capacity[key] = max(capacity.get(key, 0.0), float(amount))
    return capacity


def run_needs(scaling: ScalingConfig) -> dict[str, float]:
    """What one run's workers take together: CPUs, and GPUs where the run uses them."""
    need = {"CPU": scaling.cpus_per_worker * scaling.num_workers}
    if scaling.use_gpu:
        need["GPU"] = scaling.gpus_per_worker * scaling.num_workers
    return need


def check_fits(scaling: ScalingConfig, capacity: dict[str, float], what: str) -> None:
    """Raise :class:`ClusterError` if ``capacity`` can never hold one run's workers as ``scaling`` asks."""
    workers = scaling.num_workers
    for key, amount in run_needs(scaling).items():
        have = capacity.get(key, 0.0)
        if amount > have + 1e-9:
            hint = (
                "train on CPUs (search spaces: budget.gpus_per_worker: 0; train: no --gpu)"
                if key == "GPU"
                else "ask for fewer workers or CPUs per worker"
            )
            raise ClusterError(
                f"{what} needs {amount:g} {key} ({workers} worker(s) x {amount / workers:g}), but the Ray "
                f"cluster has {have:g} and no autoscaler that could add more; {hint}"
            )
