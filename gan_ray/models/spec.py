"""A model is a spec, not a family string: a builder of (G, D) from plain arguments, and the traits the
training loop reads from it (default noise dim, channels_last, bf16, CUDA-graph safety).

Built-ins are ``mlp``, ``dcgan`` and ``resnet``; anything else is a plug-in by ``package.module:builder`` or a
``gan_ray.models`` entry point (:mod:`gan_ray.registry`). A builder is called as
``builder(sample_shape, noise_dim, num_classes, penalised, **params)`` and returns ``(G, D)``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError
from torch import nn

from gan_ray.errors import PluginError
from gan_ray.models.dcgan import SUPPORTED_SIZES, DCGANDiscriminator, DCGANGenerator
from gan_ray.models.mlp import MLPDiscriminator, MLPGenerator
from gan_ray.models.resnet import RESNET_SIZES, ResNetDiscriminator, ResNetGenerator
from gan_ray.registry import Registry

#: A width, a depth, a count: what the built-in builders' parameters must be (config validation reads it).
Positive = Annotated[int, Field(gt=0)]
Builder = Callable[..., tuple[nn.Module, nn.Module]]
#: The arguments every builder takes first, in this order.
BUILDER_ARGS = ("sample_shape", "noise_dim", "num_classes", "penalised")


@dataclass(frozen=True)
class ModelSpec:
    """A G/D builder and its traits.

    ``data``: what it models, ``image`` ((C, H, W) samples), ``vector`` ((D,) samples, the 2-D mixtures)
    or ``any``. ``channels_last``: the loop stores conv weights NHWC (faster convolutions on GPU and on
    oneDNN). ``bf16``: ``train.precision: auto`` trains it in bf16 on GPUs that have it.
    ``cuda_graph_safe``: its forward has no host sync or data-dependent control flow, so the whole step
    may be captured in a CUDA graph (a plug-in is not assumed to be). ``image_sizes``: the image sides
    it builds (None: any), so a config asking for another side is refused when it is validated.
    """

    builder: Builder
    default_noise_dim: int = 64
    data: Literal["image", "vector", "any"] = "any"
    channels_last: bool = False
    bf16: bool = False
    cuda_graph_safe: bool = False
    image_sizes: tuple[int, ...] | None = None

    def param_names(self) -> tuple[str, ...] | None:
        """The keyword parameters the builder takes after :data:`BUILDER_ARGS` (None: any, ``**params``)."""
        params = list(inspect.signature(self.builder).parameters.values())[len(BUILDER_ARGS) :]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return tuple(p.name for p in params)

    def param_defaults(self) -> dict[str, Any]:
        """The builder's own defaults of its keyword parameters."""
        params = list(inspect.signature(self.builder).parameters.values())[len(BUILDER_ARGS) :]
        return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    def check_params(self, params: dict[str, Any]) -> list[str]:
        """``key: problem (got value)`` for each of ``params`` that the builder's annotation refuses (the
        built-ins' ranges: ``d_dropout`` in [0, 1), widths > 0); a plug-in's unreadable hints are skipped."""
        try:
            hints = typing.get_type_hints(self.builder, include_extras=True)
        except Exception:  # a plug-in's forward references: its own call will say what is wrong
            return []
        problems = []
        for key, value in params.items():
            if key not in hints:
                continue
            try:
                TypeAdapter(hints[key]).validate_python(value, strict=False)
            except ValidationError as err:
                problems.append(f"{key}: {err.errors()[0]['msg']} (got {value!r})")
            except Exception:  # a hint pydantic cannot check
                continue
        return problems

    def build(
        self,
        sample_shape: tuple[int, ...],
        noise_dim: int,
        num_classes: int = 0,
        penalised: bool = False,
        **params: Any,
    ) -> tuple[nn.Module, nn.Module]:
        return self.builder(tuple(sample_shape), noise_dim, num_classes, penalised, **params)


def _check_signature(name: str, builder: Callable[..., Any]) -> None:
    try:
        params = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError):
        raise PluginError(f"model {name!r}: {builder!r} has no signature to call it by") from None
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    takes_four = any(p.kind is p.VAR_POSITIONAL for p in positional) or len(positional) >= len(BUILDER_ARGS)
    required_extra = [
        p.name
        for p in positional[len(BUILDER_ARGS) :]
        if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
    ]
    if not takes_four or required_extra:
        shown = f"{getattr(builder, '__name__', builder)}{inspect.signature(builder)}"
        raise PluginError(
            f"model {name!r}: builder {shown} has the wrong signature; expected "
            "builder(sample_shape, noise_dim, num_classes, penalised, **params) -> (G, D)"
        )


def _as_spec(name: str, obj: object) -> ModelSpec:
    """A plug-in model: a :class:`ModelSpec`, or a builder function whose attributes (``default_noise_dim``,
    ``data``, ``channels_last``, ``bf16``, ``cuda_graph_safe``), where set, are its traits."""
    if isinstance(obj, ModelSpec):
        spec = obj
    elif callable(obj):
        traits = {
            k: getattr(obj, k) for k in ModelSpec.__dataclass_fields__ if k != "builder" and hasattr(obj, k)
        }
        spec = ModelSpec(obj, **traits)  # type: ignore[arg-type]
    else:
        raise PluginError(
            f"model {name!r} is {obj!r}; expected a gan_ray.models.ModelSpec or a builder "
            "function(sample_shape, noise_dim, num_classes, penalised, **params) -> (G, D)"
        )
    _check_signature(name, spec.builder)
    return spec


def build_mlp(
    sample_shape: tuple[int, ...],
    noise_dim: int,
    num_classes: int = 0,
    penalised: bool = False,
    *,
    hidden_dim: Positive = 128,
    hidden_layers: Positive = 3,
    d_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0,
    d_pac: Positive = 1,
    d_minibatch_std: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """Goodfellow et al. (2014)'s fully connected G and D for vectors (the 2-D mixtures)."""
    (dim,) = sample_shape
    if num_classes:
        raise PluginError("model 'mlp' is unconditional (the 2-D mixtures have no labels)")
    g = MLPGenerator(noise_dim, dim, hidden_dim, hidden_layers)
    d = MLPDiscriminator(dim, hidden_dim, hidden_layers, d_dropout, pac=d_pac, minibatch_std=d_minibatch_std)
    return g, d


def build_dcgan(
    sample_shape: tuple[int, ...],
    noise_dim: int,
    num_classes: int = 0,
    penalised: bool = False,
    *,
    g_filters: Positive = 64,
    d_filters: Positive = 64,
    d_pac: Positive = 1,
    d_minibatch_std: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """Radford et al. (2016)'s DCGAN for images of side 8, 28, 32 or 64; ``num_classes`` > 0: G joins a
    class embedding to z, D has a projection head (:mod:`gan_ray.models.conditional`)."""
    channels, size, _ = sample_shape
    if size not in SUPPORTED_SIZES:
        raise PluginError(f"model 'dcgan' builds images of side {sorted(SUPPORTED_SIZES)}, not {size}")
    _conditional_pac("dcgan", num_classes, d_pac)
    g = DCGANGenerator(noise_dim, channels, size, g_filters, num_classes=num_classes)
    # Batch statistics couple the samples of a batch, which breaks a gradient penalty's per-sample
    # gradients (WGAN-GP's, R1's, R2's): a penalised D normalises each sample on its own.
    norm = "layer" if penalised else "batch"
    d = DCGANDiscriminator(
        channels,
        size,
        d_filters,
        norm=norm,
        pac=d_pac,
        minibatch_std=d_minibatch_std,
        num_classes=num_classes,
    )
    return g, d


def _conditional_pac(name: str, num_classes: int, pac: int) -> None:
    """A pack of PacGAN mixes samples of several classes: which class would the projection ask about?"""
    if num_classes and pac > 1:
        raise PluginError(
            f"model {name!r}: d_pac {pac} with {num_classes} classes; a conditional D takes d_pac 1"
        )


#: (width, blocks_per_stage) where a config sets none: small at the CPU-sized sides (28, 32: a few
#: minutes of CPU train something), R3GAN-like widths for the GPU-sized ones.
RESNET_DEFAULTS = {28: (64, 1), 32: (128, 1), 64: (256, 2), 128: (256, 2), 256: (256, 2)}


def build_resnet(
    sample_shape: tuple[int, ...],
    noise_dim: int,
    num_classes: int = 0,
    penalised: bool = False,
    *,
    width: Positive | None = None,
    blocks_per_stage: Positive | None = None,
    expansion: Positive = 2,
    group_size: Positive = 16,
    d_pac: Positive = 1,
    d_minibatch_std: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """R3GAN's residual G and D (:mod:`gan_ray.models.resnet`) for images of side 28, 32, 64, 128 or 256.

    ``width``: channels of the stages up to 32 px (halved per doubling above); ``blocks_per_stage``;
    ``expansion``: the inverted bottleneck's widening; ``group_size``: channels per group of the 3x3
    convolutions (R3GAN's CIFAR preset: 768 wide, expansion 2, 96 groups, i.e. 16 a group). None: the
    side's default (:data:`RESNET_DEFAULTS`). No normalisation, so every penalty applies as it is.
    ``num_classes`` > 0: G joins a class embedding to z, D has a projection head on phi(x).
    """
    channels, size, _ = sample_shape
    if size not in RESNET_SIZES:
        raise PluginError(f"model 'resnet' builds images of side {sorted(RESNET_SIZES)}, not {size}")
    _conditional_pac("resnet", num_classes, d_pac)
    default_width, default_blocks = RESNET_DEFAULTS[size]
    arch = {
        "image_size": size,
        "width": width or default_width,
        "blocks_per_stage": blocks_per_stage or default_blocks,
        "expansion": expansion,
        "group_size": group_size,
    }
    g = ResNetGenerator(noise_dim, channels, **arch, num_classes=num_classes)
    d = ResNetDiscriminator(
        channels, **arch, pac=d_pac, minibatch_std=d_minibatch_std, num_classes=num_classes
    )
    return g, d


#: The models by name: the built-ins here; plug-ins by import path or ``gan_ray.models`` entry points.
MODELS: Registry[ModelSpec] = Registry(
    "model",
    "gan_ray.models",
    {
        "mlp": ModelSpec(build_mlp, default_noise_dim=8, data="vector", cuda_graph_safe=True),
        # bf16 pays for the convolutions; the 2-D MLPs stay fp32 (bf16 steps are ~0.6 sigma of a ring mode).
        "dcgan": ModelSpec(
            build_dcgan,
            default_noise_dim=100,
            data="image",
            channels_last=True,
            bf16=True,
            cuda_graph_safe=True,
            image_sizes=tuple(sorted(SUPPORTED_SIZES)),
        ),
        # No host sync and no data-dependent control flow in either forward: capturable. The step is
        # still eager wherever cuda_graphs.graph_blocker says (R1/R2/gp's double backward, lr schedules,
        # DDP over several workers), which R3GAN's recipe (rpgan + r1_r2) always meets.
        "resnet": ModelSpec(
            build_resnet,
            default_noise_dim=64,
            data="image",
            channels_last=True,
            bf16=True,
            cuda_graph_safe=True,
            image_sizes=tuple(sorted(RESNET_SIZES)),
        ),
    },
    convert=_as_spec,
)

#: What ``model.name: auto`` means: the built-in for the dataset's kind of sample.
AUTO = {"vector": "mlp", "image": "dcgan"}


def model_spec(name: str) -> ModelSpec:
    """The spec of model ``name`` (built-in, import path or entry point); ``auto`` is not resolved here."""
    return MODELS.resolve(name)
