"""G and D architectures: output shapes, logits of shape (N,), DCGAN initialisation, and which
models the config builds (MLP for 2-D mixtures, DCGAN for images, no BatchNorm in a WGAN-GP critic)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_ray.config import validate_config
from gan_ray.models import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from gan_ray.training.networks import build_generator, build_models


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _has(module: nn.Module, kind: type[nn.Module]) -> bool:
    return any(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize(("noise_dim", "out_dim", "hidden_dim", "layers"), [(8, 2, 16, 1), (4, 3, 32, 3)])
def test_mlp_shapes(noise_dim, out_dim, hidden_dim, layers):
    g = MLPGenerator(noise_dim, out_dim, hidden_dim, layers)
    d = MLPDiscriminator(out_dim, hidden_dim, layers)
    x = g(torch.randn(5, noise_dim))
    assert x.shape == (5, out_dim)
    logits = d(x)
    assert logits.shape == (5,)
    assert sum(isinstance(m, nn.Linear) for m in g.modules()) == layers + 1
    assert sum(isinstance(m, nn.Linear) for m in d.modules()) == layers + 1
    assert g.noise_dim == noise_dim


def test_mlp_discriminator_single_sample_keeps_batch_dim():
    assert MLPDiscriminator(2, 8, 2)(torch.randn(1, 2)).shape == (1,)


def test_mlp_generator_output_is_unbounded():
    g = MLPGenerator(2, 2, 8, 1)
    with torch.no_grad():
        g.net[-1].weight.zero_()
        g.net[-1].bias.fill_(10.0)  # the grid spans [-4, 4]: no tanh may squash the output
    assert (g(torch.zeros(3, 2)) == 10.0).all()


def test_mlp_dropout_only_when_requested():
    assert not _has(MLPDiscriminator(2, 16, 3, dropout=0.0), nn.Dropout)
    d = MLPDiscriminator(2, 16, 3, dropout=0.3)
    drops = [m for m in d.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 and all(m.p == 0.3 for m in drops)
    # Dropout acts in training mode only.
    x = torch.randn(64, 2)
    d.eval()
    torch.testing.assert_close(d(x), d(x))
    d.train()
    assert not torch.equal(d(x), d(x))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 32, 64])
def test_dcgan_shapes(channels, size):
    g = DCGANGenerator(noise_dim=16, channels=channels, image_size=size, filters=8)
    d = DCGANDiscriminator(channels=channels, image_size=size, filters=8)
    images = g(torch.randn(3, 16))
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (3,)
    # G accepts z as (N, noise_dim, 1, 1) as well.
    assert g(torch.randn(2, 16, 1, 1)).shape == (2, channels, size, size)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_dcgan_discriminator_norms(norm):
    d = DCGANDiscriminator(channels=1, image_size=28, filters=8, norm=norm)
    assert _has(d, nn.BatchNorm2d) == (norm == "batch")
    assert _has(d, nn.GroupNorm) == (norm == "layer")
    assert d(torch.randn(4, 1, 28, 28)).shape == (4,)
    # No normalisation on the first layer (as in the paper): it follows the first conv directly.
    assert isinstance(d.net[1], nn.LeakyReLU)


def test_dcgan_generator_saturates_into_tanh_range():
    g = DCGANGenerator(noise_dim=8, channels=1, image_size=8, filters=4)
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(100.0)
    images = g(torch.randn(4, 8))
    assert images.min() >= -1 and images.max() <= 1
    assert images.abs().max() > 0.99


@pytest.mark.parametrize("size", [7, 16, 48, 128])
def test_dcgan_unsupported_size(size):
    with pytest.raises(ValueError, match=str(size)) as err:
        DCGANGenerator(image_size=size)
    assert "64" in str(err.value)
    with pytest.raises(ValueError, match=str(size)):
        DCGANDiscriminator(image_size=size)


def test_dcgan_init():
    g = DCGANGenerator(noise_dim=100, channels=3, image_size=64, filters=64)
    first = g.net[0]
    assert isinstance(first, nn.ConvTranspose2d) and first.weight.numel() > 500_000
    assert first.weight.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert first.weight.std().item() == pytest.approx(0.02, rel=0.01)
    bn = g.net[1]
    assert isinstance(bn, nn.BatchNorm2d) and bn.weight.numel() == 512
    # N(1, 0.02): the mean within ~10 standard errors of 1, and not PyTorch's default of all ones.
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert 0.015 < bn.weight.std().item() < 0.025
    assert (bn.bias == 0).all()

    d = DCGANDiscriminator(channels=3, image_size=64, filters=64, norm="layer")
    big = max((m for m in d.modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.weight.numel())
    assert big.weight.numel() > 500_000
    assert big.weight.std().item() == pytest.approx(0.02, rel=0.01)
    gns = [m for m in d.modules() if isinstance(m, nn.GroupNorm)]
    weights = torch.cat([m.weight for m in gns])
    assert weights.mean().item() == pytest.approx(1.0, abs=0.01)
    assert weights.std().item() > 0.01


def _cfg(**sections):
    return validate_config(sections)


@pytest.mark.parametrize("dataset", ["ring8", "grid25"])
def test_build_models_mixture_is_mlp(dataset):
    cfg = _cfg(data={"name": dataset}, model={"hidden_dim": 32, "hidden_layers": 2})
    g, d = build_models(cfg)
    assert isinstance(g, MLPGenerator) and isinstance(d, MLPDiscriminator)
    z = torch.randn(6, cfg.noise_dim)
    x = g(z)
    assert x.shape == (6, 2)
    assert d(x).shape == (6,)
    assert sum(isinstance(m, nn.Linear) for m in g.modules()) == 3
    assert g.net[0].out_features == 32


def test_build_models_passes_dropout_to_mlp_d():
    _, d = build_models(_cfg(model={"d_dropout": 0.2}))
    assert _has(d, nn.Dropout)
    _, d = build_models(_cfg())
    assert not _has(d, nn.Dropout)


def test_build_models_digits_is_dcgan():
    cfg = _cfg(data={"name": "digits"}, model={"g_filters": 8, "d_filters": 8})
    g, d = build_models(cfg)
    assert isinstance(g, DCGANGenerator) and isinstance(d, DCGANDiscriminator)
    images = g(torch.randn(4, cfg.noise_dim))
    assert images.shape == (4, 1, 8, 8)
    assert d(images).shape == (4,)


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        ({"name": "digits", "image_size": 32}, (1, 32, 32)),
        ({"name": "mnist", "root": "/nonexistent"}, (1, 28, 28)),
        ({"name": "cifar10", "root": "/nonexistent"}, (3, 32, 32)),
    ],
)
def test_build_models_follow_the_data_shape_without_loading_it(data, shape):
    cfg = _cfg(data=data, model={"g_filters": 4, "d_filters": 4}, noise={"dim": 10})
    g, d = build_models(cfg)
    images = g(torch.randn(2, 10))
    assert images.shape == (2, *shape)
    assert d(images).shape == (2,)
    assert build_generator(cfg)(torch.randn(2, 10)).shape == (2, *shape)


def test_wgan_gp_gets_a_critic_without_batchnorm():
    # At 32x32 the DCGAN critic has hidden normalisation layers (at 8x8 it has none to choose).
    data, model = {"name": "digits", "image_size": 32}, {"g_filters": 4, "d_filters": 4}
    _, d = build_models(_cfg(data=data, model=model, loss={"name": "wgan_gp"}))
    assert not _has(d, nn.BatchNorm2d)
    assert _has(d, nn.GroupNorm)
    # The critic's output for one sample must not depend on the rest of the batch, in training mode too.
    d.train()
    x = torch.randn(5, 1, 32, 32)
    torch.testing.assert_close(d(x)[:2], d(x[:2]))
    # Other losses keep the paper's BatchNorm discriminator.
    _, d_hinge = build_models(_cfg(data=data, model=model, loss={"name": "hinge"}))
    assert _has(d_hinge, nn.BatchNorm2d)
