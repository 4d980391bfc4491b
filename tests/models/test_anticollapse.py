"""PacGAN packing and the minibatch standard deviation: what D sees, checked against what they are."""

from __future__ import annotations

import math

import pytest
import torch

from gan_ray.config import validate_config
from gan_ray.errors import ConfigError
from gan_ray.losses import LOSSES
from gan_ray.models.anticollapse import MinibatchStd, pack
from gan_ray.models.dcgan import DCGANDiscriminator
from gan_ray.models.mlp import MLPDiscriminator
from gan_ray.penalties import gradient_penalty
from gan_ray.training.loop import build_training, run_loop
from gan_ray.training.networks import build_models


def test_a_pack_is_m_samples_side_by_side_and_the_remainder_is_left_out():
    x = torch.arange(14.0).view(7, 2)
    packed = pack(x, 3)
    assert packed.shape == (2, 6)
    torch.testing.assert_close(packed[1], torch.cat([x[3], x[4], x[5]]))
    assert pack(x, 1) is x
    images = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(pack(images, 2)[1], torch.cat([images[2], images[3]]))  # along channels
    with pytest.raises(ValueError, match="cannot make a pack of 4"):
        pack(x[:3], 4)


def test_minibatch_std_appends_each_samples_group_spread():
    # Groups of 2, strided: samples 0 and 2 (values 0 and 2: std 1), samples 1 and 3 (10 and 16: std 3).
    x = torch.tensor([[0.0], [10.0], [2.0], [16.0]])
    out = MinibatchStd(group_size=2)(x)
    assert out.shape == (4, 2)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    torch.testing.assert_close(out[:, 1], torch.tensor([1.0, 3.0, 1.0, 3.0]), atol=1e-4, rtol=0)
    # A collapsed batch (all samples alike) reads ~0; an image gets a constant map of it.
    same = MinibatchStd(4)(torch.ones(8, 3, 4, 4))
    assert same.shape == (8, 4, 4, 4) and same[:, 3].abs().max() < 1e-3
    varied = MinibatchStd(4)(torch.randn(8, 3, 4, 4))
    assert (varied[:, 3] > 0.5).all()
    # A batch the group size does not divide (6 by 4) is one group of all its samples.
    six = torch.tensor([[0.0], [10.0], [2.0], [16.0], [4.0], [6.0]])
    whole = six.std(unbiased=False).expand(6)
    torch.testing.assert_close(MinibatchStd(4)(six)[:, 1], whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "make",
    [lambda pac: MLPDiscriminator(2, 16, 2, pac=pac), lambda pac: DCGANDiscriminator(1, 8, 4, pac=pac)],
)
def test_a_packing_d_judges_each_pack_by_all_its_samples_and_never_mixes_real_and_fake(make):
    torch.manual_seed(0)
    d = make(2).eval()
    shape = (2,) if isinstance(d, MLPDiscriminator) else (1, 8, 8)
    real, fake = torch.randn(6, *shape), torch.randn(6, *shape)
    real_logits, fake_logits = d(real, fake)
    assert real_logits.shape == fake_logits.shape == (3,)
    torch.testing.assert_close(real_logits, d(real))
    torch.testing.assert_close(fake_logits, d(fake))
    moved = real.clone()
    moved[1] += 1.0  # the second sample of the first pack
    changed = d(moved) != d(real)
    assert changed.tolist() == [True, False, False]


def test_the_gradient_penalty_of_a_packing_d_bounds_the_norm_per_pack():
    # A linear D on packs of 2: its gradient for a pack is w whatever the input, so the penalty is
    # (||w|| - 1)^2, where a per-sample norm would see only half of w in each sample.
    w = torch.tensor([0.3, -0.4, 1.2, 0.0])

    def d(x):
        return pack(x, 2) @ w

    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    expected = (w.norm() - 1) ** 2
    torch.testing.assert_close(gradient_penalty(d, real, fake, pack=2), expected)
    per_sample = ((w[:2].norm() - 1) ** 2 + (w[2:].norm() - 1) ** 2) / 2
    torch.testing.assert_close(gradient_penalty(d, real, fake, pack=1), per_sample)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_with_packing_and_minibatch_std(loss):
    cfg = validate_config(
        {
            "name": "anticollapse",
            "model": {"hidden_dim": 32, "hidden_layers": 2, "d_pac": 3, "d_minibatch_std": 4},
            "loss": {"name": loss},
            "train": {"steps": 20, "eval_every": 10, "batch_size": 64, "eval_samples": 200},
        }
    )
    training = build_training(cfg)
    d_before = [p.detach().clone() for p in training.discriminator.parameters()]
    reports = list(run_loop(training))
    assert [r.step for r in reports] == [10, 20]
    assert all(math.isfinite(r.metrics[k]) for r in reports for k in ("loss_d", "loss_g"))
    assert any(
        not torch.equal(a, b) for a, b in zip(d_before, training.discriminator.parameters(), strict=True)
    )


def test_image_d_with_packing_and_minibatch_std_builds_for_every_size():
    for data in ({"name": "digits"}, {"name": "mnist", "root": "unused"}):
        cfg = validate_config({"data": data, "model": {"d_pac": 2, "d_minibatch_std": 4, "d_filters": 8}})
        _, d = build_models(cfg)
        side = cfg.data.info.sample_shape(cfg.data.image_size)
        assert d(torch.randn(8, *side)).shape == (4,)


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="model.d_minibatch_std: a minibatch-std group needs at least 2"):
        validate_config({"model": {"d_minibatch_std": 1}})
    with pytest.raises(ConfigError, match="model.d_pac 8 packs more samples than a batch holds"):
        validate_config({"model": {"d_pac": 8}, "train": {"batch_size": 4}})
    with pytest.raises(ConfigError, match="d_pac"):
        validate_config({"model": {"d_pac": 0}})
