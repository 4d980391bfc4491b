"""Class-conditional models (model.conditional): G takes labels, D is a projection discriminator, the
contract is checked with labels, bad combinations are refused in one line at config validation."""

from __future__ import annotations

import pytest
import torch

from gan_ray.config import validate_config
from gan_ray.data.labelled import LabelledSource
from gan_ray.errors import PluginError
from gan_ray.models import build_dcgan, build_resnet, check_contract
from gan_ray.training.networks import build_models
from gan_ray.visualize import class_rows


@pytest.mark.parametrize(
    ("builder", "shape", "params"),
    [
        (build_dcgan, (1, 8, 8), {"g_filters": 8, "d_filters": 8}),
        (build_resnet, (1, 28, 28), {"width": 16, "group_size": 8, "d_minibatch_std": 2}),
    ],
)
def test_conditional_g_and_projection_d_take_labels_and_keep_their_contract(builder, shape, params):
    torch.manual_seed(0)
    g, d = builder(shape, 16, 10, True, **params)
    check_contract("c", g, d, shape, 16, num_classes=10)
    z, y = torch.randn(6, 16), torch.arange(6)
    x = g(z, y)
    assert x.shape == (6, *shape)
    with torch.no_grad():
        d.projection.embed.weight.normal_()  # a trained-looking projection: the class must move the logit
    assert d(x, labels=y).shape == (6,)
    assert not torch.allclose(d(x, labels=y), d(x, labels=(y + 1) % 10))
    with pytest.raises(ValueError, match="class-conditional"):
        g(z)
    with pytest.raises(ValueError, match="class-conditional"):
        d(x)


def test_an_unconditional_model_refuses_labels_and_a_conditional_one_refuses_packs():
    g, d = build_dcgan((1, 8, 8), 16, 0, False, g_filters=8, d_filters=8)
    with pytest.raises(ValueError, match="unconditional"):
        d(torch.randn(2, 1, 8, 8), labels=torch.tensor([0, 1]))
    with pytest.raises(PluginError, match="d_pac 2 with 10 classes"):
        build_resnet((1, 28, 28), 16, 10, False, width=16, group_size=8, d_pac=2)


def _config(**model):
    return {"data": {"name": "digits"}, "model": {"params": {"g_filters": 8, "d_filters": 8}, **model}}


def test_the_config_refuses_conditional_without_labels_or_with_packs_in_one_line():
    with pytest.raises(ValueError) as err:
        validate_config({"data": {"name": "ring8"}, "model": {"conditional": True}})
    line = str(err.value).strip().splitlines()[-1]
    assert "model.conditional true needs labels; dataset 'ring8' has none" in line and "allowed" in line
    with pytest.raises(ValueError, match="model.d_pac 2 with model.conditional true"):
        validate_config(_config(conditional=True, d_pac=2))
    cfg = validate_config(_config(conditional=True))
    assert cfg.num_classes == 10 and validate_config(_config()).num_classes == 0
    g, d = build_models(cfg)
    assert g.num_classes == 10 and d.projection is not None


def test_a_labelled_source_draws_images_with_their_own_labels():
    images = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2).contiguous()
    source = LabelledSource(images, torch.tensor([0, 1, 2, 3, 4]) * 2)
    x, y = source.sample_labelled(64)
    assert torch.equal(x[:, 0, 0, 0].long() * 2, y)
    assert set(source.sample_labels(200).tolist()) == {0, 2, 4, 6, 8}


def test_the_class_grid_puts_one_class_a_row():
    labels = torch.arange(30) % 3  # the eval labels: classes in turn
    grid, per_row = class_rows(labels.float(), 3, per_class=4)
    assert per_row == 4 and grid.view(3, 4).tolist() == [[0] * 4, [1] * 4, [2] * 4]
