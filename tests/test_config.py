"""The validated config: defaults, YAML loading, every error naming field + value + what is allowed,
overrides (what a sweep trial applies), the flat view MLflow logs, and the set of known keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gan_ray.config import LEGACY_MODEL_KEYS, ConfigError, GanConfig, known_keys, load_config, validate_config
from gan_ray.losses import LOSSES
from gan_ray.noise import NOISE


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(data)
    return str(err.value)


def test_defaults_validate():
    cfg = validate_config({})
    assert cfg == GanConfig()
    assert validate_config(None) == cfg
    assert cfg.data.name == "ring8" and cfg.model_name == "mlp"
    assert cfg.loss.name == "non_saturating"
    assert cfg.d_steps_per_g_step == 1
    assert cfg.noise_dim > 0


def test_k_defaults_to_the_papers_five_critic_steps_for_the_wasserstein_losses():
    """Unset k follows the loss (Arjovsky et al. 2017; Gulrajani et al. 2017), also when a sweep
    trial switches the loss of a base config; a k the config sets is kept."""
    for loss, k in [("non_saturating", 1), ("hinge", 1), ("wasserstein", 5), ("wgan_gp", 5)]:
        cfg = validate_config({"loss": {"name": loss}})
        assert cfg.train.d_steps_per_g_step is None and cfg.d_steps_per_g_step == k, loss
        assert cfg.flat()["train.d_steps_per_g_step"] == k
    switched = GanConfig().with_overrides({"loss.name": "wasserstein"})
    assert switched.d_steps_per_g_step == 5
    assert (
        validate_config(
            {"loss": {"name": "wasserstein"}, "train": {"d_steps_per_g_step": 2}}
        ).d_steps_per_g_step
        == 2
    )
    from gan_ray.training.loop import build_training

    assert build_training(switched).step_fn.d_steps_per_g_step == 5


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_load_config_from_yaml(tmp_path):
    path = _write(
        tmp_path,
        """
name: ring-wgan
data: {name: grid25}
loss:
  name: wasserstein
  params: {clip: 0.02}
noise: {distribution: uniform, dim: 16}
optim: {lr_g: 1.0e-4, lr_d: 3.0e-4}
train: {d_steps_per_g_step: 5, batch_size: 256}
""",
    )
    cfg = load_config(path)
    assert cfg.name == "ring-wgan"
    assert cfg.data.name == "grid25"
    assert cfg.loss.name == "wasserstein" and cfg.loss.params == {"clip": 0.02}
    assert cfg.noise.distribution == "uniform" and cfg.noise_dim == 16
    assert cfg.optim.lr_g == 1e-4 and cfg.optim.lr_d == 3e-4
    assert cfg.train.d_steps_per_g_step == 5 and cfg.train.batch_size == 256
    assert cfg.optim.beta1 == GanConfig().optim.beta1  # untouched fields keep their defaults
    assert load_config(str(path)) == cfg


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-3` as the *string* "1e-3"; learning rates are written that way.
    cfg = load_config(
        _write(tmp_path, "optim: {lr_g: 1e-3}\nloss: {name: wasserstein, params: {clip: 2e-2}}\n")
    )
    assert cfg.optim.lr_g == 1e-3 and cfg.loss.params == {"clip": 0.02}


def test_load_empty_yaml_gives_defaults(tmp_path):
    assert load_config(_write(tmp_path, "")) == GanConfig()


def test_load_config_errors_name_the_file(tmp_path):
    path = _write(tmp_path, "train: {batch_size: 0}\n")
    with pytest.raises(ConfigError, match="train.batch_size") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_unknown_top_level_key():
    msg = _error({"optimizer": {"lr": 1}})
    assert "optimizer" in msg and "unknown key" in msg
    assert "'lr'" in msg  # the value
    assert "optim" in msg.split("expected", 1)[1]  # what is allowed


def test_unknown_nested_key():
    msg = _error({"optim": {"lr_gen": 0.001}})
    assert "optim.lr_gen" in msg and "0.001" in msg
    allowed = msg.split("expected", 1)[1]
    assert "lr_g" in allowed and "lr_d" in allowed


def test_unknown_loss_name():
    msg = _error({"loss": {"name": "wgan"}})
    assert "loss" in msg and "'wgan'" in msg
    for name in LOSSES:
        assert name in msg


def test_unknown_noise_name():
    msg = _error({"noise": {"distribution": "gaussian"}})
    assert "noise.distribution" in msg and "'gaussian'" in msg
    for name in NOISE:
        assert name in msg


def test_unknown_dataset_name():
    msg = _error({"data": {"name": "imagenet"}})
    assert "data.name" in msg and "'imagenet'" in msg and "ring8" in msg and "cifar10" in msg


@pytest.mark.parametrize(
    ("data", "field", "value", "allowed"),
    [
        ({"train": {"d_steps_per_g_step": 0}}, "train.d_steps_per_g_step", "0", "greater than or equal to 1"),
        ({"optim": {"lr_g": 0.0}}, "optim.lr_g", "0.0", "greater than 0"),
        ({"optim": {"lr_g": -1e-3}}, "optim.lr_g", "-0.001", "greater than 0"),
        ({"optim": {"lr_d": -2e-4}}, "optim.lr_d", "-0.0002", "greater than 0"),
        ({"train": {"batch_size": 0}}, "train.batch_size", "0", "greater than 0"),
        ({"optim": {"beta1": 1.0}}, "optim.beta1", "1.0", "less than 1"),
        ({"model": {"d_dropout": 1.0}}, "model.params.d_dropout", "1.0", "less than 1"),
        ({"model": {"params": {"hidden_dim": 0}}}, "model.params.hidden_dim", "0", "greater than 0"),
        ({"noise": {"dim": 0}}, "noise.dim", "0", "greater than 0"),
        ({"train": {"device": "gpu"}}, "train.device", "'gpu'", "cuda"),
        ({"data": {"name": "mnist", "root": "/x", "image_size": 48}}, "data.image_size", "48", "64"),
    ],
)
def test_bad_values_name_field_value_and_allowed(data, field, value, allowed):
    msg = _error(data)
    assert field in msg
    assert f"(got {value})" in msg
    assert allowed in msg


def test_every_bad_field_is_reported_at_once():
    msg = _error({"optim": {"lr_g": 0, "lr_d": -1}, "train": {"batch_size": 0}})
    assert "optim.lr_g" in msg and "optim.lr_d" in msg and "train.batch_size" in msg


def test_fractional_gpus_only_for_single_worker_runs():
    # Ray would pack both ranks onto one GPU, which NCCL refuses once the workers are up.
    msg = _error({"scaling": {"num_workers": 2, "use_gpu": True, "gpus_per_worker": 0.5}})
    assert "whole GPU per worker" in msg
    packed = validate_config({"scaling": {"num_workers": 1, "use_gpu": True, "gpus_per_worker": 0.25}})
    assert packed.scaling.gpus_per_worker == 0.25
    on_cpu = validate_config({"scaling": {"num_workers": 2, "use_gpu": False, "gpus_per_worker": 0.5}})
    assert on_cpu.scaling.num_workers == 2


def test_loss_params_must_belong_to_the_loss():
    msg = _error({"loss": {"name": "wasserstein", "params": {"gp_weight": 10}}})
    assert "gp_weight" in msg and "wasserstein" in msg
    assert "clip" in msg  # what wasserstein does take
    msg = _error({"loss": {"name": "non_saturating", "params": {"clip": 0.01}}})
    assert "clip" in msg and "non_saturating" in msg


def test_loss_param_values_are_checked():
    msg = _error({"loss": {"name": "wasserstein", "params": {"clip": 0}}})
    assert "clip" in msg and "0.0" in msg
    msg = _error({"loss": {"name": "wgan_gp", "params": {"gp_weight": -5}}})
    assert "gp_weight" in msg and "-5.0" in msg


def test_mlp_family_with_image_dataset():
    msg = _error({"data": {"name": "digits"}, "model": {"family": "mlp"}})
    assert "model.name" in msg and "'mlp'" in msg and "'digits'" in msg and "dcgan" in msg


def test_dcgan_family_with_mixture_dataset():
    msg = _error({"data": {"name": "ring8"}, "model": {"family": "dcgan"}})
    assert "model.name" in msg and "'dcgan'" in msg and "'ring8'" in msg and "mlp" in msg


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_torchvision_dataset_needs_root(name):
    msg = _error({"data": {"name": name}})
    assert "data.root" in msg and repr(name) in msg
    cfg = validate_config({"data": {"name": name, "root": "/data/torchvision"}})
    assert cfg.data.root == "/data/torchvision" and cfg.model_name == "dcgan"


def test_digits_needs_no_root():
    cfg = validate_config({"data": {"name": "digits"}})
    assert cfg.data.root is None and cfg.model_name == "dcgan" and cfg.noise_dim == 100


def test_yaml_that_does_not_parse(tmp_path):
    path = _write(tmp_path, "loss: {name: hinge\ntrain: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert f"{path}:2:" in str(err.value) and "\n" not in str(err.value)  # one line, at the fault


@pytest.mark.parametrize(
    ("text", "kind"), [("- 1\n- 2\n", "list"), ("just a string\n", "str"), ("3\n", "int")]
)
def test_yaml_that_is_not_a_mapping(tmp_path, text, kind):
    with pytest.raises(ConfigError, match="mapping") as err:
        load_config(_write(tmp_path, text))
    assert kind in str(err.value)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as err:
        load_config(missing)
    assert str(missing) in str(err.value)


def test_with_overrides_gives_a_validated_config_with_those_values():
    base = GanConfig()
    cfg = base.with_overrides({"optim.lr_g": 1e-3, "loss.name": "wasserstein", "loss.params": {"clip": 0.05}})
    assert isinstance(cfg, GanConfig)
    assert cfg.optim.lr_g == 1e-3
    assert cfg.loss.name == "wasserstein" and cfg.loss.params == {"clip": 0.05}
    assert cfg.loss.resolved_params() == {"clip": 0.05}
    assert cfg.optim.lr_d == base.optim.lr_d
    # The original is untouched.
    assert base.optim.lr_g == 2e-4 and base.loss.name == "non_saturating"


def test_with_overrides_dotted_loss_param():
    cfg = GanConfig().with_overrides({"loss.name": "wgan_gp", "loss.params.gp_weight": 2.5})
    assert cfg.loss.resolved_params() == {"gp_weight": 2.5}


def test_with_overrides_validates():
    with pytest.raises(ConfigError, match="optim.lr_g"):
        GanConfig().with_overrides({"optim.lr_g": -1.0})
    with pytest.raises(ConfigError, match="gp_weight"):
        GanConfig().with_overrides({"loss.name": "hinge", "loss.params.gp_weight": 1.0})


@pytest.mark.parametrize("key", ["optim.lr_gen", "optimizer.lr_g", "optim.lr_g.value", "typo"])
def test_with_overrides_unknown_key(key):
    with pytest.raises(ConfigError) as err:
        GanConfig().with_overrides({key: 1e-3})
    assert key.split(".")[0] in str(err.value)


def test_flat_loss_params_only_for_the_current_loss():
    flat = GanConfig().flat()
    assert not any(k.startswith("loss.params.") for k in flat)
    assert flat["loss.name"] == "non_saturating"

    flat = GanConfig().with_overrides({"loss.name": "wasserstein"}).flat()
    assert flat["loss.params.clip"] == 0.01  # the default, filled in
    assert "loss.params.gp_weight" not in flat

    flat = GanConfig().with_overrides({"loss.name": "wgan_gp"}).flat()
    assert flat["loss.params.gp_weight"] == 10.0
    assert "loss.params.clip" not in flat


def test_flat_has_dotted_leaves_and_resolved_auto_values():
    cfg = validate_config({"data": {"name": "grid25"}, "optim": {"lr_g": 5e-4}})
    flat = cfg.flat()
    assert flat["optim.lr_g"] == 5e-4
    assert flat["data.name"] == "grid25"
    assert flat["train.d_steps_per_g_step"] == 1
    assert flat["model.name"] == "mlp"  # "auto" resolved
    assert flat["noise.dim"] == cfg.noise_dim and flat["noise.dim"] is not None
    assert not any(isinstance(v, dict) for v in flat.values())
    # Every flat key is a key a sweep may set.
    assert set(flat) <= known_keys()


def test_known_keys():
    keys = known_keys()
    for key in (
        "optim.lr_g",
        "optim.lr_d",
        "loss.name",
        "loss.params.clip",
        "loss.params.gp_weight",
        "train.d_steps_per_g_step",
        "noise.dim",
        "noise.distribution",
        "data.root",
        "model.hidden_dim",
        "model.params.hidden_dim",
        "model.params.g_filters",
        "scaling.num_workers",
        "penalty.name",
        "penalty.weight",
        "penalty.schedule",
        "optim.lr_burn_in",
    ):
        assert key in keys
    assert "loss.params" not in keys and "optim" not in keys


def test_every_known_key_is_accepted_by_with_overrides():
    # A key a sweep may set must reach the config; here each one is set to a valid value and read back.
    loss_values = {"loss.params.clip": ("wasserstein", 0.03), "loss.params.gp_weight": ("wgan_gp", 2.0)}
    base = GanConfig()
    for key in sorted(known_keys()):
        if key == "penalty.weight":
            assert base.with_overrides({"penalty.name": "r2", key: 0.25}).flat()[key] == 0.25
            continue
        if key in loss_values:
            loss_name, value = loss_values[key]
            cfg = base.with_overrides({"loss.name": loss_name, key: value})
            assert cfg.flat()[key] == value
            continue
        if key.startswith("model.") and key.split(".")[1] in ("params", *LEGACY_MODEL_KEYS):
            _check_model_key(base, key)
            continue
        *path, leaf = key.split(".")
        node = base.model_dump()
        for part in path:
            node = node[part]
        value = node[leaf]
        obj = base.with_overrides({key: value})
        for part in path:
            obj = getattr(obj, part)
        assert getattr(obj, leaf) == value, key
    assert set(known_keys()) >= set(base.flat())


def _check_model_key(base: GanConfig, key: str) -> None:
    """A model parameter (``model.params.X``, or an old config's ``model.X``) reaches the builder's params."""
    leaf = key.rpartition(".")[2]
    if leaf == "family":
        assert base.with_overrides({key: "mlp"}).flat()["model.name"] == "mlp"
        return
    images = {"data.name": "digits"} if leaf in ("g_filters", "d_filters") else {}
    if leaf in ("width", "blocks_per_stage", "expansion", "group_size"):
        images = {"data.name": "digits", "data.image_size": 28, "model.name": "resnet"}
    value = 0.25 if leaf == "d_dropout" else 24
    cfg = base.with_overrides({**images, key: value})
    assert cfg.model_params[leaf] == value and cfg.flat()[f"model.params.{leaf}"] == value, key


def test_yaml_round_trip(tmp_path):
    cfg = validate_config({"data": {"name": "digits", "image_size": 32}, "loss": {"name": "hinge"}})
    path = _write(tmp_path, yaml.safe_dump(cfg.model_dump(mode="json")))
    assert load_config(path) == cfg


def test_penalty_is_an_axis_of_its_own():
    cfg = GanConfig().with_overrides({"loss.name": "rpgan", "penalty.name": "r1_r2"})
    assert cfg.effective_penalty.name == "r1_r2" and cfg.effective_penalty.weight == 1.0  # R3GAN's gamma
    assert GanConfig().effective_penalty is None
    gp = GanConfig().with_overrides({"penalty.name": "gp"}).effective_penalty
    assert (gp.name, gp.weight) == ("gp", 10.0)
    # wgan_gp is the Wasserstein losses plus gp at its own gp_weight, as it always was.
    wgan_gp = GanConfig().with_overrides({"loss.name": "wgan_gp", "loss.params.gp_weight": 4.0})
    assert (wgan_gp.effective_penalty.name, wgan_gp.effective_penalty.weight) == ("gp", 4.0)


def test_penalty_errors_are_one_line():
    assert "unknown penalty 'r3'" in _error({"penalty": {"name": "r3"}})
    assert "r1_r2" in _error({"penalty": {"name": "r3"}})
    msg = _error({"loss": {"name": "wgan_gp"}, "penalty": {"name": "r1"}})
    assert "carries the 'gp' penalty already" in msg and "\n" not in msg
    assert "penalty.weight" in _error({"penalty": {"name": "r1", "weight": -1}})
    assert "penalty.burn_in" in _error({"penalty": {"name": "r1", "burn_in": 0}})


def test_flat_penalty_keys_only_where_they_apply():
    assert {k for k in GanConfig().flat() if k.startswith("penalty.")} == {"penalty.name"}
    r1 = GanConfig().with_overrides({"penalty.name": "r1", "penalty.weight": 0.5}).flat()
    assert (r1["penalty.name"], r1["penalty.weight"], r1["penalty.schedule"]) == ("r1", 0.5, "constant")
    assert "penalty.final_ratio" not in r1
    burn_in = GanConfig().with_overrides({"penalty.name": "r1_r2", "penalty.schedule": "cosine"}).flat()
    assert burn_in["penalty.final_ratio"] == 0.1 and burn_in["penalty.burn_in"] == 1.0
    wgan_gp = GanConfig().with_overrides({"loss.name": "wgan_gp"}).flat()
    assert wgan_gp["penalty.name"] == "gp" and "penalty.weight" not in wgan_gp  # its weight: gp_weight


def test_a_resume_refuses_another_penalty():
    from gan_ray.config import resume_conflicts

    trained = GanConfig().with_overrides({"penalty.name": "r1"})
    assert resume_conflicts(trained, GanConfig().with_overrides({"penalty.name": "r1_r2"}))
    assert not resume_conflicts(trained, trained.with_overrides({"train.steps": 9000}))
    # A checkpoint of an old wgan_gp run (no penalty section) resumes under today's config of it.
    old = validate_config({"loss": {"name": "wgan_gp", "params": {"gp_weight": 5.0}}})
    assert not resume_conflicts(
        old, GanConfig().with_overrides({"loss.name": "wgan_gp", "loss.params.gp_weight": 5.0})
    )


def test_set_overrides_are_read_as_yaml_and_checked_key_by_key():
    from gan_ray.config import parse_overrides

    got = parse_overrides(["data.root=~/data", "optim.lr_g=1e-3", "train.ema_decay=null", "penalty.name=r1"])
    assert got == {"data.root": "~/data", "optim.lr_g": 1e-3, "train.ema_decay": None, "penalty.name": "r1"}
    assert GanConfig().with_overrides(got).optim.lr_g == 1e-3
    for bad, message in (
        ("train.stepz=3", "unknown config key 'train.stepz'; keys of 'train'"),
        ("train.steps", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("optim.lr_g=[1", "not valid YAML"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            parse_overrides([bad])
        assert "\n" not in str(err.value)
