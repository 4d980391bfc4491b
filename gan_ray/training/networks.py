"""G and D for a config: its model spec's builder called with plain arguments, and D's contract checked."""

from __future__ import annotations

from torch import nn

from gan_ray.config import GanConfig
from gan_ray.models import check_contract


def build_models(cfg: GanConfig, check: bool = True) -> tuple[nn.Module, nn.Module]:
    """(G, D) for the config's data shape and model spec, freshly initialised.

    The builder gets the sample shape, the noise dim, the number of classes (0: unconditional; the
    dataset's with ``model.conditional``) and whether D is penalised (a gradient penalty needs per-sample gradients, so
    BatchNorm's batch coupling is out). ``check`` runs G and D once against their contract
    (:func:`gan_ray.models.check_contract`): a plug-in that breaks it fails here in one line.
    """
    shape = cfg.data.info.sample_shape(cfg.data.image_size)
    g, d = cfg.model_spec.build(
        shape, cfg.noise_dim, cfg.num_classes, cfg.effective_penalty is not None, **cfg.model_params
    )
    if check:
        check_contract(
            cfg.model_name, g, d, shape, cfg.noise_dim, pac=cfg.model.d_pac, num_classes=cfg.num_classes
        )
    return g, d


def build_generator(cfg: GanConfig) -> nn.Module:
    """G alone (a builder makes both; D is dropped): what loading a trained generator rebuilds."""
    return build_models(cfg, check=False)[0]


def generator_from_state(cfg: GanConfig, state: dict) -> nn.Module:
    """A generator for ``cfg`` holding the trained weights ``state``, in eval mode (running BN statistics)."""
    generator = build_generator(cfg)
    generator.load_state_dict(state)
    return generator.eval()
