"""Each GAN loss against its closed form, the saturation gap between minimax and non-saturating G,
numerical stability at extreme logits, and the registry's errors (the penalties: tests/test_penalties.py)."""

from __future__ import annotations

import math

import pytest
import torch

from gan_ray.losses import LOSSES, get_loss, loss_param_names

# Moderate logits, where float64 math on probabilities is exact enough to serve as the reference.
REAL = [2.0, -0.5, 1.3, 0.0]
FAKE = [-1.5, 0.7, -3.0, 0.25]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _expected(name: str) -> tuple[float, float]:
    """(d_loss, g_loss) from the papers' definitions, written on probabilities D = sigmoid(logit)."""
    if name in ("minimax", "non_saturating"):
        d = -_mean(math.log(_sigmoid(r)) for r in REAL) - _mean(math.log(1 - _sigmoid(f)) for f in FAKE)
        if name == "minimax":
            g = _mean(math.log(1 - _sigmoid(f)) for f in FAKE)  # G minimises log(1 - D(G(z)))
        else:
            g = -_mean(math.log(_sigmoid(f)) for f in FAKE)  # G maximises log D(G(z))
        return d, g
    if name == "least_squares":
        d = _mean((r - 1) ** 2 for r in REAL) + _mean(f**2 for f in FAKE)
        return d, _mean((f - 1) ** 2 for f in FAKE)
    if name in ("wasserstein", "wgan_gp"):
        return _mean(FAKE) - _mean(REAL), -_mean(FAKE)
    if name == "hinge":
        d = _mean(max(0.0, 1 - r) for r in REAL) + _mean(max(0.0, 1 + f) for f in FAKE)
        return d, -_mean(FAKE)
    if name == "rpgan":  # D: -log sigmoid(D(x_i) - D(G(z_i))), paired; G: the same with the roles swapped
        d = -_mean(math.log(_sigmoid(r - f)) for r, f in zip(REAL, FAKE, strict=True))
        g = -_mean(math.log(_sigmoid(f - r)) for r, f in zip(REAL, FAKE, strict=True))
        return d, g
    raise AssertionError(name)


ALL = ["minimax", "non_saturating", "least_squares", "wasserstein", "hinge", "wgan_gp", "rpgan"]
#: The losses whose G ignores D's logits on real data.
G_FAKE_ONLY = [n for n in ALL if n != "rpgan"]


def test_registry_holds_exactly_the_documented_losses():
    assert sorted(LOSSES) == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_loss_matches_closed_form(name):
    loss = get_loss(name)
    d_expected, g_expected = _expected(name)
    d = loss.d_loss(_t(REAL), _t(FAKE))
    g = loss.g_loss(_t(REAL), _t(FAKE))
    assert d.shape == () and g.shape == ()
    assert d.item() == pytest.approx(d_expected, rel=1e-12, abs=1e-12)
    assert g.item() == pytest.approx(g_expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_column_logits_give_the_same_loss(name):
    loss = get_loss(name)
    flat = loss.d_loss(_t(REAL), _t(FAKE)), loss.g_loss(_t(REAL), _t(FAKE))
    col = loss.d_loss(_t(REAL)[:, None], _t(FAKE)[:, None]), loss.g_loss(_t(REAL)[:, None], _t(FAKE)[:, None])
    torch.testing.assert_close(col, flat)


def test_minimax_and_non_saturating_differ_only_in_g():
    mm, ns = get_loss("minimax"), get_loss("non_saturating")
    torch.testing.assert_close(mm.d_loss(_t(REAL), _t(FAKE)), ns.d_loss(_t(REAL), _t(FAKE)))
    assert not torch.allclose(mm.g_loss(None, _t(FAKE)), ns.g_loss(None, _t(FAKE)))


@pytest.mark.parametrize("name", G_FAKE_ONLY)
def test_g_losses_that_ignore_the_real_logits_do_so(name):
    """The step skips D's forward on real data in the G-step for these: their G loss must not need it."""
    loss = get_loss(name)
    assert not loss.g_needs_real
    torch.testing.assert_close(loss.g_loss(None, _t(FAKE)), loss.g_loss(_t(REAL), _t(FAKE)))
    torch.testing.assert_close(loss.g_loss(None, _t(FAKE)), loss.g_loss(-_t(REAL), _t(FAKE)))


def test_rpgan_pairs_real_and_fake_per_sample():
    rp = get_loss("rpgan")
    assert rp.g_needs_real and not rp.has_probabilities
    # A shift of all of D's scores changes nothing: only the per-pair differences count.
    torch.testing.assert_close(rp.d_loss(_t(REAL) + 5, _t(FAKE) + 5), rp.d_loss(_t(REAL), _t(FAKE)))
    torch.testing.assert_close(rp.g_loss(_t(REAL) - 3, _t(FAKE) - 3), rp.g_loss(_t(REAL), _t(FAKE)))
    # Pairing is by position, not a mean over all pairs: permuting the fakes changes the loss.
    assert not torch.allclose(rp.d_loss(_t(REAL), _t(FAKE).flip(0)), rp.d_loss(_t(REAL), _t(FAKE)))
    # G's gradient reaches the real logits too (through D, not into G: the step freezes D's weights).
    real, fake = _t(REAL).requires_grad_(True), _t(FAKE).requires_grad_(True)
    rp.g_loss(real, fake).backward()
    torch.testing.assert_close(real.grad, -fake.grad)
    with pytest.raises(ValueError, match="real batch"):
        rp.g_loss(None, _t(FAKE))
    with pytest.raises(ValueError, match="pairs"):
        rp.d_loss(_t(REAL), _t(FAKE)[:3])


def _g_grad(name: str, fake: torch.Tensor) -> torch.Tensor:
    fake = fake.clone().requires_grad_(True)
    get_loss(name).g_loss(None, fake).backward()
    return fake.grad


def test_minimax_g_gradient_saturates_where_non_saturating_does_not():
    # D confidently rejects the fakes: D(G(z)) = sigmoid(-10) ~ 4.5e-5.
    fake = torch.full((16,), -10.0, dtype=torch.float64)
    mm, ns = _g_grad("minimax", fake), _g_grad("non_saturating", fake)
    # Both push the fake logits up (a descent step increases them)...
    assert (mm < 0).all() and (ns < 0).all()
    # ...but minimax's push is d/df log(1 - sigmoid(f)) = -sigmoid(f), non-saturating's is -(1 - sigmoid(f)).
    n = fake.numel()
    torch.testing.assert_close(mm, torch.full_like(fake, -_sigmoid(-10.0) / n))
    torch.testing.assert_close(ns, torch.full_like(fake, -(1 - _sigmoid(-10.0)) / n))
    assert (ns.abs() > 100 * mm.abs()).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("value", [100.0, -100.0])
def test_extreme_logits_give_finite_losses_and_gradients(name, value):
    loss = get_loss(name)
    real = torch.full((8,), value, requires_grad=True)
    fake = torch.full((8,), -value, requires_grad=True)
    d = loss.d_loss(real, fake)
    (d + loss.g_loss(real, fake)).backward()
    assert torch.isfinite(d)
    assert torch.isfinite(loss.g_loss(real, fake))
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()


def test_extreme_logits_give_the_asymptotic_values():
    # log(1 + e^x) = x + log(1 + e^-x) ~ x for x = 100: a log(sigmoid(x)) spelling would give inf.
    big = torch.full((4,), 100.0)
    ns, mm = get_loss("non_saturating"), get_loss("minimax")
    assert ns.g_loss(None, -big).item() == pytest.approx(100.0)
    assert ns.g_loss(None, big).item() == pytest.approx(0.0, abs=1e-6)
    assert mm.g_loss(None, big).item() == pytest.approx(-100.0)
    assert ns.d_loss(-big, big).item() == pytest.approx(200.0)  # D has everything backwards
    assert ns.d_loss(big, -big).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_matrix_logits_are_rejected(name):
    loss = get_loss(name)
    bad, good = torch.zeros(4, 2), torch.zeros(4)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        loss.d_loss(bad, good)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        loss.d_loss(good, bad)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        loss.g_loss(good, bad)


def test_flags_and_parameters():
    assert get_loss("wasserstein").clip_value == 0.01
    assert get_loss("wasserstein", clip=0.05).clip_value == 0.05
    assert get_loss("wgan_gp").built_in_penalty == "gp" and get_loss("wgan_gp").penalty_weight == 10.0
    assert get_loss("wgan_gp").params() == {"gp_weight": 10.0}
    assert get_loss("wgan_gp", gp_weight=5.0).params() == {"gp_weight": 5.0}
    for name in ("minimax", "non_saturating", "least_squares", "hinge", "wgan_gp", "rpgan"):
        assert get_loss(name).clip_value is None
    for name in ("minimax", "non_saturating", "least_squares", "wasserstein", "hinge", "rpgan"):
        assert get_loss(name).built_in_penalty is None
    assert get_loss("minimax").has_probabilities and get_loss("non_saturating").has_probabilities
    assert not get_loss("wasserstein").has_probabilities
    assert loss_param_names("wasserstein") == ("clip",)
    assert loss_param_names("wgan_gp") == ("gp_weight",)
    assert loss_param_names("hinge") == ()


def test_get_loss_unknown_name():
    with pytest.raises(ValueError, match="'wgan'") as err:
        get_loss("wgan")
    assert "wasserstein" in str(err.value) and "hinge" in str(err.value)


def test_get_loss_unknown_parameter():
    with pytest.raises(ValueError, match="gp_weight") as err:
        get_loss("wasserstein", gp_weight=10.0)
    assert "clip" in str(err.value)  # what it does take
    with pytest.raises(ValueError, match="clip"):
        get_loss("hinge", clip=0.01)


@pytest.mark.parametrize("clip", [0.0, -0.01, float("nan")])
def test_get_loss_bad_clip(clip):
    with pytest.raises(ValueError, match="clip") as err:
        get_loss("wasserstein", clip=clip)
    assert repr(clip) in str(err.value)


def test_get_loss_bad_gp_weight():
    with pytest.raises(ValueError, match=r"-1\.0"):
        get_loss("wgan_gp", gp_weight=-1.0)
    assert get_loss("wgan_gp", gp_weight=0.0).gp_weight == 0.0
