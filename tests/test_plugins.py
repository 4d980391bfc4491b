"""Components a user plugs in without editing gan_ray: by import path, or by the entry point of a package
they installed. Resolved in every process (Tune trials, Ray Train workers, a fresh Python), and refused
in one line each, before any trial starts, when they break their contracts.

The plug-ins are docs/examples/plugins.py (the Extending page's example) and the same module
pip-installed as a package with entry points (tests/plugin_package.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gan_ray
from gan_ray.config import validate_config
from gan_ray.data.catalog import DATASETS
from gan_ray.errors import PluginError
from gan_ray.losses import LOSSES, get_loss
from gan_ray.models import MODELS, ModelSpec
from gan_ray.noise import NOISE
from gan_ray.penalties import PENALTIES
from gan_ray.registry import Registry

BY_PATH = {
    "data": "plugins:RING3",
    "model": "plugins:FLAT_MLP",
    "noise": "plugins:laplace",
    "loss": "plugins:SoftHinge",
    "penalty": "plugins:logit_decay",
}
BY_ENTRY_POINT = {
    "data": "ring3",
    "model": "flat_mlp",
    "noise": "laplace",
    "loss": "soft_hinge",
    "penalty": "logit_decay",
}


def plugin_config(names: dict[str, str], **train) -> dict:
    return {
        "name": "plugged",
        "data": {"name": names["data"]},
        "model": {"name": names["model"], "params": {"width": 32}},
        "noise": {"distribution": names["noise"]},
        "loss": {"name": names["loss"], "params": {"margin": 0.5}},
        "penalty": {"name": names["penalty"]},
        "train": {"steps": 60, "eval_every": 30, "batch_size": 64, "eval_samples": 500, **train},
    }


@pytest.mark.parametrize("names", [BY_PATH, BY_ENTRY_POINT], ids=["import_path", "entry_point"])
def test_a_plugged_config_resolves_every_component_and_trains(plugin_paths, names, tmp_path, one_thread):
    cfg = validate_config(plugin_config(names, seed=1) | {"output_dir": str(tmp_path)})
    assert cfg.data.info.num_modes == 3 and cfg.noise_dim == 16  # the spec's default noise dim
    assert get_loss(cfg.loss.name, **cfg.loss.params).margin == 0.5
    assert cfg.effective_penalty.weight == 0.01  # the plug-in's default_weight
    result = gan_ray.train(cfg, tracking=False, verbose=False)
    assert result.status in ("completed", "collapsed") and len(result.history) == 2
    assert {"modes_covered", "mode_distance"} <= set(result.metrics)  # the mixture's metrics, on its modes


def test_built_ins_win_then_import_paths_then_entry_points(plugin_paths):
    import plugins

    assert NOISE.resolve("normal").__name__ == "normal"
    assert NOISE.resolve("plugins:laplace") is plugins.laplace
    from_entry_point = NOISE.resolve("laplace")  # the installed package's own copy of the module
    assert from_entry_point.__module__ == "my_gan_plugins"
    assert isinstance(MODELS.resolve("flat_mlp"), ModelSpec) and DATASETS.resolve("ring3").name == "ring3"
    assert LOSSES.resolve("soft_hinge").name == "soft_hinge"
    assert PENALTIES.resolve("logit_decay").default_weight == 0.01
    # A built-in of the same name as an entry point is the built-in: nothing installed can shadow it.
    shadow = Registry("noise distribution", "gan_ray.noise", {"laplace": "built-in"})
    assert shadow.resolve("laplace") == "built-in"


@pytest.mark.parametrize(
    ("section", "bad", "expected"),
    [
        (
            "loss",
            {"name": "adversarial"},
            ["unknown loss 'adversarial'", "'hinge'", "package.module:attr", "gan_ray.losses"],
        ),
        (
            "noise",
            {"distribution": "gauss"},
            ["unknown noise distribution 'gauss'", "'normal'", "gan_ray.noise"],
        ),
        ("data", {"name": "cifar100"}, ["unknown dataset 'cifar100'", "'ring8'", "gan_ray.datasets"]),
        ("model", {"name": "resnet"}, ["unknown model 'resnet'", "'dcgan'", "gan_ray.models"]),
        ("penalty", {"name": "r3"}, ["unknown penalty 'r3'", "'r1_r2'", "gan_ray.penalties"]),
        (
            "metrics",
            {"features": "clip"},
            ["unknown feature extractor 'clip'", "'inception'", "gan_ray.features"],
        ),
    ],
)
def test_an_unknown_name_lists_the_built_ins_and_how_to_plug_one_in(section, bad, expected):
    with pytest.raises(ValueError) as err:
        validate_config({"data": {"name": "digits"}, section: bad} if section != "data" else {section: bad})
    message = str(err.value)
    assert "\n" not in message and all(part in message for part in expected), message


BAD = [
    ("model", "no_such_module:build", "module 'no_such_module' does not import (ModuleNotFoundError"),
    ("model", "bad_plugins:missing", "'bad_plugins' has no attribute 'missing'"),
    (
        "model",
        "bad_plugins:two_arguments",
        "builder two_arguments(sample_shape, noise_dim) has the wrong signature",
    ),
    ("model", "bad_plugins:d_without_pac", "D has no int attribute 'pac'"),
    ("model", "bad_plugins:d_pooling_batches", "pools real with fake"),
    ("model", "bad_plugins:g_of_wrong_shape", "G(z) with z of shape (4, 4) returned (4, 3); expected (4, 2)"),
    ("loss", "bad_plugins:NOT_A_LOSS", "not a subclass of gan_ray.losses.GanLoss"),
]


@pytest.mark.parametrize(("section", "name", "expected"), BAD, ids=[b[1].split(":")[1] for b in BAD])
def test_a_bad_plugin_is_one_line_before_any_trial_starts(section, name, expected, tmp_path, capsys):
    """Through the CLI, as a user meets it: exit code 2, one line, and no trial (the sweep's folders and
    stores are never made)."""
    from gan_ray.cli import main

    model = name if section == "model" else "plugins:FLAT_MLP"
    loss = name if section == "loss" else "hinge"
    space = tmp_path / "bad.yaml"
    space.write_text(
        textwrap.dedent(f"""\
        name: t_bad_plugin
        base:
          data: {{name: ring8}}
          model: {{name: "{model}"}}
          noise: {{dim: 4}}
          loss: {{name: "{loss}"}}
          train: {{steps: 20, eval_every: 10}}
        parameters:
          optim.lr_g: {{log_uniform: [1.0e-4, 1.0e-3]}}
        """)
    )
    sys.path.insert(0, os.path.dirname(__file__))  # bad_plugins (pytest's pythonpath has it too)
    code = main(
        ["sweep", str(space), "--storage-path", str(tmp_path / "ray_results")]
        + [
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--study-storage",
            f"sqlite:///{tmp_path / 'o.db'}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not any((tmp_path / f).exists() for f in ("ray_results", "mlflow.db", "o.db"))


@pytest.mark.slow
@pytest.mark.parametrize("names", [BY_PATH, BY_ENTRY_POINT], ids=["import_path", "entry_point"])
def test_plugins_in_a_sweep_a_two_worker_train_run_and_a_fresh_process(ray_session, names, tmp_path, store):
    """A sweep of Tune trial processes, then a 2-worker Ray Train run, on the plug-ins; the champion is
    registered, and a fresh Python (which never saw this test's imports) loads it and samples the mixture."""
    base = plugin_config(names)
    base["train"].update(steps=120, eval_every=60)
    space = tmp_path / "plugged.yaml"
    space.write_text(
        json.dumps(
            {
                "name": f"t_plugged_{names['noise'].replace(':', '_')}",
                "base": base,
                "parameters": {
                    "optim.lr_g": {"log_uniform": [5.0e-4, 2.0e-3]},
                    "loss.name": {"choice": [names["loss"], "hinge"]},
                    "loss.params.margin": {"uniform": [0.5, 1.0], "when": {"loss.name": names["loss"]}},
                },
                "budget": {"num_samples": 3, "max_concurrent_trials": 2},
                "scheduler": {"type": "none"},
                "search": {"final_eval": {"top": 1, "samples": 1000}},
            }
        )
    )
    result = gan_ray.sweep(
        space,
        tracking_uri=store,
        storage_path=str(tmp_path / "ray_results"),
        study_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        verbose=0,
    )
    assert len(result.trials) == 3 and result.best is not None, [t.status for t in result.trials]
    assert any(t.params["loss.name"] == names["loss"] for t in result.trials)
    assert result.model_version is not None

    cfg = validate_config(base | {"name": f"plugged_ddp_{names['noise'].replace(':', '_')}"})
    ddp = gan_ray.train(cfg, workers=2, tracking=False, verbose=False)
    assert ddp.status in ("completed", "collapsed") and ddp.metrics.get("replica_param_spread") == 0.0

    code = (
        "import gan_ray, json, sys\n"
        f"g = gan_ray.load_generator('models:/{result.model_name}@champion', tracking_uri='{store}')\n"
        "from gan_ray.metrics import mode_metrics\n"
        "x = g.sample(600, seed=0)\n"
        "print(json.dumps({'shape': list(x.shape), 'modes': mode_metrics(x, g.config.data.name)['modes_covered'],"
        " 'data': g.config.data.name, 'noise': g.config.noise.distribution, 'mods': sorted(sys.modules)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["shape"] == [600, 2] and seen["data"] == names["data"] and seen["noise"] == names["noise"]
    assert 0 <= seen["modes"] <= 3


def test_old_configs_checkpoints_and_search_spaces_still_load(tmp_path):
    """Model keys of earlier versions (family, hidden_dim, g_filters...) become the spec; a checkpoint's
    config of that form resumes under today's form of the same config."""
    from gan_ray.config import check_resumable
    from gan_ray.search.load import parse_search_space

    old = {
        "data": {"name": "digits"},
        "model": {"family": "dcgan", "hidden_dim": 128, "g_filters": 8, "d_filters": 8},
    }
    cfg = validate_config(old)
    assert cfg.model.name == "dcgan" and cfg.model.params == {"g_filters": 8, "d_filters": 8}
    new = validate_config(
        {"data": {"name": "digits"}, "model": {"name": "dcgan", "params": {"g_filters": 8, "d_filters": 8}}}
    )
    assert cfg.flat() == new.flat()
    check_resumable(old, new)  # an old checkpoint's config dict resumes under the new spelling
    space = parse_search_space(
        "name: old\nbase: {model: {family: mlp, hidden_dim: 32}}\n"
        "parameters:\n  model.hidden_dim: {choice: [16, 64]}\n  model.d_pac: {choice: [1, 2]}\n"
    )
    trial = space.trial_config({"model.hidden_dim": 64, "model.d_pac": 2})
    assert trial.model.params["hidden_dim"] == 64 and trial.model.d_pac == 2
    g, d = __import__("gan_ray.training.networks", fromlist=["build_models"]).build_models(trial)
    assert d.pac == 2 and g(torch.zeros(3, trial.noise_dim)).shape == (3, 2)


def test_a_checkpoint_and_a_model_folder_of_the_old_form_still_load(tmp_path, one_thread):
    """A run saved before models were specs (its config's model section: family, hidden_dim...) loads as a
    generator: the shape of every checkpoint and registered model of earlier versions."""
    from gan_ray.sampling import load_generator
    from gan_ray.training.checkpoint import CHECKPOINT_FILE

    cfg = validate_config(
        {
            "name": "old_form",
            "output_dir": str(tmp_path),
            "model": {"params": {"hidden_dim": 16, "hidden_layers": 1}},
            "train": {"steps": 20, "eval_every": 20, "batch_size": 32, "eval_samples": 100},
        }
    )
    out = gan_ray.train(cfg, tracking=False, verbose=False)
    path = tmp_path / "old_form" / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    state["config"]["model"] = {
        "family": "auto",
        "hidden_dim": 16,
        "hidden_layers": 1,
        "d_dropout": 0.0,
        "g_filters": 64,
        "d_filters": 64,
        "d_pac": 1,
        "d_minibatch_std": 0,
    }
    torch.save(state, path)
    loaded = load_generator(path.parent)
    params = loaded.config.model.params  # the keys mlp takes moved into params; g_filters... dropped
    assert loaded.config.model_name == "mlp" and params == {
        "hidden_dim": 16,
        "hidden_layers": 1,
        "d_dropout": 0.0,
    }
    assert torch.equal(loaded.sample(50, seed=3), loaded.sample(50, seed=3)) and out.checkpoint is not None


@pytest.mark.slow
def test_the_extending_pages_example_config_trains_from_the_command_line(tmp_path):
    """docs/extending.md's example, run as the page says (PYTHONPATH=docs/examples gan-ray train ...)."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "docs" / "examples"),
        "GAN_RAY_CACHE": str(tmp_path / "cache"),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gan_ray",
            "train",
            str(root / "docs" / "examples" / "plugins.yaml"),
            "--no-tracking",
        ]
        + ["--set", f"output_dir={tmp_path}", "--set", "train.steps=100", "--set", "train.eval_every=50"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "fid_classifier" in out.stderr and (tmp_path / "plugins_demo" / "checkpoint.pt").is_file()


@pytest.mark.parametrize(
    ("registry", "contract"), [(NOISE, "sampler(n, dim"), ("features", "builder(data_spec")]
)
def test_a_plugin_that_is_not_a_function_names_the_contract(registry, contract):
    if registry == "features":
        from gan_ray.metrics.features import FEATURE_EXTRACTORS as registry
    with pytest.raises(PluginError) as err:
        registry.resolve("bad_plugins:NOT_A_LOSS")
    assert "'bad_plugins:NOT_A_LOSS' is 3; expected" in str(err.value) and contract in str(err.value)
