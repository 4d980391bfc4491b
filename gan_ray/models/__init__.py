"""Generator and discriminator architectures, built from the config."""

from __future__ import annotations

from torch import nn

from gan_ray.config import GanConfig
from gan_ray.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_ray.models.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "build_models",
    "build_generator",
    "generator_from_state",
    "unwrap",
]


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper, or the module itself."""
    return getattr(module, "module", module)


def build_generator(cfg: GanConfig) -> nn.Module:
    shape = cfg.data.info.sample_shape(cfg.data.image_size)
    if cfg.model_family == "mlp":
        return MLPGenerator(cfg.noise_dim, shape[0], cfg.model.hidden_dim, cfg.model.hidden_layers)
    return DCGANGenerator(cfg.noise_dim, shape[0], shape[1], cfg.model.g_filters)


def generator_from_state(cfg: GanConfig, state: dict) -> nn.Module:
    """A generator for ``cfg`` holding the trained weights ``state``, in eval mode (running BN statistics)."""
    generator = build_generator(cfg)
    generator.load_state_dict(state)
    return generator.eval()


def build_models(cfg: GanConfig) -> tuple[nn.Module, nn.Module]:
    """(G, D) for the config's data shape and model family, freshly initialised."""
    shape = cfg.data.info.sample_shape(cfg.data.image_size)
    g = build_generator(cfg)
    m = cfg.model
    if cfg.model_family == "mlp":
        d = MLPDiscriminator(
            shape[0], m.hidden_dim, m.hidden_layers, m.d_dropout, pac=m.d_pac, minibatch_std=m.d_minibatch_std
        )
    else:
        # Batch statistics couple the samples of a batch, which breaks a gradient penalty's per-sample
        # gradients (WGAN-GP's, R1's, R2's): a penalised D normalises each sample on its own.
        norm = "layer" if cfg.effective_penalty is not None else "batch"
        d = DCGANDiscriminator(
            shape[0], shape[1], m.d_filters, norm=norm, pac=m.d_pac, minibatch_std=m.d_minibatch_std
        )
    return g, d
