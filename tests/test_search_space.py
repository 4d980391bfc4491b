"""Search-space files: parsing, conditional parameters, and errors that point at the line and key."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from gan_ray.errors import SearchSpaceError
from gan_ray.search.load import load_search_space, parse_search_space

SPACES = sorted((Path(__file__).parent.parent / "search_spaces").glob("*.yaml"))

GOOD = """\
name: tiny
base:
  data: {name: ring8}
  train: {steps: 100, eval_every: 50}
parameters:
  optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}
  train.d_steps_per_g_step: {int: [1, 5]}
  loss.name: {choice: [non_saturating, wasserstein, wgan_gp]}
  loss.params.clip: {log_uniform: [0.001, 0.1], when: {loss.name: wasserstein}}
  loss.params.gp_weight: {uniform: [1.0, 20.0], when: {loss.name: wgan_gp}}
  model.hidden_dim: 64
"""


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_shipped_spaces_parse(path):
    space = load_search_space(path)
    assert space.name and space.params
    searched = {p.key for p in space.params if p.kind != "fixed"}
    if path.stem in ("ring8", "grid25", "digits", "losses_study"):
        assert {
            "optim.lr_g",
            "optim.lr_d",
            "train.d_steps_per_g_step",
            "loss.name",
            "optim.beta1",
        } <= searched
    lr = [p for p in space.params if p.key in ("optim.lr_g", "optim.lr_d")]
    ties = {p.key: p.value for p in lr if p.kind == "same_as"}
    assert all(p.kind == "log_uniform" for p in lr if p.key not in ties), "learning rates on a log scale"
    assert set(ties.values()) <= {p.key for p in lr}, "a rate is tied only to the other rate"
    if path.stem == "losses_study":  # Lucic et al. (2018): one learning rate for G and D
        assert ties == {"optim.lr_d": "optim.lr_g"}


def test_a_chosen_none_reaches_the_trial_over_the_bases_default():
    # "no EMA" is a choice like any other: dropping it would train the trial with the base's EMA
    # while Optuna, MLflow and trials.csv believe it had none.
    space = parse_search_space(
        """\
name: none_choice
base:
  data: {name: ring8}
  train: {steps: 100, eval_every: 50, ema_decay: 0.99}
parameters:
  train.ema_decay: {choice: [null, 0.999]}
"""
    )
    values = space.resolve({"train.ema_decay": None})
    assert values == {"train.ema_decay": None}
    assert space.trial_config(values).train.ema_decay is None
    assert space.resolve({}) == {}  # nothing sampled: nothing set, the base holds
    assert space.trial_config(space.resolve({})).train.ema_decay == 0.99


def test_conditional_parameters_follow_their_loss():
    space = parse_search_space(GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        space.define_by_run(trial)
        params = trial.params
        loss = params["loss.name"]
        seen.add(loss)
        assert ("loss.params.clip" in params) == (loss == "wasserstein")
        assert ("loss.params.gp_weight" in params) == (loss == "wgan_gp")
        cfg = space.trial_config(space.resolve(params))
        assert cfg.loss.name == loss
        assert cfg.model.params["hidden_dim"] == 64  # the fixed value reaches the config
        assert cfg.optim.lr_g == params["optim.lr_g"]
        assert set(cfg.loss.resolved_params()) == {
            k.removeprefix("loss.params.") for k in params if "params" in k
        }
        study.tell(trial, 0.0)
    assert seen == {"non_saturating", "wasserstein", "wgan_gp"}


def test_switching_loss_drops_the_base_loss_parameters():
    text = GOOD.replace(
        "  data: {name: ring8}", "  data: {name: ring8}\n  loss: {name: wgan_gp, params: {gp_weight: 5}}"
    )
    space = parse_search_space(text)
    cfg = space.trial_config({"loss.name": "non_saturating"})
    assert cfg.loss.name == "non_saturating" and cfg.loss.params == {}


@pytest.mark.parametrize(
    "mutate, line, message",
    [
        (lambda t: t.replace("optim.lr_g:", "optim.lr_gg:"), 6, "unknown parameter 'optim.lr_gg'"),
        (lambda t: t.replace("[1.0e-4, 1.0e-2]", "[1.0e-2, 1.0e-4]"), 6, "empty range"),
        (lambda t: t.replace("{int: [1, 5]}", "{int: [3, 3]}"), 7, "empty range"),
        (lambda t: t.replace("[1.0e-4, 1.0e-2]", "[0.0, 1.0e-2]"), 6, "low > 0"),
        (lambda t: t.replace("[non_saturating, wasserstein, wgan_gp]", "[]"), 8, "non-empty list"),
        (lambda t: t.replace("when: {loss.name: wasserstein}", "when: {loss.name: wgan}"), 9, "not among"),
        (
            lambda t: t.replace("{log_uniform: [1.0e-4, 1.0e-2]}", "{loguniform: [1.0e-4, 1.0e-2]}"),
            6,
            "exactly one of",
        ),
        (
            lambda t: t.replace("wasserstein, wgan_gp", "wasserstein, wgan_gp, wgan_xx"),
            8,
            "unknown loss 'wgan_xx'",
        ),
        (lambda t: t.replace(", when: {loss.name: wasserstein}", ""), 9, "would not run"),
        (lambda t: t + "budget: {num_samples: 0}\n", 12, "positive int"),
        (lambda t: t + "scheduler: {type: hyperband}\n", 12, "asha"),
        (lambda t: t + "objective: {metric: fid}\n", 12, "not reported"),
        (lambda t: t + "budgett: {}\n", 12, "unknown key"),
        (
            lambda t: t + "budget: {workers_per_trial: 2, gpus_per_worker: 0.5}\n",
            12,
            "whole GPU per worker",
        ),
        (lambda t: t.replace("  train: {steps: 100, eval_every: 50}", "  train: {stepz: 100}"), 2, "stepz"),
    ],
)
def test_broken_files_point_at_line_and_key(mutate, line, message, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(mutate(GOOD))
    with pytest.raises(SearchSpaceError) as err:
        load_search_space(path)
    text = str(err.value)
    assert message in text
    assert f"{path}:{line}:" in text


def test_unparseable_yaml_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nparameters: {optim.lr_g: [1, \n")
    with pytest.raises(SearchSpaceError, match="not valid YAML") as err:
        load_search_space(path)
    assert f"{path}:3:" in str(err.value) and "\n" not in str(err.value)  # one line, at the fault
    with pytest.raises(SearchSpaceError, match="not found"):
        load_search_space(tmp_path / "nope.yaml")


def test_initial_points_are_validated():
    ok = (
        GOOD
        + "search:\n  initial_points:\n    - {optim.lr_g: 0.001, train.d_steps_per_g_step: 1, loss.name: wasserstein, loss.params.clip: 0.01}\n"
    )
    assert parse_search_space(ok).initial_points[0]["loss.params.clip"] == 0.01
    bad = ok.replace(
        "loss.name: wasserstein, loss.params.clip: 0.01", "loss.name: non_saturating, loss.params.clip: 0.01"
    )
    with pytest.raises(SearchSpaceError, match="do not apply"):
        parse_search_space(bad)


def test_same_as_ties_a_parameter_and_stratify_gives_every_value_the_same_budget():
    text = GOOD.replace(
        "  model.hidden_dim: 64\n", "  model.hidden_dim: 64\n  optim.lr_d: {same_as: optim.lr_g}\n"
    )
    text += "budget: {num_samples: 3}\nsearch: {sampler: random, stratify: loss.name}\n"
    space = parse_search_space(text)
    from gan_ray.ray.search import stratified_points

    points = stratified_points(space)
    assert len(points) == 9
    assert sorted(p["loss.name"] for p in points) == sorted(["non_saturating", "wasserstein", "wgan_gp"] * 3)
    assert len({p["optim.lr_g"] for p in points}) == 9  # random draws, not one point repeated
    for p in points:
        cfg = space.trial_config(space.resolve(p))
        assert cfg.optim.lr_d == cfg.optim.lr_g == p["optim.lr_g"]
        assert ("clip" in cfg.loss.params) == (p["loss.name"] == "wasserstein")
    assert stratified_points(space, seed_offset=9) != points
    assert "optim.lr_d" not in space.searched_keys  # tied, not searched
    with pytest.raises(SearchSpaceError, match="unconditional choice"):
        parse_search_space(GOOD + "search: {stratify: optim.lr_g}\n")


def test_a_tie_must_name_a_parameter_listed_above_it():
    tie = "  optim.lr_d: {same_as: optim.lr_g}\n"
    below = GOOD.replace("parameters:\n", "parameters:\n" + tie)  # before lr_g: nothing to copy yet
    with pytest.raises(SearchSpaceError, match="not a parameter listed above") as err:
        parse_search_space(below)
    assert "parameters.optim.lr_d.same_as" in str(err.value)
    not_searched = GOOD.replace(
        "  model.hidden_dim: 64\n", "  model.hidden_dim: 64\n  optim.beta1: {same_as: optim.beta2}\n"
    )
    with pytest.raises(SearchSpaceError, match="'optim.beta2' is not a parameter listed above"):
        parse_search_space(not_searched)


def test_fractional_gpu_budget_packs_single_worker_trials_in_ray_terms(tmp_path):
    # What a gpus_per_worker fraction in the file becomes: each trial's Ray Train worker asks for that
    # share of a GPU over NCCL, and as many trials run at once as the cluster's GPUs hold.
    from gan_ray.ray.strategy import max_concurrent
    from gan_ray.ray.train import make_trainer

    space = parse_search_space(GOOD + "budget: {num_samples: 8, gpus_per_worker: 0.25, cpus_per_worker: 2}\n")
    scaling = space.base.scaling
    assert (scaling.use_gpu, scaling.gpus_per_worker, scaling.num_workers) == (True, 0.25, 1)
    trainer = make_trainer(space.base, "packed", str(tmp_path))
    assert trainer.scaling_config.use_gpu
    assert trainer.scaling_config.resources_per_worker == {"CPU": 2.0, "GPU": 0.25}
    assert max_concurrent(space, {"CPU": 64.0, "GPU": 1.0}) == 4
    assert max_concurrent(space, {"CPU": 64.0, "GPU": 8.0}) == 32
    assert max_concurrent(space, {"CPU": 8.0}) == 1  # no GPU yet (an autoscaling cluster): one at a time
    on_cpu = parse_search_space(GOOD + "budget: {num_samples: 8, cpus_per_worker: 2}\n")
    assert not on_cpu.base.scaling.use_gpu
    assert max_concurrent(on_cpu, {"CPU": 8.0, "GPU": 1.0}) == 4


def test_set_changes_the_base_and_refuses_a_searched_key():
    from gan_ray.errors import ConfigError

    space = load_search_space(SPACES[0].parent / "fashion_mnist_laptop.yaml")
    moved = space.with_base_overrides({"data.root": "/data/torchvision", "train.steps": 500})
    assert moved.base.data.root == "/data/torchvision" and moved.base.train.steps == 500
    assert moved.params == space.params and space.base.data.root == "~/data"  # the file's space is untouched
    with pytest.raises(SearchSpaceError, match="--set optim.lr_g: searched by"):
        space.with_base_overrides({"optim.lr_g": 1e-3})
    with pytest.raises(ConfigError, match="--set: .*train.steps"):
        space.with_base_overrides({"train.steps": 0})


def test_an_image_objective_is_named_for_its_features(caplog):
    """``fid_classifier`` is the default; ``fid_inception`` only where inception features score the run;
    the old name ``fid`` (which read as Inception-FID) is taken as the new one, with a warning."""
    digits = GOOD.replace("data: {name: ring8}", "data: {name: digits}")
    assert parse_search_space(digits).objective.metric == "fid_classifier"
    assert (
        parse_search_space(digits + "objective: {metric: classes_covered, mode: max}\n").objective.mode
        == "max"
    )
    with caplog.at_level("WARNING", logger="gan_ray.search.load"):
        assert parse_search_space(digits + "objective: {metric: fid}\n").objective.metric == "fid_classifier"
    assert "now named 'fid_classifier'" in caplog.text
    with pytest.raises(SearchSpaceError, match="'fid_inception' is not reported"):
        parse_search_space(digits + "objective: {metric: fid_inception}\n")
    inception = digits.replace(
        "data: {name: digits}", "data: {name: digits}\n  metrics: {features: inception}"
    )
    assert parse_search_space(inception).objective.metric == "fid_inception"


PBT = GOOD + (
    "budget: {num_samples: 4}\n"
    "scheduler: {type: pbt, perturbation_interval: 1, mutate: [optim.lr_g, train.d_steps_per_g_step],\n"
    "            quantile_fraction: 0.5, resample_probability: 0.1}\n"
)


def test_a_pbt_scheduler_mutates_searched_keys_a_running_trial_takes_on():
    space = parse_search_space(PBT)
    assert space.scheduler == "pbt" and space.pbt is not None
    assert space.pbt.mutate == ("optim.lr_g", "train.d_steps_per_g_step")
    assert (space.pbt.perturbation_interval, space.pbt.quantile_fraction) == (1, 0.5)
    assert space.pbt.resample_probability == 0.1


@pytest.mark.parametrize(
    "change, message",
    [
        # The loss, the model, the noise: a trial that clones a checkpoint cannot switch them.
        (("optim.lr_g, train", "loss.name, train"), "'loss.name' cannot change mid-run"),
        (("optim.lr_g, train", "model.hidden_dim, train"), "'model.hidden_dim' cannot change mid-run"),
        (("optim.lr_g, train", "noise.distribution, train"), "'noise.distribution' cannot change mid-run"),
        (("[optim.lr_g, train.d_steps_per_g_step]", "[optim.lr_d]"), "must be a searched parameter"),
        (("mutate: [optim.lr_g, train.d_steps_per_g_step]", "mutate: []"), "expected a list"),
        (("quantile_fraction: 0.5", "quantile_fraction: 0.7"), "(0, 0.5]"),
        (("perturbation_interval: 1", "perturbation_interval: 2"), "leave no perturbation"),
        (("quantile_fraction: 0.5", "grace_period: 2"), "not a PBT setting"),
        (("budget: {num_samples: 4}", "budget: {num_samples: 4, workers_per_trial: 2}"), "one worker"),
    ],
)
def test_a_pbt_space_that_mutates_what_cannot_change_is_refused_in_one_line(change, message):
    with pytest.raises(SearchSpaceError) as err:
        parse_search_space(PBT.replace(*change), source="pbt.yaml")
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("pbt.yaml:"), text


def test_a_file_that_leaves_its_sections_out_gets_the_section_models_defaults():
    """Each default is stated once, in the section models: the loader adds none of its own."""
    from gan_ray.search.sections import Asha, Budget, Search

    space, search, asha = parse_search_space(GOOD), Search(), Asha()
    assert space.budget == Budget() and space.pbt is None and space.scheduler == "asha"
    assert (space.sampler, space.seed, space.initial_points, space.stratify) == (
        search.sampler,
        search.seed,
        search.initial_points,
        search.stratify,
    )
    assert (space.final_top, space.final_samples) == (search.final_eval.top, search.final_eval.samples)
    assert (space.grace_period, space.reduction_factor) == (asha.grace_period, asha.reduction_factor)
    pbt = parse_search_space(PBT.replace("quantile_fraction: 0.5, resample_probability: 0.1", "")).pbt
    assert (pbt.quantile_fraction, pbt.resample_probability) == (0.25, 0.25)  # the documented defaults


def test_a_time_budget_is_read_in_seconds():
    space = parse_search_space(GOOD + "budget: {num_samples: 4, time_budget_s: 90}\n")
    assert space.budget.time_budget_s == 90.0
    assert parse_search_space(GOOD).budget.time_budget_s is None
    with pytest.raises(SearchSpaceError, match="time_budget_s"):
        parse_search_space(GOOD + "budget: {time_budget_s: -1}\n")


@pytest.mark.parametrize(
    ("base", "parameters", "message"),
    [
        (
            "data: {name: digits}\n  model: {name: resnet}",
            "optim.lr_g: {log_uniform: [1.0e-4, 1.0e-2]}",
            "model 'resnet' builds images of side [28, 32, 64, 128, 256], not 8",
        ),
        (
            "data: {name: ring8}",
            "data.augment.policy: {choice: [none, diffaug, ada]}",
            "data.augment.policy 'diffaug' augments images; dataset 'ring8' is a 2-D mixture",
        ),
    ],
)
def test_a_space_the_network_or_the_augmentation_cannot_run_is_refused_in_one_line(base, parameters, message):
    text = f"name: bad\nbase:\n  {base}\nparameters:\n  {parameters}\n"
    with pytest.raises(SearchSpaceError) as err:
        parse_search_space(text, "bad.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("bad.yaml:")


def test_the_resnet_space_searches_augmentation_lazy_penalties_and_the_network():
    space = load_search_space(Path(__file__).parent.parent / "search_spaces" / "fashion_mnist_resnet.yaml")
    keys = {p.key for p in space.params}
    assert {
        "data.augment.policy",
        "penalty.every",
        "model.params.width",
        "model.params.blocks_per_stage",
    } <= keys
    assert space.budget.gpus_per_worker > 0
    cfg = space.trial_config(
        space.resolve(
            {
                "data.augment.policy": "ada",
                "data.augment.ada_target": 0.5,
                "penalty.every": 4,
                "model.params.width": 128,
            }
        )
    )
    assert (cfg.data.augment.policy, cfg.data.augment.ada_target, cfg.penalty.every) == ("ada", 0.5, 4)
    assert cfg.model_params["width"] == 128 and cfg.data.image_size == 32


def test_the_gpu_folder_space_takes_128_px_and_conditional_from_the_command_line():
    """search_spaces/folder_resnet.yaml: the residual network on a folder at 64 px; 128 px and a
    class-conditional model are one override each, validated as the file is."""
    path = Path(__file__).parent.parent / "search_spaces" / "folder_resnet.yaml"
    space = load_search_space(path).with_base_overrides(
        {"data.root": "/images", "data.image_size": 128, "model.conditional": True}
    )
    cfg = space.trial_config(space.resolve({"data.augment.policy": "diffaug", "model.params.width": 128}))
    assert (cfg.data.name, cfg.data.image_size, cfg.model_name, cfg.model.conditional) == (
        "folder",
        128,
        "resnet",
        True,
    )
    assert cfg.data.augment.policy == "diffaug" and space.budget.gpus_per_worker > 0


STARTS = sorted((Path(__file__).parent.parent / "search_spaces" / "starts").glob("*.yaml"))


@pytest.mark.parametrize("path", STARTS, ids=lambda p: p.stem)
def test_each_known_starts_file_fits_its_space_and_replaces_the_files_points(path):
    space = load_search_space(path.parent.parent / path.name)
    with_starts = space.with_initial_points(path)
    assert with_starts.initial_points and with_starts.initial_points != space.initial_points
    for point in with_starts.initial_points:  # each a full point the sweep can train
        assert space.trial_config(space.resolve(point)).train.steps == space.base.train.steps
    assert with_starts.with_initial_points("none").initial_points == ()


def test_initial_points_files_read_numbers_as_the_search_space_file_does(tmp_path):
    """``1e-3`` is a float in a sweep file (YAML 1.2); a points file read by plain PyYAML got a string."""
    space = load_search_space(Path(__file__).parent.parent / "search_spaces" / "ring8.yaml")
    starts = Path(__file__).parent.parent / "search_spaces" / "starts" / "ring8.yaml"
    point = dict(space.with_initial_points(starts).initial_points[0])
    point.pop("optim.lr_g")
    short = tmp_path / "short.yaml"
    short.write_text("- {optim.lr_g: 2e-3, " + ", ".join(f"{k}: {v}" for k, v in point.items()) + "}\n")
    assert space.with_initial_points(short).initial_points[0]["optim.lr_g"] == 2e-3


def test_initial_points_from_the_command_line_are_checked_in_one_line(tmp_path):
    space = load_search_space(Path(__file__).parent.parent / "search_spaces" / "ring8.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {optim.lr_g: 1.0, optim.lr_d: 1.0e-3}\n")
    with pytest.raises(
        SearchSpaceError, match=r"^--initial-points .*bad\.yaml: point 0: optim\.lr_g=1\.0 is outside"
    ):
        space.with_initial_points(bad)
    with pytest.raises(SearchSpaceError, match=r"--initial-points .*nowhere\.yaml: no such file"):
        space.with_initial_points(tmp_path / "nowhere.yaml")
    bad.write_text("- {optim.lr_g: [\n")
    with pytest.raises(SearchSpaceError, match=r"^--initial-points .*bad\.yaml:\d+:\d+: not valid YAML"):
        space.with_initial_points(bad)
    bad.write_text("optim.lr_g: 1.0e-3\n")
    with pytest.raises(SearchSpaceError, match="expected a list"):
        space.with_initial_points(bad)
