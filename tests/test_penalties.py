"""The gradient penalties against their closed forms on a linear D, whose input gradient is its weight
vector w for every input: gp is (||w|| - 1)^2, R1 and R2 are ||w||^2 (gamma/2 ||w||^2 as the weighted term)."""

from __future__ import annotations

import math

import pytest
import torch

from gan_ray.penalties import (
    PENALTIES,
    PENALTY_NAMES,
    Penalty,
    default_weight,
    gradient_penalty,
    squared_gradient_norm,
)


def _linear_critic(w: torch.Tensor):
    return lambda x: x.flatten(1) @ w + 0.3  # the bias must not matter


def test_gradient_penalty_zero_for_unit_norm_linear_critic():
    w = torch.tensor([0.6, -0.8], dtype=torch.float64)  # ||w|| = 1
    real, fake = torch.randn(32, 2, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    assert gradient_penalty(_linear_critic(w), real, fake).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(2,), (1, 2, 2)])
def test_gradient_penalty_of_linear_critic_is_norm_minus_one_squared(shape):
    dim = math.prod(shape)
    w = torch.arange(1, dim + 1, dtype=torch.float64) * 0.7
    real, fake = torch.randn(16, *shape, dtype=torch.float64), torch.randn(16, *shape, dtype=torch.float64)
    expected = (w.norm().item() - 1) ** 2
    assert gradient_penalty(_linear_critic(w), real, fake).item() == pytest.approx(expected, rel=1e-12)


def test_gradient_penalty_is_differentiable_in_the_critic():
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the penalty must be trainable (create_graph=True).
    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    real, fake = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    gradient_penalty(_linear_critic(w), real, fake).backward()
    expected = 2 * (5.0 - 1.0) * torch.tensor([3.0, 4.0], dtype=torch.float64) / 5.0
    torch.testing.assert_close(w.grad, expected)


def test_gradient_penalty_uses_per_sample_interpolates():
    # D(x) = ||x||^2 / 2 has grad x, so the penalty is mean (||x_hat|| - 1)^2 at the interpolates,
    # x_hat = eps * real + (1 - eps) * fake with one eps ~ U[0, 1] per sample from the given generator.
    real, fake = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64) * 3
    critic = lambda x: 0.5 * x.square().sum(1)  # noqa: E731
    got = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    eps = torch.rand((10, 1), dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x_hat = eps * real + (1 - eps) * fake
    expected = (x_hat.norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(got, expected)


def test_gradient_penalty_does_not_backpropagate_into_the_generator():
    # A critic whose input gradient depends on x_hat, so the penalty would reach `fake` if not detached.
    w = torch.tensor([2.0, -1.0], requires_grad=True)
    fake = torch.randn(4, 2, requires_grad=True)
    gradient_penalty(lambda x: (x @ w).square(), torch.randn(4, 2), fake).backward()
    assert fake.grad is None
    assert w.grad is not None and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("shape", [(2,), (1, 2, 2)])
def test_r1_and_r2_of_a_linear_d_are_the_squared_norm_of_its_weights(shape):
    """||grad_x D(x)||^2 = ||w||^2 at every input, real or fake, whatever the bias."""
    dim = math.prod(shape)
    w = torch.arange(1, dim + 1, dtype=torch.float64) * 0.7
    real, fake = (
        torch.randn(16, *shape, dtype=torch.float64),
        torch.randn(16, *shape, dtype=torch.float64) * 5,
    )
    norm2 = w.square().sum().item()
    assert squared_gradient_norm(_linear_critic(w), real).item() == pytest.approx(norm2, rel=1e-12)
    gamma = 3.0
    for name, expected in (("r1", norm2 / 2), ("r2", norm2 / 2), ("r1_r2", norm2)):
        p = Penalty(name, gamma)
        assert p.term(_linear_critic(w), real, fake).item() == pytest.approx(expected, rel=1e-12), name
        assert p(_linear_critic(w), real, fake).item() == pytest.approx(gamma * expected, rel=1e-12), name


def test_r1_reads_the_real_batch_and_r2_the_fake_one():
    # D(x) = ||x||^2 / 2 has grad x: R1 = mean ||real||^2, R2 = mean ||fake||^2.
    critic = lambda x: 0.5 * x.square().sum(1)  # noqa: E731
    real, fake = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64) * 3
    r1 = Penalty("r1", 2.0)(critic, real, fake)  # gamma/2 * R1 with gamma 2: R1 itself
    r2 = Penalty("r2", 2.0)(critic, real, fake)
    torch.testing.assert_close(r1, real.square().sum(1).mean())
    torch.testing.assert_close(r2, fake.square().sum(1).mean())
    torch.testing.assert_close(Penalty("r1_r2", 2.0)(critic, real, fake), r1 + r2)


def test_zero_centred_penalties_train_d_and_never_g():
    # d/dw of ||w||^2 / 2 is w: trainable in D's weights (create_graph), and nothing reaches the samples.
    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    real = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    fake = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    Penalty("r1_r2", 1.0)(_linear_critic(w), real, fake).backward()
    torch.testing.assert_close(w.grad, 2 * w.detach())
    assert real.grad is None and fake.grad is None


def test_r1_of_a_packing_d_is_taken_per_pack():
    """A D over packs of 2 sees one input of twice the size: the squared norm is summed over the pack."""
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)  # weights over (sample 1, sample 2) of a pack
    d = lambda x: x.reshape(x.shape[0] // 2, -1) @ w  # noqa: E731
    real = torch.randn(6, 2, dtype=torch.float64)
    assert squared_gradient_norm(d, real, pack=2).item() == pytest.approx(30.0, rel=1e-12)


def test_the_registry_and_its_errors():
    assert PENALTY_NAMES == ("none", "gp", "r1", "r2", "r1_r2") and set(PENALTIES) == set(PENALTY_NAMES[1:])
    assert default_weight("gp") == 10.0 and default_weight("r1_r2") == 1.0
    with pytest.raises(ValueError, match="'r3'.*r1_r2"):
        Penalty("r3", 1.0)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        Penalty("r1", -1.0)
