"""What gan_ray's loop needs of a G and a D, written down once and checked once, when the models are built.

A user's model breaks the contract in one line at start-up (naming what is missing), not with a shape
error at step 300.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from gan_ray.errors import PluginError


@runtime_checkable
class Discriminator(Protocol):
    """D's contract.

    - ``pac``: D judges packs of this many samples (PacGAN; 1: each sample alone), so one batch of N
      samples gets N // pac logits.
    - ``forward(*batches)``: one batch (N, *sample_shape) -> raw logits (N // pac,); several batches -> a
      tuple of such logits, one per batch, each batch scored *apart*: the D-step hands D the real and
      the fake batch in one call, and BatchNorm must never pool real with fake
      (:func:`gan_ray.models.scoring.score_apart` does it).
    - Class-conditional (built with ``num_classes`` > 0): ``forward(*batches, labels=y)``, y int64 (N,),
      scores every batch against the same labels.
    """

    pac: int

    def __call__(self, *batches: Tensor) -> Tensor | tuple[Tensor, ...]: ...


@runtime_checkable
class Generator(Protocol):
    """G's contract: noise (N, noise_dim) -> samples (N, *sample_shape), images in [-1, 1]; a
    class-conditional G is called ``G(z, labels)``, labels int64 (N,) in [0, num_classes)."""

    def __call__(self, z: Tensor) -> Tensor: ...


def _fail(name: str, what: str) -> PluginError:
    return PluginError(f"model {name!r}: {what} (see gan_ray.models.Discriminator / Generator)")


def check_contract(
    name: str,
    generator: nn.Module,
    discriminator: nn.Module,
    sample_shape: tuple[int, ...],
    noise_dim: int,
    pac: int = 1,
    num_classes: int = 0,
) -> None:
    """Run G and D once on a small batch and raise a :class:`PluginError` naming what breaks the contract.

    With ``num_classes`` > 0, G and D are called with labels as a conditional model is.

    Runs in train mode without grads, on copies of nothing: every buffer (BatchNorm's running
    statistics) and the RNG are put back as they were, so a checked model trains as an unchecked one.
    """
    for role, module in (("G", generator), ("D", discriminator)):
        if not isinstance(module, nn.Module):
            raise _fail(
                name, f"the builder returned {type(module).__name__} as {role}; expected an nn.Module"
            )
    d_pac = getattr(discriminator, "pac", None)
    if not isinstance(d_pac, int) or d_pac < 1:
        raise _fail(name, f"D has no int attribute 'pac' >= 1 (got {d_pac!r}): the packs it judges")
    if d_pac != pac:
        raise _fail(name, f"D.pac is {d_pac} but model.d_pac asks for {pac}")
    saved = {k: v.clone() for m in (generator, discriminator) for k, v in _buffers(m).items()}
    device = next((p.device for p in generator.parameters()), torch.device("cpu"))
    # Dropout draws other masks for one call of two batches than for two calls: quiet it for the check.
    dropouts = [
        m for m in discriminator.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training
    ]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for m in dropouts:
            m.eval()
        try:
            _check_shapes(name, generator, discriminator, sample_shape, noise_dim, pac, device, num_classes)
        finally:
            _restore(generator, discriminator, saved)
            for m in dropouts:
                m.train()


def _buffers(module: nn.Module) -> dict[str, Tensor]:
    return {f"{id(module)}.{k}": v for k, v in module.named_buffers()}


def _restore(generator: nn.Module, discriminator: nn.Module, saved: dict[str, Tensor]) -> None:
    for module in (generator, discriminator):
        for k, v in module.named_buffers():
            v.copy_(saved[f"{id(module)}.{k}"])


def _check_shapes(
    name: str,
    generator: nn.Module,
    discriminator: nn.Module,
    sample_shape: tuple[int, ...],
    noise_dim: int,
    pac: int,
    device: torch.device,
    num_classes: int = 0,
) -> None:
    n = 4 * pac
    # Labels only for a conditional model: an unconditional one is called exactly as before.
    y = {"labels": torch.arange(n, device=device) % num_classes} if num_classes else {}
    g_args = (y["labels"],) if y else ()
    fake = _call(name, "G(z)", generator, torch.randn(n, noise_dim, device=device), *g_args)
    if not isinstance(fake, Tensor) or tuple(fake.shape) != (n, *sample_shape):
        got = tuple(fake.shape) if isinstance(fake, Tensor) else type(fake).__name__
        raise _fail(
            name, f"G(z) with z of shape {(n, noise_dim)} returned {got}; expected {(n, *sample_shape)}"
        )
    real = torch.randn(n, *sample_shape, device=device).clamp_(-1, 1)
    one = _call(name, "D(x)", discriminator, real, **y)
    if not isinstance(one, Tensor) or tuple(one.shape) != (n // pac,):
        got = tuple(one.shape) if isinstance(one, Tensor) else type(one).__name__
        raise _fail(
            name,
            f"D(x) with x of shape {(n, *sample_shape)} returned {got}; expected logits of shape {(n // pac,)}",
        )
    both = _call(name, "D(real, fake)", discriminator, real, fake, **y)
    if not (isinstance(both, tuple) and len(both) == 2 and all(isinstance(t, Tensor) for t in both)):
        raise _fail(
            name,
            f"D(real, fake) returned {type(both).__name__}; expected a tuple of 2 logits tensors, one per batch",
        )
    apart = (
        _call(name, "D(x)", discriminator, real, **y),
        _call(name, "D(x)", discriminator, fake, **y),
    )
    if not all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(both, apart, strict=True)):
        raise _fail(
            name,
            "D(real, fake) scores the batches together, not as D(real) and D(fake) do: BatchNorm (or anything "
            "across the batch) pools real with fake; score each batch apart (gan_ray.models.score_apart)",
        )


def _call(name: str, what: str, module: nn.Module, *args: Tensor, **kwargs: Tensor):
    try:
        return module(*args, **kwargs)
    except Exception as err:
        raise _fail(name, f"{what} raised {type(err).__name__}: {err}") from None
