"""cluster.yaml: the checks `ray up` runs before it touches AWS, and the pieces gan_ray relies on
(GPU autoscaling, trial drivers pinned to the head, MLflow on the head, installs matching pyproject.toml)."""

from __future__ import annotations

import copy
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

# `ray up` = commands.create_or_update_cluster -> _bootstrap_config -> prepare_config, (EC2 instance-type
# lookup), validate_config, then the AWS bootstrap (credentials, network): the first and third run here.
from ray.autoscaler._private.util import prepare_config, validate_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
PINNED = ("ray", "mlflow", "optuna", "torch", "torchvision")
COMMAND_LISTS = (
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def cfg(raw: dict[str, Any]) -> dict[str, Any]:
    """The config as `ray up` sees it after merging with Ray's AWS defaults."""
    return prepare_config(copy.deepcopy(raw))


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _only(commands: list[str], needle: str) -> str:
    found = [c for c in commands if needle in c]
    assert len(found) == 1, f"expected one command containing {needle!r}, found {len(found)}: {found}"
    return found[0]


def _exports(command: str) -> dict[str, str]:
    """Variables set by `export` in a command line (set before `ray start`, they reach every Ray process)."""
    out: dict[str, str] = {}
    for part in command.split(";"):
        words = shlex.split(part)
        if words and words[0] == "export":
            out.update(w.split("=", 1) for w in words[1:])
    return out


def _options(words: list[str]) -> dict[str, str | bool]:
    """`--name=value` and `--name value` as {name: value}; bare flags as {name: True}."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if eq:
                out[name] = value
            elif i + 1 < len(words) and not words[i + 1].startswith("-"):
                out[name] = words[i + 1]
                i += 1
            else:
                out[name] = True
        i += 1
    return out


def _after(command: str, program: list[str]) -> list[str]:
    """The words after `program` (e.g. ["ray", "start"]) in the `;`-separated part that runs it."""
    for part in command.split(";"):
        words = shlex.split(part)
        for i in range(len(words) - len(program) + 1):
            if words[i : i + len(program)] == program:
                return words[i + len(program) :]
    raise AssertionError(f"{' '.join(program)!r} not found in {command!r}")


def _install(cfg: dict[str, Any]) -> tuple[dict[str, Requirement], list[str]]:
    """The requirements and editable paths of the setup command that installs the pinned stack."""
    command = _only(cfg["setup_commands"], "ray[")
    words = _after(command, ["pip", "install"])
    requirements: dict[str, Requirement] = {}
    editables: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-e", "--editable"):
            editables.append(words[i + 1])
            i += 1
        elif word.startswith("-"):
            i += 1 if word in ("--python", "-p", "--index-url", "--extra-index-url") else 0
        else:
            req = Requirement(word)
            requirements[canonicalize_name(req.name)] = req
        i += 1
    return requirements, editables


def _project_requirements(pyproject: dict[str, Any]) -> dict[str, Requirement]:
    reqs = (Requirement(d) for d in pyproject["project"]["dependencies"])
    return {canonicalize_name(r.name): r for r in reqs}


def _head(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["available_node_types"][cfg["head_node_type"]]


def _gpu_worker_types(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: node
        for name, node in cfg["available_node_types"].items()
        if name != cfg["head_node_type"] and node["resources"].get("GPU", 0) >= 1
    }


# --- what `ray up` checks ---------------------------------------------------------------------------


def test_passes_the_checks_ray_up_runs_before_touching_aws(raw: dict[str, Any]) -> None:
    validate_config(prepare_config(copy.deepcopy(raw)))


def test_every_node_type_declares_its_resources(raw: dict[str, Any]) -> None:
    # Otherwise validation depends on `ray up`'s EC2 instance-type lookup, which may fail (it only warns).
    for name, node in raw["available_node_types"].items():
        assert node.get("resources"), f"node type {name!r} has no explicit resources"


def _typo_in_worker(cfg: dict[str, Any]) -> None:
    node = next(n for name, n in cfg["available_node_types"].items() if name != cfg["head_node_type"])
    node["min_worker"] = node.pop("min_workers")


def _typo_at_top_level(cfg: dict[str, Any]) -> None:
    cfg["setup_command"] = cfg.pop("setup_commands")


def _fractional_gpu(cfg: dict[str, Any]) -> None:
    for node in cfg["available_node_types"].values():
        node["resources"]["GPU"] = 0.5


def _unknown_head_type(cfg: dict[str, Any]) -> None:
    cfg["head_node_type"] = "no_such_type"


@pytest.mark.parametrize(
    ("break_it", "error", "mentions"),
    [
        (_typo_in_worker, jsonschema.ValidationError, "min_worker"),
        (_typo_at_top_level, jsonschema.ValidationError, "setup_command"),
        (_fractional_gpu, jsonschema.ValidationError, "0.5"),
        (_unknown_head_type, ValueError, "head_node_type"),
    ],
    ids=["min_worker-typo", "top-level-typo", "fractional-resource", "unknown-head-type"],
)
def test_a_broken_copy_is_rejected_by_the_same_checks(
    raw: dict[str, Any], break_it: Any, error: type[Exception], mentions: str
) -> None:
    broken = copy.deepcopy(raw)
    break_it(broken)
    with pytest.raises(error, match=mentions):
        validate_config(prepare_config(broken))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash(raw: dict[str, Any]) -> None:
    for key in COMMAND_LISTS:
        for command in raw.get(key) or []:
            result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
            assert result.returncode == 0, f"{key}: {command!r}: {result.stderr}"


# --- the pieces gan_ray relies on -------------------------------------------------------------------


def test_an_autoscaling_gpu_worker_type_starts_from_zero(cfg: dict[str, Any]) -> None:
    workers = _gpu_worker_types(cfg)
    assert workers, "no worker type advertises a GPU"
    for name, node in workers.items():
        assert node["min_workers"] == 0, f"{name}: GPU nodes should only exist while trials need them"
        assert 1 <= node["max_workers"] <= cfg["max_workers"], name
        assert node["node_config"]["InstanceType"].startswith(("g", "p")), (
            f"{name}: not a GPU instance family"
        )


def test_head_runs_drivers_only(cfg: dict[str, Any]) -> None:
    resources = _head(cfg)["resources"]
    assert resources.get("CPU") == 0, "a CPU on the head would let Train workers or tasks land there"
    assert resources.get("GPU", 0) == 0
    assert resources.get("train_driver", 0) >= 1, "trial drivers reserve train_driver: it must be on the head"
    assert _head(cfg)["max_workers"] == 0


def test_ray_start_head_advertises_the_head_resources(cfg: dict[str, Any]) -> None:
    start = _options(_after(_only(cfg["head_start_ray_commands"], "ray start"), ["ray", "start"]))
    assert start.get("head") is True
    # Without the autoscaling config the head never launches workers.
    assert start.get("autoscaling-config") == "~/ray_bootstrap_config.yaml"
    declared = _head(cfg)["resources"]
    assert json.loads(str(start["resources"])) == {
        k: v for k, v in declared.items() if k not in ("CPU", "GPU")
    }
    assert int(str(start["num-cpus"])) == declared["CPU"]


def _mlflow_server(cfg: dict[str, Any]) -> tuple[str, dict[str, str | bool]]:
    command = _only(cfg["head_start_ray_commands"], "mlflow server")
    return command, _options(_after(command, ["mlflow", "server"]))


def test_head_starts_an_mlflow_server_in_the_background(cfg: dict[str, Any]) -> None:
    command, server = _mlflow_server(cfg)
    # The store tracking_db.sh set up (PostgreSQL on the head, or a managed database), read where it wrote it.
    assert server["backend-store-uri"] == "$(cat $HOME/mlflow/tracking_db)"
    setup = cfg["head_setup_commands"]
    assert setup.index(_only(setup, "tracking_db.sh")) < setup.index(_only(setup, "head_backup restore"))
    # The script it runs is the repository's, mounted at ~/gan_ray (a moved script fails on the head only).
    script = next(w for w in _only(setup, "tracking_db.sh").split() if w.endswith("tracking_db.sh"))
    assert script.startswith("~/gan_ray/") and (ROOT / script.removeprefix("~/gan_ray/")).is_file()
    # Sized for the autoscaler's ceiling: the default pool (5 + 10 per worker) ran out at 256 clients.
    assert int(str(server["workers"])) >= 4
    assert "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=10 MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=20" in command
    assert urlparse(str(server["artifacts-destination"])).scheme == "s3"
    assert server["host"] == "0.0.0.0", "workers reach it over the private network"
    assert "nohup" in command and command.rstrip(" )").endswith("&"), "ray start must not wait for it"
    # Restarts (`ray up` again) keep a running server rather than start a second one on the same port.
    assert f"127.0.0.1:{server['port']}/health" in command
    head_start = cfg["head_start_ray_commands"]
    assert head_start.index(command) < head_start.index(_only(head_start, "ray start"))


def test_every_node_points_ray_processes_at_mlflow_and_s3(cfg: dict[str, Any]) -> None:
    _, server = _mlflow_server(cfg)
    bucket = urlparse(str(server["artifacts-destination"])).netloc
    expected_uri = {
        "head_start_ray_commands": f"http://127.0.0.1:{server['port']}",
        "worker_start_ray_commands": f"http://$RAY_HEAD_IP:{server['port']}",
    }
    for key, uri in expected_uri.items():
        env = _exports(_only(cfg[key], "ray start"))  # same command line, so the raylet inherits them
        assert env.get("MLFLOW_TRACKING_URI") == uri, key
        storage = urlparse(env.get("GAN_RAY_STORAGE", ""))
        assert (storage.scheme, storage.netloc) == ("s3", bucket), (
            f"{key}: Train storage must be the shared bucket"
        )


def _expanded_on_a_node(command: str, name: str, home: str = "/home/ubuntu") -> str:
    """What ``name`` is once bash has run the ``export`` part of ``command`` on a node."""
    exports = next(part for part in command.split(";") if part.split()[:1] == ["export"])
    script = f'HOME={home}; {exports}; printf %s "${name}"'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_head_keeps_optuna_studies_beside_mlflows_database(cfg: dict[str, Any]) -> None:
    # `ray job submit` runs each job in a fresh folder: a relative ./optuna.db would be a new, empty
    # storage for every job, and `--resume` would find nothing. The head exports an absolute one.
    from sqlalchemy.engine import make_url

    head_start = _only(cfg["head_start_ray_commands"], "ray start")
    storage = make_url(_expanded_on_a_node(head_start, "GAN_RAY_OPTUNA_STORAGE"))
    assert storage.get_backend_name() == "sqlite" and storage.database.startswith("/home/ubuntu/"), storage
    _, server = _mlflow_server(cfg)
    uri_file = str(server["backend-store-uri"]).removeprefix("$(cat ").removesuffix(")")
    assert Path(storage.database).parent == Path(uri_file.replace("$HOME", "/home/ubuntu")).parent
    # Workers run no sweep driver; a path there would name a file on their own disk.
    assert "GAN_RAY_OPTUNA_STORAGE" not in _exports(_only(cfg["worker_start_ray_commands"], "ray start"))


def test_setup_installs_the_project_and_ray_default(cfg: dict[str, Any], pyproject: dict[str, Any]) -> None:
    requirements, editables = _install(cfg)
    # ray[default]: its state API lets Train release the workers of trials that ASHA stops early.
    assert {"default", "tune", "train"} <= requirements["ray"].extras
    assert requirements["ray"].extras == _project_requirements(pyproject)["ray"].extras
    # The project comes from the repo copy mounted on every node, in the same resolve as the pins.
    mounted = {remote.rstrip("/") for remote, local in cfg["file_mounts"].items() if local.rstrip("/") == "."}
    assert editables and set(editables) <= mounted
    assert "gan-ray" in pyproject["project"]["scripts"]


@pytest.mark.parametrize("name", PINNED)
def test_cluster_pins_fit_pyproject(cfg: dict[str, Any], pyproject: dict[str, Any], name: str) -> None:
    pin = _install(cfg)[0][name].specifier
    assert len(pin) == 1 and next(iter(pin)).operator == "==", f"{name}: pin one exact version, got {pin}"
    version = Version(next(iter(pin)).version)
    allowed = _project_requirements(pyproject)[name].specifier
    assert allowed.contains(version, prereleases=True), f"{name}=={version} is outside pyproject's {allowed}"


def test_ray_pin_is_the_series_pyproject_pins(cfg: dict[str, Any], pyproject: dict[str, Any]) -> None:
    allowed = _project_requirements(pyproject)["ray"].specifier
    assert [s.operator for s in allowed] == ["=="], f"pyproject should pin one ray series, has {allowed}"
    series = Version(next(iter(allowed)).version.removesuffix(".*")).release[:2]
    pinned = Version(next(iter(_install(cfg)[0]["ray"].specifier)).version)
    assert pinned.release[:2] == series


def test_cluster_python_satisfies_requires_python(cfg: dict[str, Any], pyproject: dict[str, Any]) -> None:
    venv = _options(_after(_only(cfg["setup_commands"], " venv "), ["venv"]))
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert requires.contains(Version(str(venv["python"])))


# --- spot GPUs, and a fallback when EC2 has no capacity ---------------------------------------------


def _market(node: dict[str, Any]) -> str:
    return node["node_config"].get("InstanceMarketOptions", {}).get("MarketType", "on-demand")


def test_spot_gpu_workers_on_two_instance_types_before_on_demand(cfg: dict[str, Any]) -> None:
    gpus = _gpu_worker_types(cfg)
    spot = {name: node for name, node in gpus.items() if _market(node) == "spot"}
    on_demand = {name: node for name, node in gpus.items() if _market(node) == "on-demand"}
    assert spot and on_demand, {name: _market(node) for name, node in gpus.items()}
    assert len({node["node_config"]["InstanceType"] for node in spot.values()}) >= 2
    # One size for all: which type is launched is decided by capacity and priority, never by fit, and
    # a sweep's trials per GPU are the same on any of them.
    assert len({json.dumps(node["resources"], sort_keys=True) for node in gpus.values()}) == 1
    assert min(n["priority"] for n in spot.values()) > max(n["priority"] for n in on_demand.values())


def _launch_order(cfg: dict[str, Any], scorer_path: str | None, refused: list[str]) -> str:
    """The node type Ray's v1 autoscaler launches for one trial's GPU share, with the scorer that the
    environment names (Ray's own when None) and EC2 having refused ``refused`` just now."""
    import functools
    import os
    import time

    from ray.autoscaler._private.node_provider_availability_tracker import (
        NodeProviderAvailabilityTracker,
    )
    from ray.autoscaler._private.resource_demand_scheduler import ResourceDemandScheduler, get_nodes_for
    from ray.autoscaler.node_launch_exception import NodeLaunchException

    key = "RAY_AUTOSCALER_UTILIZATION_SCORER"
    before = os.environ.pop(key, None)
    if scorer_path:
        os.environ[key] = scorer_path
    try:  # the scheduler loads its scorer by name from the environment, as on the head
        scheduler = ResourceDemandScheduler(
            None, cfg["available_node_types"], cfg["max_workers"], cfg["head_node_type"], 1.0
        )
    finally:
        os.environ.pop(key, None)
        if before is not None:
            os.environ[key] = before
    tracker = NodeProviderAvailabilityTracker()
    for node_type in refused:
        error = NodeLaunchException("InsufficientInstanceCapacity", "no capacity", None)
        tracker.update_node_availability(node_type, int(time.time()), error)
    scorer = functools.partial(scheduler.utilization_scorer, node_availability_summary=tracker.summary())
    demand = [{"CPU": 1.0, "GPU": 0.25}]
    added, _ = get_nodes_for(scheduler.node_types, {}, cfg["head_node_type"], 1, demand, scorer)
    (node_type,) = added
    return node_type


def test_the_head_autoscaler_falls_back_from_a_type_ec2_refused(
    cfg: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's own scheduler and availability tracker, on cluster.yaml's node types, with the scorer
    cluster.yaml names: spot by priority, the next type when EC2 refuses one, on-demand last."""
    env = _exports(_only(cfg["head_start_ray_commands"], "ray start"))
    assert env["RAY_enable_autoscaler_v2"] == "0", "the v2 autoscaler never calls a utilization scorer"
    scorer = env["RAY_AUTOSCALER_UTILIZATION_SCORER"]
    # The scorer reads the priorities from the launcher config that `ray up` leaves in the head's home.
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(cfg))
    by_priority = sorted(_gpu_worker_types(cfg), key=lambda n: -cfg["available_node_types"][n]["priority"])
    for i, expected in enumerate(by_priority):
        assert _launch_order(cfg, scorer, refused=by_priority[:i]) == expected
    # All refused: the autoscaler still asks (for the first by priority) rather than give up.
    assert _launch_order(cfg, scorer, refused=by_priority) == by_priority[0]
    # Ray's own scorer picks by node-type name and never moves off a refused type: why cluster.yaml sets one.
    default = _launch_order(cfg, None, refused=[])
    assert _launch_order(cfg, None, refused=[default]) == default
