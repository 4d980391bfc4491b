"""Augmentation for D: DiffAugment's transforms (differentiable, the identity when off), ADA's adaptive
probability (driven by synthetic logits) and its checkpoint, the config's refusals; lazy regularisation."""

from __future__ import annotations

import pytest
import torch

from gan_ray.augment import AdaptiveProbability, diff_augment, make_augmentation
from gan_ray.augment.diffaugment import cutout, translation
from gan_ray.config import is_known_key, validate_config
from gan_ray.errors import ConfigError
from gan_ray.training.checkpoint import load_checkpoint, save_checkpoint
from gan_ray.training.loop import build_training, run_loop


def test_diffaugment_is_differentiable_and_changes_every_sample():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    out = diff_augment(x)
    assert out.shape == x.shape
    assert all(not torch.equal(a, b) for a, b in zip(out.detach(), x.detach(), strict=True))
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_diffaugment_is_the_identity_at_p_zero_with_no_transforms_and_for_policy_none():
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(diff_augment(x, p=torch.tensor(0.0)), x)
    torch.testing.assert_close(diff_augment(x, transforms=()), x)
    assert make_augmentation("none") is None
    with pytest.raises(ValueError, match="unknown augmentation"):
        diff_augment(x, transforms=("rotate",))


def _shifted(x, dy, dx):
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    src = x[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    out[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)] = src
    return out


def test_translation_shifts_each_image_by_at_most_an_eighth_and_fills_with_zeros():
    torch.manual_seed(1)
    x = torch.rand(16, 2, 16, 16) + 1.0  # no zeros of its own
    out = translation(x)
    assert out.shape == x.shape
    for image, moved in zip(x, out, strict=True):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(torch.equal(moved, _shifted(image, dy, dx)) for dy, dx in shifts)


def test_cutout_zeroes_one_square_of_half_the_side_clipped_at_the_edges():
    torch.manual_seed(2)
    x = torch.ones(32, 3, 16, 16)
    out = cutout(x)
    assert out.shape == x.shape
    for image in out:
        zero = image[0] == 0
        assert torch.equal(zero, (image == 0).all(dim=0))  # all channels alike
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8
        assert zero.sum() == len(rows) * len(cols)  # one rectangle


def test_ada_p_rises_when_d_is_overconfident_on_reals_and_falls_otherwise():
    ada = AdaptiveProbability(initial=0.5, target=0.6, kimg=0.1, interval=4)  # 100 reals move p by 1
    confident = torch.full((10,), 3.0)  # sign mean 1 > 0.6
    for _ in range(3):
        ada.observe(confident)
    assert float(ada.p) == 0.5, "p moves only every 4 D-steps"
    ada.observe(confident)
    assert float(ada.p) == pytest.approx(0.9)  # 40 reals: +0.4
    unsure = torch.tensor([1.0, -1.0] * 5)  # sign mean 0 < 0.6
    for _ in range(4):
        ada.observe(unsure)
    assert float(ada.p) == pytest.approx(0.5)
    for _ in range(8):
        ada.observe(-confident)
    assert float(ada.p) == 0.0, "p stays in [0, 1]"


def _ada_config(tmp_path, **train):
    return validate_config(
        {
            "data": {"name": "digits", "augment": {"policy": "ada", "ada_kimg": 0.05, "ada_interval": 1}},
            "model": {"params": {"g_filters": 8, "d_filters": 8}},
            "train": {
                "steps": 4,
                "eval_every": 2,
                "batch_size": 16,
                "eval_samples": 16,
                "device": "cpu",
                **train,
            },
            "output_dir": str(tmp_path),
        }
    )


def test_ada_p_is_reported_at_every_eval_and_survives_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = _ada_config(tmp_path)
    training = build_training(cfg)
    reports = list(run_loop(training))
    assert [("ada_p" in r.metrics) for r in reports] == [True, True]
    training.step_fn.augment.adaptive.p.fill_(0.37)
    save_checkpoint(tmp_path, training.state_dict())
    again = build_training(cfg)
    assert float(again.step_fn.augment.adaptive.p) == 0.0
    again.load_state_dict(load_checkpoint(tmp_path))
    assert float(again.step_fn.augment.adaptive.p) == pytest.approx(0.37)


def test_the_config_refuses_augmentation_on_a_mixture_in_one_line_and_its_keys_are_searchable():
    with pytest.raises(ConfigError) as err:
        validate_config({"data": {"name": "ring8", "augment": {"policy": "diffaug"}}})
    assert "data.augment.policy 'diffaug' augments images" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="all off"):
        validate_config(
            {
                "data": {
                    "name": "digits",
                    "augment": {"policy": "ada", "color": False, "translation": False, "cutout": False},
                }
            }
        )
    for key in (
        "data.augment.policy",
        "data.augment.p",
        "data.augment.ada_target",
        "data.augment.cutout",
        "penalty.every",
    ):
        assert is_known_key(key), key
    cfg = validate_config({"data": {"name": "digits"}}).with_overrides({"data.augment.policy": "diffaug"})
    assert build_training(cfg.with_overrides({"train.device": "cpu"})).step_fn.augment is not None


def _first_d_loss(every: int | None, d_index: int = 0) -> float:
    cfg = {
        "data": {"name": "ring8"},
        "model": {"params": {"hidden_dim": 16, "hidden_layers": 2}},
        "train": {"batch_size": 32, "device": "cpu"},
    }
    if every is not None:
        cfg["penalty"] = {"name": "r1_r2", "weight": 0.5, "every": every}
    training = build_training(validate_config(cfg))
    step = training.step_fn
    step.d_index = d_index
    step.d_step()
    return float(step.metrics.sums[0])


def test_lazy_regularisation_adds_n_times_the_penalty_every_n_th_d_step_only():
    plain, eager, lazy = _first_d_loss(None), _first_d_loss(1), _first_d_loss(3)
    assert eager > plain
    assert lazy - plain == pytest.approx(3 * (eager - plain), rel=1e-4)
    assert _first_d_loss(3, d_index=1) == pytest.approx(plain, rel=1e-6)
    assert _first_d_loss(3, d_index=6) == pytest.approx(lazy, rel=1e-6)


def _ddp_rank(rank: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        cfg = validate_config(
            {
                "data": {
                    "name": "digits",
                    "image_size": 28,
                    "augment": {
                        "policy": "ada",
                        "p": 0.5,
                        "ada_target": 0.0,
                        "ada_kimg": 1.0,
                        "ada_interval": 1,
                    },
                },
                "model": {"name": "resnet", "params": {"width": 16, "group_size": 8}, "d_pac": 2},
                "loss": {"name": "rpgan"},
                "penalty": {"name": "r1_r2", "every": 2},
                "train": {"steps": 2, "eval_every": 2, "batch_size": 8, "eval_samples": 8, "device": "cpu"},
            }
        )
        training = build_training(
            cfg, torch.device("cpu"), rank=rank, world_size=2, wrap_model=DistributedDataParallel
        )
        (report,) = list(run_loop(training))
        torch.save(
            {"ada_p": report.metrics["ada_p"], "spread": report.metrics["loss_d_rank_spread"]},
            f"{out}.{rank}",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_the_resnet_trains_with_ada_and_lazy_r1_r2_and_every_rank_moves_p_alike(tmp_path):
    import torch.multiprocessing as mp
    from process_tree import free_ports

    (port,) = free_ports(1)
    out = str(tmp_path / "rank")
    mp.spawn(_ddp_rank, args=(port, out), nprocs=2)
    first, second = (torch.load(f"{out}.{r}") for r in (0, 1))
    assert first["spread"] > 0, "the ranks trained on different batches"
    assert first["ada_p"] == second["ada_p"] != 0.5, "p moved, and alike on both ranks (summed statistics)"
