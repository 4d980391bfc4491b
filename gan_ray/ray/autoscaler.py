"""How the cluster launcher's autoscaler picks a GPU node type: spot first, and away from a type EC2
has just refused, so a spot shortage falls back to another instance type, then to on-demand.

Ray's autoscaler (v1) loads this scorer by name from ``$RAY_AUTOSCALER_UTILIZATION_SCORER`` in the head's
``ray start`` environment (``cluster.yaml`` sets it); it runs inside the autoscaler's process on the head.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer

from gan_ray.ray.cluster import BOOTSTRAP_CONFIG

#: What cluster.yaml exports before ``ray start --head``, for Ray to import.
SCORER = f"{__name__}.available_then_priority"


def available_then_priority(
    node_resources: dict[str, float],
    resources: list[dict[str, float]],
    node_type: str,
    *,
    node_availability_summary: Any,
) -> tuple | None:
    """Ray's own score for ``node_type`` (None: the demand does not fit it), then whether its latest
    launch went through, then its ``priority`` in the launcher config.

    Ray's default scorer ignores failed launches: among equal node types it picks by name, and keeps
    asking EC2 for the type that has no capacity. Its newer autoscaler (v2) has ``priority`` but lowers
    a type only after an allocation *timeout*, not after EC2's immediate InsufficientInstanceCapacity.
    A refused type counts as unavailable for 30 minutes (``AUTOSCALER_NODE_AVAILABILITY_MAX_STALENESS_S``),
    then is tried again.
    """
    score = _default_utilization_scorer(
        node_resources, resources, node_type, node_availability_summary=node_availability_summary
    )
    if score is None:
        return None
    record = node_availability_summary.node_availabilities.get(node_type)
    available = record is None or record.is_available
    return (*score, available, node_priorities().get(node_type, 0))


def node_priorities(path: str | Path = BOOTSTRAP_CONFIG) -> dict[str, int]:
    """``{node type: priority}`` from the launcher config (``ray up`` leaves it on the head)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return {}
    return _read_priorities(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_priorities(path: Path, mtime_ns: int) -> dict[str, int]:
    config = yaml.safe_load(path.read_text()) or {}
    types = config.get("available_node_types") or {}
    return {name: int(node.get("priority", 0)) for name, node in types.items()}
