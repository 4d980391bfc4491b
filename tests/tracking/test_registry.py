"""The generator as an MLflow model and the champion alias: logging (fast, pickle-free), registering,
promotion only when strictly better, and loading back by alias, version, run or local folder, in
Python and through ``gan-ray sample`` (real tiny generators, a real SQLite store)."""

from __future__ import annotations

import io
import pickletools
import time
import zipfile

import mlflow.pytorch
import pytest
import torch
import yaml

from gan_ray.cli import main
from gan_ray.config import GanConfig, validate_config
from gan_ray.errors import TrackingUnavailableError
from gan_ray.sampling import LoadedGenerator, load_generator
from gan_ray.tracking.model import PROGRAM_DIR, download_model, log_generator
from gan_ray.tracking.registry import (
    CHAMPION,
    TAG_CONFIG,
    TAG_LOGGED_MODEL,
    TAG_METRIC_NAME,
    TAG_METRIC_VALUE,
    TAG_SOURCE_RUN,
    _parse_models_uri,
    champion_version,
    default_model_name,
    incomparable,
    register_champion,
    register_version,
    scoring_tags,
)
from gan_ray.tracking.run import MlflowRun
from gan_ray.tracking.store import make_client
from gan_ray.training.local import run_local as train
from gan_ray.training.loop import build_training, run_loop
from gan_ray.training.networks import build_generator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here trains tiny models (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def ring8(store, tmp_path_factory):
    """A ring8 MLP GAN trained 200 steps by the runner, tracked; its generator logged by the logger."""
    tmp = tmp_path_factory.mktemp("ring8")
    cfg = validate_config(
        {
            "name": "ring8-tiny",
            "output_dir": str(tmp / "outputs"),
            "model": {"hidden_dim": 32, "hidden_layers": 2},
            "train": {"steps": 200, "eval_every": 100, "batch_size": 64, "eval_samples": 500},
        }
    )
    logger = MlflowRun(store, "registry-tests", "ring8")
    result = train(cfg, observers=[logger], verbose=False)
    return logger.run_id, logger.model_uri, result


@pytest.fixture(scope="module")
def digits(store):
    """A small DCGAN (BatchNorm in G) trained 20 steps on digits; logged with log_generator directly.

    Trained with the core loop without an evaluator: the runner's FID would first train its
    feature classifier, which is another module's cost."""
    cfg = validate_config(
        {
            "name": "digits-tiny",
            "data": {"name": "digits"},
            "model": {"g_filters": 8, "d_filters": 8},
            "noise": {"dim": 16, "distribution": "uniform"},
            "train": {"steps": 20, "eval_every": 20, "batch_size": 32},
        }
    )
    training = build_training(cfg)
    for _ in run_loop(training):
        pass
    logger = MlflowRun(store, "registry-tests", "digits", log_model=False)
    logger.start(cfg)
    run_id = logger.run_id
    model_uri = log_generator(training.generator, cfg, run_id, store)
    return run_id, model_uri, cfg, training


def test_default_model_name():
    assert default_model_name("ring8-sweep") == "gan_ray-ring8-sweep"


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("models:/gan@champion", ("gan", None, "champion")),
        ("models:/gan/3", ("gan", "3", None)),
        ("models:/m-0123abcd", ("m-0123abcd", None, None)),
    ],
)
def test_parse_models_uri(uri, parsed):
    assert _parse_models_uri(uri) == parsed


@pytest.mark.parametrize("uri", ["models:/gan/Production", "models:/gan"])
def test_parse_models_uri_rejects_other_forms(uri):
    with pytest.raises(ValueError, match="models:/NAME@ALIAS"):
        _parse_models_uri(uri)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local path"):
        load_generator(str(tmp_path / "nothing-here"))
    with pytest.raises(FileNotFoundError, match="no generator in"):
        load_generator(tmp_path)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(FileNotFoundError, match="not a gan_ray checkpoint"):
        load_generator(tmp_path / "notes.txt")
    # Reading from a store that was never written fails at once, and does not create one.
    db = tmp_path / "never.db"
    with pytest.raises(TrackingUnavailableError, match="does not exist"):
        load_generator("models:/gan@champion", tracking_uri=f"sqlite:///{db}")
    assert not db.exists()


@pytest.mark.slow
def test_logged_model_layout_is_pickle_free_and_fast(store, digits, tmp_path, monkeypatch):
    run_id, model_uri, cfg, training = digits
    # The first log in a process also pays one-time imports (~1-3 s); inferring pip requirements
    # instead of listing them would cost 10+ s on every call.
    start = time.perf_counter()
    again = log_generator(training.generator, cfg, run_id, store)
    seconds = time.perf_counter() - start
    assert seconds < 5, f"log_generator took {seconds:.1f} s"
    register_version(make_client(store), again, "digits-plain")
    plain = make_client(store).get_model_version("digits-plain", "1")  # registered, but no alias
    assert plain.tags[TAG_LOGGED_MODEL] == again.removeprefix("models:/")
    assert champion_version("digits-plain", store) is None
    local = download_model(model_uri, tmp_path / "model", store)
    assert (local / "MLmodel").is_file() and (local / PROGRAM_DIR / "data" / "model.pt2").is_file()
    assert not list(local.rglob("*.pth")), "a pickled module (model.pth) was written"
    assert (local / "requirements.txt").read_text().startswith("mlflow")
    assert "torch==" in (local / "requirements.txt").read_text()

    # The state dict's pickle stream names only torch's tensor rebuilders and an OrderedDict.
    with zipfile.ZipFile(local / "extra_files" / "generator.pt") as archive:
        (pkl,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
        stream = archive.read(pkl)
    globals_used = {arg for op, arg, _ in pickletools.genops(io.BytesIO(stream)) if op.name == "GLOBAL"}
    assert globals_used and all(
        g.split()[0] in ("torch", "torch._utils", "collections") for g in globals_used
    )
    torch.load(local / "extra_files" / "generator.pt", weights_only=True)
    assert validate_config(yaml.safe_load((local / "extra_files" / "config.yaml").read_text())) == cfg

    # MLflow's own loader accepts the pt2 program only after checking it is pickle-free, and it
    # computes what gan_ray's rebuilt module computes, batch size dynamic.
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    exported = mlflow.pytorch.load_model(str(local))
    rebuilt = load_generator(local)
    z = torch.rand(5, 16) * 2 - 1
    assert exported(z).shape == (5, 1, 8, 8)
    torch.testing.assert_close(exported(z), rebuilt.module(z))
    trained = training.generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.module(z), trained(z))


@pytest.mark.slow
def test_champion_moves_only_to_a_strictly_better_model(store, ring8):
    run_id, model_uri, result = ring8
    cfg = result.config
    name = "champion-min"

    def register(value):
        return register_champion(model_uri, name, "mode_distance", value, "min", run_id, cfg, store)

    assert register(0.5) == (1, True)  # no champion yet: promoted
    assert register(0.3) == (2, True)  # better (lower)
    assert register(0.4) == (3, False)  # worse: a version, but no alias
    assert register(0.3) == (4, False)  # a tie does not move it
    assert register(float("nan")) == (5, False)
    held = champion_version(name, store)
    assert int(held.version) == 2
    assert held.tags[TAG_METRIC_NAME] == "mode_distance" and float(held.tags[TAG_METRIC_VALUE]) == 0.3
    assert held.tags[TAG_SOURCE_RUN] == run_id and held.run_id == run_id
    assert validate_config(yaml.safe_load(held.tags[TAG_CONFIG])) == cfg
    worse = make_client(store).get_model_version(name, "3")
    assert float(worse.tags[TAG_METRIC_VALUE]) == 0.4 and CHAMPION not in worse.aliases
    # The UI shows each version's score and where it came from, and the model how to load the champion.
    assert (
        worse.description.startswith("mode_distance = 0.4 (min; dataset ring8")
        and run_id in worse.description
    )
    assert f"models:/{name}@champion" in make_client(store).get_registered_model(name).description

    with pytest.raises(ValueError, match="ranked by 'mode_distance'"):
        register_champion(model_uri, name, "fid_classifier", 1.0, "min", run_id, cfg, store)


@pytest.mark.slow
def test_champion_moves_only_between_scores_measured_alike(store, digits):
    """Fréchet scores under two feature extractors (or on other sample counts) are not comparable: a
    better number measured otherwise registers a version but leaves the alias where it is."""
    run_id, model_uri, cfg, _ = digits
    name = "digits-extractors"

    def register(value, extractor, samples=20000):
        scoring = scoring_tags("digits", samples, extractor)
        return register_champion(
            model_uri, name, "fid_classifier", value, "min", run_id, cfg, store, scoring=scoring
        )

    assert register(5.0, "classifier-aaaa") == (1, True)
    assert register(1.0, "classifier-bbbb") == (2, False)  # better, but another extractor
    assert register(2.0, "classifier-aaaa", samples=2500) == (3, False)  # another sample count
    holder = champion_version(name, store)
    why = incomparable(holder, scoring_tags("digits", 20000, "classifier-bbbb"))
    assert why and "feature_extractor 'classifier-aaaa' vs 'classifier-bbbb'" in why
    assert register(4.0, "classifier-aaaa") == (4, True)  # measured alike and better
    assert champion_version(name, store).tags["gan_ray.feature_extractor"] == "classifier-aaaa"

    # A registry from before the metric was renamed ('fid', the same distance) keeps working.
    scoring = scoring_tags("digits", 20000, "classifier-aaaa")
    old = "digits-before-the-rename"
    assert register_champion(model_uri, old, "fid", 5.0, "min", run_id, cfg, store, scoring=scoring) == (
        1,
        True,
    )
    assert register_champion(
        model_uri, old, "fid_classifier", 4.0, "min", run_id, cfg, store, scoring=scoring
    ) == (2, True)


@pytest.mark.slow
def test_champion_in_max_mode(store, ring8):
    run_id, model_uri, result = ring8
    name = "champion-max"
    values = [(0.5, True), (0.4, False), (0.6, True)]
    for version, (value, promoted) in enumerate(values, start=1):
        got = register_champion(model_uri, name, "modes_covered", value, "max", run_id, result.config, store)
        assert got == (version, promoted)
    assert int(champion_version(name, store).version) == 3
    with pytest.raises(ValueError, match="'min' or 'max'"):
        register_champion(model_uri, name, "modes_covered", 1.0, "best", run_id, result.config, store)


def _check_sampling(generator: LoadedGenerator, shape: tuple[int, ...]) -> torch.Tensor:
    samples = generator.sample(16, seed=7)
    assert samples.shape == (16, *shape) and torch.isfinite(samples).all()
    assert generator.sample(16, seed=7).equal(samples)  # same seed: identical
    assert not generator.sample(16, seed=8).equal(samples)  # another seed: different
    assert generator.sample(1, seed=7).shape == (1, *shape)
    return samples


@pytest.mark.slow
def test_load_champion_by_alias_version_run_and_folder(store, ring8, digits, tmp_path):
    run_id, model_uri, result = ring8
    register_champion(model_uri, "ring8-gan", "mode_distance", 1.0, "min", run_id, result.config, store)
    champion = load_generator("models:/ring8-gan@champion", tracking_uri=store)
    assert champion.config == result.config
    samples = _check_sampling(champion, (2,))
    for uri in ("models:/ring8-gan/1", f"runs:/{run_id}/generator", model_uri, result.output):
        assert load_generator(uri, tracking_uri=store).sample(16, seed=7).equal(samples), uri
    with pytest.raises(FileNotFoundError, match="not a gan_ray checkpoint"):
        load_generator(f"runs:/{run_id}/config.yaml", tracking_uri=store)

    d_run, d_uri, d_cfg, _ = digits
    register_champion(d_uri, "digits-gan", "fid_classifier", 10.0, "min", d_run, d_cfg, store)
    images = _check_sampling(load_generator("models:/digits-gan@champion", tracking_uri=store), (1, 8, 8))
    assert images.min() >= -1 and images.max() <= 1

    # Without the state dict the logged pt2 program is used, with the same result.
    local = download_model(d_uri, tmp_path / "pt2-only", store)
    (local / "extra_files" / "generator.pt").unlink()
    assert load_generator(local).sample(16, seed=7).allclose(images, atol=1e-5)


@pytest.mark.slow
def test_sample_cli_writes_png(store, ring8, digits, tmp_path, capsys):
    run_id, model_uri, result = ring8
    register_champion(model_uri, "cli-gan", "mode_distance", 1.0, "min", run_id, result.config, store)
    out = tmp_path / "ring8.png"
    argv = ["sample", "--model", "models:/cli-gan@champion", "-n", "64", "--out", str(out), "--seed", "3"]
    assert main([*argv, "--tracking-uri", store]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert str(out) in capsys.readouterr().out

    grid = tmp_path / "digits.png"
    assert (
        main(["sample", "--model", digits[1], "-n", "16", "--out", str(grid), "--tracking-uri", store]) == 0
    )
    assert grid.read_bytes().startswith(PNG_MAGIC)

    assert main(["sample", "--model", "models:/no-such-gan@champion", "--tracking-uri", store]) == 2
    assert "no-such-gan" in capsys.readouterr().err


def test_loaded_generator_samples_and_saves(tmp_path):
    cfg = GanConfig()
    generator = LoadedGenerator(build_generator(cfg).eval(), cfg, torch.device("cpu"), "test")
    with pytest.raises(ValueError, match="positive"):
        generator.sample(0)
    assert generator.sample(3, seed=0).shape == (3, 2)
    path = generator.save(generator.sample(10, seed=0), tmp_path / "scatter.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_the_registry_is_the_one_mlflow_registry_uri_names(store, tmp_path_factory, monkeypatch):
    """Versions live in ``$MLFLOW_REGISTRY_URI`` where it is set, apart from the runs' tracking store."""
    import shutil

    from mlflow import MlflowClient

    from gan_ray.tracking.registry import champion_version

    registry_db = tmp_path_factory.mktemp("registry") / "registry.db"
    shutil.copy(tmp_path_factory.getbasetemp() / "mlflow-template.db", registry_db)
    registry = f"sqlite:///{registry_db}"
    apart = MlflowClient(tracking_uri=store, registry_uri=registry)
    apart.create_registered_model("t_apart")
    version = apart.create_model_version("t_apart", source="file:///nowhere/generator")
    apart.set_registered_model_alias("t_apart", "champion", version.version)

    assert champion_version("t_apart", store) is None  # not in the tracking store's own registry
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    found = champion_version("t_apart", store)
    assert found is not None and found.version == version.version
