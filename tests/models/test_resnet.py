"""The residual G and D (model.name: resnet): shapes at every side, D's contract, the fix-up start (every
block the identity), a few training steps with every loss family and R1+R2, and sides it cannot build."""

from __future__ import annotations

import math

import pytest
import torch

from gan_ray.config import validate_config
from gan_ray.errors import ConfigError, PluginError
from gan_ray.models import MODELS, build_resnet, check_contract
from gan_ray.models.resnet import RESNET_SIZES, ResidualBlock, stage_widths
from gan_ray.training.loop import build_training, run_loop

TINY = {"width": 16, "group_size": 8, "blocks_per_stage": 1}


@pytest.mark.parametrize("size", sorted(RESNET_SIZES))
@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_shapes_at_every_side_and_the_d_contract(size, channels):
    torch.manual_seed(0)
    shape = (channels, size, size)
    g, d = build_resnet(shape, 32, **TINY, d_pac=2, d_minibatch_std=2)
    z = torch.randn(4, 32)
    x = g(z)
    assert x.shape == (4, *shape) and x.abs().max() <= 1.0
    assert d(x).shape == (2,)  # packs of 2
    assert d.features(x).shape == (2, d.feature_dim)  # phi(x), for a projection head later
    check_contract("resnet", g, d, shape, 32, pac=2)


def test_widths_halve_above_32_px_and_stay_multiples_of_the_group():
    assert stage_widths(32, 96, 16) == [96, 96, 96, 96]
    assert stage_widths(256, 256, 16) == [256, 256, 256, 256, 128, 64, 32]
    assert stage_widths(28, 20, 8) == [24, 24, 24]  # rounded up to a multiple of 8


def test_every_block_starts_as_the_identity():
    block = ResidualBlock(16, 2, 8, total_blocks=4)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(block(x), x)
    # ...and learns: the zero-initialised projection gets a gradient.
    block(x).square().sum().backward()
    assert block.project.weight.grad.abs().sum() > 0


def test_the_spec_says_what_the_loop_reads():
    spec = MODELS["resnet"]
    assert spec.data == "image" and spec.channels_last and spec.bf16 and spec.cuda_graph_safe
    assert spec.image_sizes == (28, 32, 64, 128, 256)
    with pytest.raises(PluginError, match="side \\[28, 32, 64, 128, 256\\], not 8"):
        build_resnet((1, 8, 8), 16)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "digits"}, "model 'resnet' builds images of side [28, 32, 64, 128, 256], not 8"),
        ({"name": "digits", "image_size": 128}, None),
    ],
)
def test_config_validation_refuses_a_side_the_model_cannot_build_in_one_line(data, message):
    cfg = {"data": data, "model": {"name": "resnet"}}
    if message is None:
        assert validate_config(cfg).data.image_size == 128
        with pytest.raises(
            ConfigError, match="model 'dcgan' builds images of side \\[8, 28, 32, 64\\], not 128"
        ):
            validate_config({**cfg, "model": {"name": "dcgan"}})
        return
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def _config(loss: str, penalty: str, **extra):
    cfg = {
        "data": {"name": "digits", "image_size": 28},
        "model": {"name": "resnet", "params": TINY, **extra.pop("model", {})},
        "loss": {"name": loss},
        "penalty": {"name": penalty},
        "train": {"steps": 2, "eval_every": 2, "batch_size": 8, "eval_samples": 8, "device": "cpu"},
    }
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return validate_config(cfg)


@pytest.mark.parametrize(
    ("loss", "penalty"),
    [
        ("non_saturating", "r1_r2"),
        ("minimax", "r1_r2"),
        ("least_squares", "r1_r2"),
        ("hinge", "r1_r2"),
        ("wasserstein", "r1_r2"),
        ("wgan_gp", "none"),
        ("rpgan", "r1_r2"),
    ],
)
def test_a_few_steps_with_every_loss_family_give_finite_losses(loss, penalty):
    torch.manual_seed(0)
    training = build_training(_config(loss, penalty))
    (report,) = list(run_loop(training))
    for key in ("loss_d", "loss_g", "d_real", "d_fake"):
        assert math.isfinite(report.metrics[key]), (key, report.metrics)


def test_packing_minibatch_std_ema_and_augmentation_train_together():
    torch.manual_seed(0)
    cfg = _config(
        "rpgan",
        "r1_r2",
        model={"d_pac": 2, "d_minibatch_std": 2},
        train={"ema_decay": 0.9},
        data={"augment": {"policy": "ada", "p": 0.5}},
    )
    training = build_training(cfg)
    (report,) = list(run_loop(training))
    assert math.isfinite(report.metrics["loss_d"]) and 0.0 <= report.metrics["ada_p"] <= 1.0
    assert training.ema is not None and torch.isfinite(report.samples).all()
