"""Generator and discriminator architectures, and the model registry: each is a :class:`ModelSpec`
built from plain arguments (sample shape, noise dim, classes), never from the whole config."""

from __future__ import annotations

from torch import nn

from gan_ray.models.contract import Discriminator, Generator, check_contract
from gan_ray.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_ray.models.mlp import MLPDiscriminator, MLPGenerator
from gan_ray.models.resnet import ResNetDiscriminator, ResNetGenerator
from gan_ray.models.scoring import score_apart
from gan_ray.models.spec import AUTO, MODELS, ModelSpec, build_dcgan, build_mlp, build_resnet, model_spec

__all__ = [
    "AUTO",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Discriminator",
    "Generator",
    "MLPDiscriminator",
    "MLPGenerator",
    "MODELS",
    "ModelSpec",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "build_dcgan",
    "build_mlp",
    "build_resnet",
    "check_contract",
    "model_spec",
    "score_apart",
    "unwrap",
]


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper, or the module itself."""
    return getattr(module, "module", module)
