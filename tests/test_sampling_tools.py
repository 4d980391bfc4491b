"""Sampling tools on a loaded generator: truncation (z x psi, normal noise only) and latent interpolation
grids (slerp / lerp), through the API and ``gan-ray sample``."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from gan_ray.cli import main
from gan_ray.config import validate_config
from gan_ray.sampling import lerp, load_generator, slerp
from gan_ray.training.checkpoint import save_checkpoint
from gan_ray.training.loop import build_training


def _saved(folder, noise="normal"):
    cfg = validate_config(
        {
            "data": {"name": "digits"},
            "model": {"params": {"g_filters": 8, "d_filters": 8}},
            "noise": {"distribution": noise, "dim": 16},
            "train": {"device": "cpu", "batch_size": 8},
        }
    )
    torch.manual_seed(0)
    save_checkpoint(folder, build_training(cfg).state_dict())
    return folder


def test_truncation_scales_normal_noise_and_refuses_other_noises_in_one_line(tmp_path):
    g = load_generator(_saved(tmp_path / "normal"))
    plain = g.sample(6, seed=3)
    torch.testing.assert_close(g.sample(6, seed=3, truncation=1.0), plain)
    half = g.sample(6, seed=3, truncation=0.5)
    assert not torch.allclose(half, plain)
    at_mean = g.sample(6, seed=3, truncation=0.0)
    torch.testing.assert_close(at_mean, at_mean[:1].expand_as(at_mean))  # every sample is G(0)
    uniform = load_generator(_saved(tmp_path / "uniform", noise="uniform"))
    with pytest.raises(ValueError, match="noise.distribution 'uniform'") as err:
        uniform.sample(4, truncation=0.7)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=">= 0"):
        g.sample(4, truncation=-1.0)


def test_slerp_and_lerp_join_the_ends_and_slerp_keeps_the_norm():
    z0, z1 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    t = torch.linspace(0, 1, 5)
    for path in (slerp, lerp):
        walk = path(z0, z1, t)
        assert walk.shape == (1, 5, 2)
        torch.testing.assert_close(walk[0, 0], z0[0])
        torch.testing.assert_close(walk[0, -1], z1[0])
    torch.testing.assert_close(slerp(z0, z1, t).norm(dim=2), torch.full((1, 5), 3.0))
    assert lerp(z0, z1, t)[0, 2].norm() < 3.0  # the chord cuts inside the sphere
    torch.testing.assert_close(slerp(z0, z0, t)[0, 3], z0[0])  # parallel ends: no division by zero


def test_an_interpolation_grid_has_k_rows_from_one_sample_to_another(tmp_path):
    g = load_generator(_saved(tmp_path / "m"))
    grid = g.interpolate(3, steps=4, seed=1)
    assert grid.shape == (12, 1, 8, 8)
    rows = grid.view(3, 4, 1, 8, 8)
    assert all(not torch.allclose(r[0], r[-1]) for r in rows)
    with pytest.raises(ValueError, match="steps >= 2"):
        g.interpolate(2, steps=1)


def test_gan_ray_sample_writes_a_truncated_sample_and_an_interpolation_grid(tmp_path, capsys):
    model = _saved(tmp_path / "m")
    out = tmp_path / "grid.png"
    assert (
        main(["sample", "--model", str(model), "--interpolate", "3", "--steps", "5", "--out", str(out)]) == 0
    )
    assert Image.open(out).size == (5 * 10 + 2, 3 * 10 + 2)  # 8 px images, 2 px padding, 5 a row
    assert "interpolation grid (3 x 5, slerp)" in capsys.readouterr().out
    assert (
        main(["sample", "--model", str(model), "--truncation", "0.7", "--out", str(tmp_path / "t.png")]) == 0
    )
    uniform = _saved(tmp_path / "u", noise="uniform")
    assert (
        main(["sample", "--model", str(uniform), "--truncation", "0.7", "--out", str(tmp_path / "x.png")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("gan-ray: error: truncation") and "\n" not in err
