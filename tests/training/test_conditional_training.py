"""Class-conditional training end to end on sklearn's labelled 8x8 digits: conditional dcgan and resnet
train through gan_ray.train, sample by class, resume from a checkpoint, and the logged pyfunc model
takes {"noise", "labels"}. Tiny models, a real SQLite MLflow store."""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow.pyfunc
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

import gan_ray
from gan_ray.cli import main
from gan_ray.config import validate_config
from gan_ray.errors import ConfigError
from gan_ray.tracking.model import download_model, log_generator
from gan_ray.tracking.store import make_client
from gan_ray.training.checkpoint import load_checkpoint, save_checkpoint, write_run_state
from gan_ray.training.loop import build_training, run_loop

MODELS = {
    "dcgan": ({}, {"g_filters": 8, "d_filters": 8}),
    "resnet": ({"image_size": 28}, {"width": 16, "group_size": 8}),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny models (see conftest.one_thread)."""


def _config(tmp_path, model: str, steps: int = 4, **extra) -> dict:
    data, params = MODELS[model]
    return {
        "name": f"cond-{model}",
        "output_dir": str(tmp_path),
        "data": {"name": "digits", **data},
        "model": {"name": model, "conditional": True, "params": params},
        "noise": {"dim": 16},
        "train": {"steps": steps, "eval_every": 2, "batch_size": 16, "eval_samples": 40, "device": "cpu"},
        **extra,
    }


@dataclass
class Trained:
    output: str
    history: list[dict]
    status: str = "completed"


def _resnet_in_the_core(folder) -> Trained:
    """The resnet through the training core (the loop gan_ray.train runs), without its evaluator: the
    28 px digits classifier that scores it would take minutes to train on a busy 2-CPU machine."""
    raw = _config(folder, "resnet", loss={"name": "rpgan"}, penalty={"name": "r1_r2"})
    raw["train"]["ema_decay"] = 0.9
    raw["model"]["d_minibatch_std"] = 2
    cfg = validate_config(raw)
    torch.manual_seed(0)
    training = build_training(cfg)
    history = [r.metrics for r in run_loop(training)]
    write_run_state(folder, training.state_dict(), training.sample(), cfg)
    return Trained(str(folder), history)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """dcgan (with R1) through gan_ray.train, and resnet (rpgan + R1/R2, EMA, minibatch std) through the
    core loop, both conditional, a few steps each."""
    raw = _config(tmp_path_factory.mktemp("dcgan"), "dcgan", penalty={"name": "r1"})
    dcgan = gan_ray.train(validate_config(raw), backend="local", tracking=False, verbose=False)
    return {"dcgan": dcgan, "resnet": _resnet_in_the_core(tmp_path_factory.mktemp("resnet"))}


@pytest.mark.parametrize("model", ["dcgan", "resnet"])
def test_a_conditional_model_trains_and_samples_by_class(trained, model):
    result = trained[model]
    assert result.status == "completed", result.metrics
    assert [h["step"] for h in result.history] == [2, 4]
    if model == "dcgan":  # scored by the digits classifier: how often it sees the class asked for
        assert 0.0 <= result.history[-1]["class_accuracy"] <= 1.0
        assert math.isfinite(result.history[-1]["intra_fid"]) and "intra_fid_9" in result.history[-1]
    g = gan_ray.load_generator(result.output)
    side = 8 if model == "dcgan" else 28
    assert g.num_classes == 10
    assert g.sample(5, seed=0, labels=[1, 2, 3, 4, 5]).shape == (5, 1, side, side)
    assert g.sample(12, seed=0).shape == (12, 1, side, side)  # the classes in turn
    # The class reaches the image: the same noise in two classes gives two different samples.
    zeros, ones = g.sample(8, seed=1, labels=[0] * 8), g.sample(8, seed=1, labels=[7] * 8)
    assert (zeros - ones).abs().mean() > 1e-3
    with pytest.raises(ConfigError, match="class 10 is out of range: this generator has 10 classes"):
        g.sample(3, labels=[1, 10, 2])
    with pytest.raises(ConfigError, match="3 labels for 4 samples"):
        g.sample(4, labels=[1, 2, 3])
    # The run's grid: one row a class (10 rows of 4: eval_samples 40).
    with Image.open(f"{result.output}/samples.png") as grid:
        assert grid.height > grid.width


def test_a_trained_conditional_g_draws_the_classes_apart(trained):
    """After training, samples of one class (the same noise in each) are more alike within a class than
    across classes: G uses the label, not just the noise."""
    g = gan_ray.load_generator(trained["dcgan"].output)
    per_class = torch.stack([g.sample(16, seed=2, labels=[k] * 16).flatten(1).mean(0) for k in range(10)])
    assert torch.cdist(per_class, per_class).max() > 0.05


def test_an_unconditional_generator_refuses_labels_and_the_cli_samples_a_class(tmp_path, trained, capsys):
    cfg = validate_config(
        {
            "data": {"name": "digits"},
            "model": {"params": {"g_filters": 8, "d_filters": 8}},
            "noise": {"dim": 16},
        }
    )
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "plain", build_training(cfg).state_dict())
    with pytest.raises(ConfigError, match="this generator is unconditional"):
        gan_ray.load_generator(tmp_path / "plain").sample(2, labels=[0, 1])
    out = tmp_path / "three.png"
    assert (
        main(["sample", "--model", trained["dcgan"].output, "-n", "4", "--class", "3", "--out", str(out)])
        == 0
    )
    assert out.is_file()
    assert main(["sample", "--model", trained["dcgan"].output, "--class", "11", "--out", str(out)]) != 0
    assert "class 11 is out of range" in capsys.readouterr().err
    # Without --class: the classes in turn, one column a class (20 of 8x8 digits: 10 wide, 2 high).
    grid = tmp_path / "all.png"
    assert main(["sample", "--model", trained["dcgan"].output, "-n", "20", "--out", str(grid)]) == 0
    assert "one column a class, 0 to 9" in capsys.readouterr().out
    with Image.open(grid) as image:
        assert image.width > 4 * image.height


def test_a_conditional_run_resumes_from_its_checkpoint(tmp_path):
    cfg = validate_config(_config(tmp_path, "dcgan", steps=2))
    first = gan_ray.train(cfg, backend="local", tracking=False, verbose=False)
    assert first.status == "completed"
    more = gan_ray.train(
        cfg, backend="local", tracking=False, verbose=False, resume=True, overrides={"train.steps": 4}
    )
    assert [h["step"] for h in more.history] == [2, 4]
    state = load_checkpoint(more.output)
    assert state["step"] == 4 and "classes.embed.weight" in state["generator"]
    assert "projection.embed.weight" in state["discriminator"]
    changed = validate_config(
        {**_config(tmp_path, "dcgan", steps=4), "model": {"name": "dcgan", "params": MODELS["dcgan"][1]}}
    )
    with pytest.raises(ValueError, match="model"):
        gan_ray.train(changed, backend="local", tracking=False, verbose=False, resume=True)


def test_the_logged_pyfunc_model_takes_noise_and_labels(store, trained, tmp_path):
    g = gan_ray.load_generator(trained["dcgan"].output)
    client = make_client(store)
    run = client.create_run(client.create_experiment("cond-pyfunc"))
    uri = log_generator(g.module, g.config, run.info.run_id, store)
    local = download_model(uri, tmp_path / "model", store)
    model = mlflow.pyfunc.load_model(str(local))
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == ["noise", "labels"]
    noise = np.random.default_rng(0).standard_normal((6, 16)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 9], dtype=np.int64)
    out = model.predict({"noise": noise, "labels": labels})
    assert out.shape == (6, 1, 8, 8)
    expected = g.generate(torch.from_numpy(noise), torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(MlflowException, match="got class 10"):
        model.predict({"noise": noise, "labels": np.array([0, 1, 2, 3, 4, 10], dtype=np.int64)})
    with pytest.raises(MlflowException, match=r"missing inputs \['labels'\]"):  # MLflow's schema check
        model.predict({"noise": noise})
    # The registered model rebuilt by gan_ray from its weights samples by class too.
    again = gan_ray.load_generator(local)
    assert again.num_classes == 10
    np.testing.assert_allclose(
        again.generate(torch.from_numpy(noise), torch.from_numpy(labels)).numpy(), out, atol=1e-5
    )


def _ddp_rank(rank: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        raw = _config(out, "dcgan", steps=2, penalty={"name": "r1"})
        raw["data"]["augment"] = {"policy": "diffaug"}
        cfg = validate_config(raw)
        training = build_training(
            cfg, torch.device("cpu"), rank=rank, world_size=2, wrap_model=DistributedDataParallel
        )
        before = training.generator.module.classes.embed.weight.detach().clone()
        (report,) = list(run_loop(training))
        after = training.generator.module.classes.embed.weight.detach().clone()
        projection = training.discriminator.module.projection.embed.weight.detach().clone()
        spread = report.metrics["loss_d_rank_spread"]
        torch.save(
            {"moved": float((after - before).abs().max()), "g": after, "d": projection, "spread": spread},
            f"{out}.{rank}",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_the_class_embeddings_train_alike_on_both_ranks(tmp_path):
    """Two gloo ranks, each on its own shard of labelled digits: G's class embedding and D's projection
    move, and stay equal across ranks (DDP averages their gradients like any other weight's)."""
    import torch.multiprocessing as mp
    from process_tree import free_ports

    (port,) = free_ports(1)
    out = str(tmp_path / "rank")
    mp.spawn(_ddp_rank, args=(port, out), nprocs=2)
    first, second = (torch.load(f"{out}.{r}") for r in (0, 1))
    assert first["spread"] > 0, "the ranks trained on different batches"
    assert first["moved"] > 0
    torch.testing.assert_close(first["g"], second["g"])
    torch.testing.assert_close(first["d"], second["d"])


@pytest.mark.slow
def test_export_onnx_of_a_conditional_generator_takes_the_class_as_the_last_column(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "c.onnx"
    gan_ray.export(trained["dcgan"].output, onnx=out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.shape[1] == 17  # noise dim 16 + the class
    g = gan_ray.load_generator(trained["dcgan"].output)
    noise = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 3, 7, 9])
    (samples,) = session.run(None, {given.name: torch.cat([noise, labels[:, None].float()], 1).numpy()})
    np.testing.assert_allclose(samples, g.generate(noise, labels).numpy(), rtol=1e-4, atol=1e-5)


def test_the_console_line_shows_the_class_accuracy_and_adas_p():
    from gan_ray.training.local import format_report

    base = {"step": 4, "loss_d": 1.0, "loss_g": 0.5, "d_real": 0.5, "d_fake": 0.4, "images_per_s": 10.0}
    plain = format_report({**base, "fid_classifier": 50.0, "classes_covered": 10, "class_reverse_kl": 0.1}, 8)
    assert "class acc" not in plain and "ada_p" not in plain
    line = format_report(
        {**base, "fid_classifier": 50.0, "classes_covered": 10, "class_reverse_kl": 0.1}
        | {"class_accuracy": 0.625, "intra_fid": 80.5, "ada_p": 0.125},
        8,
    )
    assert "class acc 0.625 intra_fid 80.500" in line and "ada_p 0.125" in line
