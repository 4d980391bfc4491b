"""The latent samplers: shape, device and dtype, support, moments against closed forms, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from gan_ray.noise import NOISE, TRUNCATION, get_noise

ALL = sorted(NOISE)
N_BIG = 200_000  # 4 sigma of a unit-variance mean estimate is ~0.009


def _draw(name: str, n: int = N_BIG, dim: int = 4, seed: int = 0, **kwargs) -> torch.Tensor:
    return get_noise(name)(n, dim, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_registry():
    assert set(NOISE) == {"normal", "uniform", "truncated_normal", "hypersphere", "bernoulli"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("n", "dim"), [(1, 1), (5, 3), (64, 100)])
def test_shape_dtype_device(name, n, dim):
    z = get_noise(name)(n, dim)
    assert z.shape == (n, dim)
    assert z.dtype == torch.float32
    assert z.device.type == "cpu"
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("name", ALL)
def test_samples_are_drawn_on_the_requested_device(name):
    # The meta device allocates nothing, yet proves the device argument reaches the allocation.
    z = get_noise(name)(7, 3, device="meta")
    assert z.device.type == "meta"
    assert z.shape == (7, 3) and z.dtype == torch.float32


def test_uniform_support_and_moments():
    z = _draw("uniform")
    assert z.min() >= -1 and z.max() <= 1
    assert z.min() < -0.999 and z.max() > 0.999  # fills the cube, not a sub-interval
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)
    assert z.var().item() == pytest.approx(1 / 3, abs=0.005)  # (b - a)^2 / 12 with b - a = 2


def test_normal_moments():
    z = _draw("normal")
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)
    assert z.var().item() == pytest.approx(1.0, abs=0.01)
    # Coordinates are independent.
    corr = torch.corrcoef(z.T)
    torch.testing.assert_close(corr, torch.eye(4), atol=0.01, rtol=0)


def _truncated_normal_variance(a: float) -> float:
    """Var of N(0, 1) conditioned on [-a, a]: 1 - 2 a phi(a) / (2 Phi(a) - 1)."""
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(a / math.sqrt(2))  # 2 Phi(a) - 1
    return 1 - 2 * a * phi / mass


def test_truncated_normal_support_and_moments():
    assert TRUNCATION == 2.0
    z = _draw("truncated_normal")
    assert z.min() >= -2 and z.max() <= 2
    assert z.min() < -1.99 and z.max() > 1.99  # truncated at 2, not earlier
    expected_var = _truncated_normal_variance(2.0)
    assert expected_var == pytest.approx(0.7737, abs=1e-4)
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)
    assert z.var().item() == pytest.approx(expected_var, abs=0.008)
    # The shape inside [-2, 2] is the normal one: P(|z| < 1 | |z| < 2) = erf(1/sqrt2) / erf(2/sqrt2).
    inner = (z.abs() < 1).double().mean().item()
    assert inner == pytest.approx(math.erf(1 / math.sqrt(2)) / math.erf(2 / math.sqrt(2)), abs=0.005)


@pytest.mark.parametrize("dim", [1, 2, 16, 128])
def test_hypersphere_norms(dim):
    z = _draw("hypersphere", n=2000, dim=dim)
    torch.testing.assert_close(z.norm(dim=1), torch.full((2000,), math.sqrt(dim)), rtol=1e-5, atol=1e-5)


def test_hypersphere_is_uniform_in_direction():
    z = _draw("hypersphere", dim=3)
    assert z.mean(0).abs().max().item() < 0.01
    # On the sphere of radius sqrt(dim) every coordinate has second moment 1 (as for N(0, I)).
    torch.testing.assert_close(z.square().mean(0), torch.ones(3), atol=0.01, rtol=0)


def test_bernoulli_support_and_moments():
    z = _draw("bernoulli")
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)
    assert (z == 1).double().mean().item() == pytest.approx(0.5, abs=0.005)


@pytest.mark.parametrize("name", ALL)
def test_seeded_generator_reproduces(name):
    a = _draw(name, n=100, dim=8, seed=123)
    b = _draw(name, n=100, dim=8, seed=123)
    c = _draw(name, n=100, dim=8, seed=124)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ALL)
def test_generator_is_used_not_the_global_rng(name):
    torch.manual_seed(0)
    a = _draw(name, n=50, dim=4, seed=5)
    torch.manual_seed(1)
    b = _draw(name, n=50, dim=4, seed=5)
    assert torch.equal(a, b)


def test_get_noise_returns_the_registered_sampler():
    for name in ALL:
        assert get_noise(name) is NOISE[name]


def test_get_noise_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="'gaussian'") as err:
        get_noise("gaussian")
    for name in ALL:
        assert name in str(err.value)
