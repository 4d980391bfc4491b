"""The one typed, validated configuration every layer of gan_ray receives.

Load it from YAML with :func:`load_config`; derive variants (what a sweep trial does) with
:meth:`GanConfig.with_overrides`. Bad values fail here, before anything expensive starts, with a
:class:`ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gan_ray import settings
from gan_ray.data.catalog import DatasetInfo, check_feature_name, check_suite, dataset_info, spec_info
from gan_ray.errors import ConfigError
from gan_ray.losses import LOSSES, get_loss, loss_param_names
from gan_ray.models.spec import AUTO, MODELS, ModelSpec
from gan_ray.noise import get_noise
from gan_ray.objective import Objective
from gan_ray.penalties import PENALTIES, Penalty, default_weight


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` and ``1.0e9`` as floats (YAML 1.2), not strings as YAML 1.1 does."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str):
    """Parse YAML text with :class:`YamlLoader`."""
    return yaml.load(text, Loader=YamlLoader)


def yaml_error_line(err: yaml.YAMLError, source: str | Path) -> str:
    """``FILE:LINE:COL: not valid YAML: PROBLEM`` in one line (PyYAML's own message spans several)."""
    mark = getattr(err, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(source)
    problem = getattr(err, "problem", None) or str(err).replace("\n", " ")
    context = getattr(err, "context", None)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(_Strict):
    """Augmentation of every batch D sees, real and fake alike (images only): DiffAugment's transforms
    (Zhao et al. 2020) at probability ``p`` (``diffaug``; None: always), or at ADA's adaptive probability
    (``ada``, Karras et al. 2020: starts at ``p``, None: 0, and moves so that D's sign on reals averages
    ``ada_target``, by at most 1 per ``ada_kimg`` thousand reals, every ``ada_interval`` D-steps)."""

    policy: Literal["none", "diffaug", "ada"] = "none"
    color: bool = True
    translation: bool = True
    cutout: bool = True
    p: float | None = Field(None, ge=0.0, le=1.0)
    translation_ratio: float = Field(0.125, gt=0.0, le=0.5, description="largest shift, of the side")
    cutout_ratio: float = Field(0.5, gt=0.0, le=1.0, description="the cut square's side, of the image's")
    ada_target: float = Field(0.6, gt=-1.0, lt=1.0)
    ada_kimg: float = Field(500.0, gt=0.0)
    ada_interval: int = Field(4, ge=1)

    @property
    def transforms(self) -> tuple[str, ...]:
        """The transforms turned on, in the order they apply."""
        return tuple(t for t in ("color", "translation", "cutout") if getattr(self, t))

    @model_validator(mode="after")
    def _something_to_do(self) -> AugmentConfig:
        if self.policy != "none" and not self.transforms:
            raise ValueError(f"policy {self.policy!r} with color, translation and cutout all off")
        return self


class DataConfig(_Strict):
    """What to train on. ``root`` is the torchvision root for mnist / fashion_mnist / cifar10, and for
    ``folder`` your own images: a folder (class subfolders give labels), a ``.zip``, or ``s3://bucket/prefix``.

    ``channels``, ``labels`` and ``prepared`` are ``folder``'s: 1 (grey) or 3 (RGB, the default);
    ``auto`` (labels from subfolders; a flat folder has none) or ``none``; a prepared file (path or URI,
    see ``gan-ray prepare``) to read instead of decoding ``root``. ``mirror`` adds x-flips of every image
    (StyleGAN2-ADA's ``--mirror``): each drawn image is flipped with probability 1/2. ``augment``: what
    D's batches go through (:class:`AugmentConfig`).
    """

    name: str = "ring8"
    root: str | None = None
    download: bool = False
    # Images are resized to this side length; None keeps the dataset's own (8, 28 or 32); folder needs it.
    # The model must build it (its ModelSpec.image_sizes: dcgan 8-64, resnet 28-256).
    image_size: Literal[8, 28, 32, 64, 128, 256] | None = None
    channels: Literal[1, 3] | None = None
    labels: Literal["auto", "none"] = "auto"
    mirror: bool = False
    prepared: str | None = None
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        dataset_info(v)  # a built-in, or a plug-in that imports and says how to read it
        return v

    @model_validator(mode="after")
    def _folder_fields(self) -> DataConfig:
        info = dataset_info(self.name)
        if info.shaped_by_config:
            if self.image_size is None:
                raise ValueError(
                    f"data.image_size is required for dataset {self.name!r} (28, 32, 64, 128 or 256)"
                )
            if self.root is None and self.prepared is None:
                raise ValueError(
                    f"data.root is required for dataset {self.name!r}: a folder of images, a .zip or s3://..."
                )
            return self
        own = {
            "channels": self.channels is not None,
            "labels": self.labels != "auto",
            "prepared": self.prepared,
        }
        bad = [k for k, set_ in own.items() if set_]
        if bad:
            raise ValueError(f"data.{bad[0]} applies to dataset 'folder' only, not {self.name!r}")
        if self.mirror and info.is_mixture:
            raise ValueError(f"data.mirror flips images; dataset {self.name!r} is a mixture of 2-D points")
        return self

    @property
    def info(self) -> DatasetInfo:
        """The dataset's catalog entry (kind, shape, default objective), with folder's shape filled in."""
        return spec_info(self)

    @property
    def is_mixture(self) -> bool:
        return self.info.is_mixture


#: Keys of the model section before models were specs: ``family`` became ``name``; the rest are
#: parameters of the built-in builders (gan_ray.models.spec), moved into ``params`` on load.
LEGACY_MODEL_KEYS = ("family", "hidden_dim", "hidden_layers", "d_dropout", "g_filters", "d_filters")
#: D's anti-collapse options: keys of the model section (the loop reads them), passed to builders that take them.
D_OPTIONS = ("d_pac", "d_minibatch_std")


class ModelConfig(_Strict):
    """G and D: ``name`` picks a model spec (``mlp``, ``dcgan``, ``auto`` for the dataset's kind, or a
    plug-in ``package.module:builder``), ``params`` are its builder's keyword arguments (the built-ins':
    ``hidden_dim``, ``hidden_layers``, ``d_dropout`` for mlp; ``g_filters``, ``d_filters`` for dcgan).
    ``d_pac`` and ``d_minibatch_std`` are D's anti-collapse options, which the loop reads too.
    ``conditional``: G and D take the class (labelled datasets only; :mod:`gan_ray.models.conditional`)."""

    name: str = "auto"
    params: dict[str, Any] = Field(default_factory=dict)
    conditional: bool = Field(
        False, description="class-conditional G and projection D, on the dataset's labels"
    )
    d_pac: int = Field(1, ge=1, le=16, description="PacGAN: D judges packs of this many samples (1: off)")
    d_minibatch_std: int = Field(
        0, ge=0, description="group size of D's minibatch-std feature (Karras et al. 2018; 0: off)"
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v != "auto":
            MODELS.resolve(v)  # imports a plug-in and checks its builder's signature
        return v

    @field_validator("params")
    @classmethod
    def _d_options_apart(cls, v: dict[str, Any]) -> dict[str, Any]:
        both = sorted(set(v) & set(D_OPTIONS))
        if both:
            raise ValueError(
                f"set {', '.join(f'model.{k}' for k in both)}, not model.params.{both[0]}: the loop reads it too"
            )
        return v

    @field_validator("d_minibatch_std")
    @classmethod
    def _group_of_two(cls, v: int) -> int:
        if v == 1:
            raise ValueError("a minibatch-std group needs at least 2 samples (0 turns it off)")
        return v


def _legacy_model(data: Any) -> Any:
    """An old config's model section (``family``, ``hidden_dim``, ``g_filters``...) as a spec: the family
    becomes ``name``, the keys its builder takes go to ``params`` (a key written at the top wins over
    ``params``: it is what a search space of old keys sets), the others are dropped, as they were ignored."""
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        return data
    model = dict(data["model"])
    legacy = {k: model.pop(k) for k in LEGACY_MODEL_KEYS if k in model}
    if not legacy:
        return data
    family = legacy.pop("family", None)
    if family is not None and "name" not in model:
        model["name"] = family
    name = _resolved_model_name(model.get("name", "auto"), data)
    try:
        takes = MODELS.resolve(name).param_names() if name is not None else None
    except ValueError:
        takes = None  # an unknown name: its own validator says so
    params = dict(model.get("params") or {})
    params.update({k: v for k, v in legacy.items() if takes is None or k in takes})
    model["params"] = params
    return {**data, "model": model}


def _resolved_model_name(name: Any, data: dict[str, Any]) -> str | None:
    """``name``, or for ``auto`` the built-in for the dataset's kind (None where the dataset is unknown)."""
    if name != "auto":
        return name if isinstance(name, str) else None
    data_section = data.get("data") if isinstance(data.get("data"), dict) else {}
    try:
        info = dataset_info(data_section.get("name", DataConfig.model_fields["name"].default))
    except ValueError:
        return None
    return AUTO["vector" if info.is_mixture else "image"]


class NoiseConfig(_Strict):
    """p(z): a distribution from :data:`gan_ray.noise.NOISE` and its dimension (None: 8 for mlp, 100 for dcgan)."""

    distribution: str = "normal"
    dim: int | None = Field(None, gt=0)

    @field_validator("distribution")
    @classmethod
    def _known_noise(cls, v: str) -> str:
        get_noise(v)
        return v


class LossConfig(_Strict):
    """A loss from :data:`gan_ray.losses.LOSSES` and its own parameters (``clip`` for wasserstein, ``gp_weight`` for wgan_gp)."""

    name: str = "non_saturating"
    params: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_loss(self) -> LossConfig:
        get_loss(self.name, **self.params)  # raises with the allowed names / parameters
        return self

    def resolved_params(self) -> dict[str, float]:
        """Every parameter of this loss, defaults filled in (only those that apply to it)."""
        return get_loss(self.name, **self.params).params()


class PenaltyConfig(_Strict):
    """A gradient penalty on D from :data:`gan_ray.penalties.PENALTIES`, composable with every loss.

    ``weight`` is gp's lambda or the R1/R2 gamma (the term is gamma/2 E||grad D||^2); None: the penalty's
    own default (10 for gp, 1 for the zero-centred ones). ``schedule`` moves it from ``weight`` to
    ``final_ratio x weight`` over the first ``burn_in`` of the run, then holds it there: R3GAN's cosine
    burn-in of gamma. ``loss.name: wgan_gp`` carries ``gp`` itself (``penalty.name`` stays ``none``).
    ``every``: lazy regularisation (Karras et al. 2020, StyleGAN2): the penalty only every N-th D-step,
    at N times its weight, so it costs 1/N of its double backwards (1: every step).
    """

    name: str = "none"
    weight: float | None = Field(None, ge=0.0)
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    final_ratio: float = Field(0.1, ge=0.0, le=1.0, description="the weight's last value, as a ratio")
    burn_in: float = Field(
        1.0, gt=0.0, le=1.0, description="the fraction of the run the schedule takes; it holds after"
    )
    every: int = Field(1, ge=1, le=64, description="apply it every N-th D-step at N times the weight")

    @field_validator("name")
    @classmethod
    def _known_penalty(cls, v: str) -> str:
        if v != "none":
            PENALTIES.resolve(v)
        return v


class OptimConfig(_Strict):
    """Adam for G and for D, each with its own learning rate (TTUR-style), and how both decay."""

    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="both learning rates from their value to lr_final_ratio x it over the run"
    )
    lr_final_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="the learning rates' last value, as a ratio"
    )
    lr_burn_in: float = Field(
        1.0, gt=0.0, le=1.0, description="the fraction of the run lr_schedule takes; the rates hold after"
    )


class TrainConfig(_Strict):
    """The alternating loop. One *step* is k = ``d_steps_per_g_step`` D-steps followed by one G-step;
    ``batch_size`` is per worker (the global batch is num_workers x batch_size)."""

    d_steps_per_g_step: int | None = Field(
        None,
        ge=1,
        description="k of Goodfellow et al.: D-steps per G-step; None: 5 for the Wasserstein losses "
        "(Arjovsky et al. 2017, Gulrajani et al. 2017), else 1",
    )
    batch_size: int = Field(64, gt=0)
    steps: int = Field(2000, gt=0, description="G-steps to train for")
    eval_every: int = Field(500, gt=0, description="G-steps between metric reads, evals and checkpoints")
    eval_samples: int = Field(2500, gt=0, description="generated samples per quality evaluation")
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    cuda_graphs: bool = Field(True, description="capture the whole step in a CUDA graph where it applies")
    ema_decay: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="an exponential moving average of G's weights with this decay (Yazici et al. 2019), "
        "used for evals and the logged model; None: off",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"unknown device {v!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return v


class MetricsConfig(_Strict):
    """How image runs are scored: the Fréchet distance's feature extractor.

    ``classifier`` is a small CNN trained once per dataset on its real images (no download; not
    Inception-FID). ``inception`` is torchmetrics' Inception-v3, where torch-fidelity's weights file is
    present. A plug-in extractor by ``package.module:builder`` reports ``fid_<builder>``. ``extractor`` is a saved extractor file (path or URI) that a sweep hands to all its trials,
    so every trial is scored by the same one; None: this node's cache.
    """

    features: str = "classifier"
    extractor: str | None = None
    suite: tuple[str, ...] = Field(
        (),
        description="beside the Fréchet distance: 'fid' (nothing), 'full', or [kid, precision_recall, density_coverage]",
    )
    reference_samples: int = Field(
        5000,
        ge=10,
        le=50_000,
        description="real features kept for KID, P&R, D&C (the papers: 50,000 / 10,000)",
    )
    reference: str | None = Field(None, description="pytorch-fid's .npz (mu, sigma) as the Fréchet reference")

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: str) -> str:
        return check_feature_name(v)

    @field_validator("suite", mode="before")
    @classmethod
    def _known_parts(cls, v: Any) -> tuple[str, ...]:
        return check_suite(v)


class ScalingConfig(_Strict):
    """How Ray Train places the run: data-parallel workers, each with its own resources."""

    num_workers: int = Field(1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, gt=0, le=1.0, description="a fraction packs several trials per GPU")
    max_failures: int = Field(
        0, ge=-1, description="worker-group restarts from the last checkpoint (-1: forever)"
    )
    storage_path: str | None = Field(
        None, description="Ray Train storage; None: $GAN_RAY_STORAGE or ./ray_results"
    )

    def storage(self, explicit: str | None = None) -> str:
        """Where Ray Train keeps checkpoints: ``explicit``, else this config's, else ``$GAN_RAY_STORAGE``."""
        return explicit or self.storage_path or settings.storage_path()

    @model_validator(mode="after")
    def _whole_gpu_per_rank(self) -> ScalingConfig:
        # Ray packs fractional workers of one run onto the same GPU, and NCCL refuses two ranks on one
        # device ("Duplicate GPU detected") only after the workers have started: say so up front.
        if self.use_gpu and self.num_workers > 1 and self.gpus_per_worker < 1:
            raise ValueError(
                f"gpus_per_worker {self.gpus_per_worker} with num_workers {self.num_workers}: DDP over NCCL "
                "needs a whole GPU per worker; use fractions only to pack 1-worker trials"
            )
        return self


class GanConfig(_Strict):
    """Everything one training run needs."""

    name: str = "gan"
    output_dir: str = "outputs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    penalty: PenaltyConfig = Field(default_factory=PenaltyConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        return _legacy_model(data)

    @model_validator(mode="after")
    def _consistent(self) -> GanConfig:
        info = dataset_info(self.data.name)
        self._model_fits(info)
        self._conditional_fits(info)
        if info.needs_root and self.data.root is None:
            raise ValueError(
                f"data.root is required for dataset {self.data.name!r} (a torchvision root folder)"
            )
        labels_in_files = info.shaped_by_config and self.data.labels == "auto"
        if (
            not info.is_mixture
            and self.metrics.features == "classifier"
            and not (info.num_classes or labels_in_files)
        ):
            raise ValueError(
                f"metrics.features 'classifier' trains on the labels of {self.data.name!r}, which has none "
                f"(data.labels {self.data.labels!r}); "
                "set metrics.features to a pretrained extractor (inception, or a plug-in)"
            )
        self._one_penalty()
        if info.is_mixture and self.data.augment.policy != "none":
            raise ValueError(
                f"data.augment.policy {self.data.augment.policy!r} augments images; dataset {self.data.name!r} "
                "is a 2-D mixture (use 'none')"
            )
        if self.model.d_pac > self.train.batch_size:
            raise ValueError(
                f"model.d_pac {self.model.d_pac} packs more samples than a batch holds "
                f"(train.batch_size {self.train.batch_size})"
            )
        return self

    def _model_fits(self, info: DatasetInfo) -> None:
        """The model is for this dataset's kind of sample, and its builder takes every parameter given."""
        spec, name = self.model_spec, self.model_name
        kind = "vector" if info.is_mixture else "image"
        if spec.data not in ("any", kind):
            wanted = AUTO[kind]
            raise ValueError(
                f"model.name {name!r} is for {spec.data}s; dataset {self.data.name!r} has {kind}s "
                f"(use {wanted!r}, or 'auto')"
            )
        side = info.sample_shape(self.data.image_size)[-1]
        if kind == "image" and spec.image_sizes is not None and side not in spec.image_sizes:
            raise ValueError(
                f"model {name!r} builds images of side {list(spec.image_sizes)}, not {side} "
                f"(dataset {self.data.name!r}); set data.image_size to one of them"
            )
        problems = spec.check_params(self.model.params)
        if problems:
            raise ValueError(f"model {name!r}: " + "; ".join(f"model.params.{p}" for p in problems))
        takes = spec.param_names()
        extra = {"d_pac": self.model.d_pac != 1, "d_minibatch_std": self.model.d_minibatch_std != 0}
        if takes is not None:
            unknown = sorted(set(self.model.params) - set(takes))
            unknown += [k for k, on in extra.items() if on and k not in takes]
            if unknown:
                raise ValueError(
                    f"model {name!r} takes no parameter(s) {unknown}; its parameters are {list(takes)}"
                )

    def _conditional_fits(self, info: DatasetInfo) -> None:
        if not self.model.conditional:
            return
        if info.shaped_by_config and self.data.labels == "none":
            raise ValueError(
                "model.conditional true needs labels; data.labels 'none' drops the folder's "
                "(allowed: data.labels auto, with class subfolders, or conditional false)"
            )
        # A folder's classes are known once its files are listed: checked before training starts
        # (gan_ray.data.prepared.check_for_run).
        if not info.num_classes and not info.shaped_by_config:
            raise ValueError(
                f"model.conditional true needs labels; dataset {self.data.name!r} has none "
                "(allowed: false, or a labelled dataset such as digits, mnist, fashion_mnist, cifar10)"
            )
        if self.model.d_pac != 1:
            raise ValueError(
                f"model.d_pac {self.model.d_pac} with model.conditional true: a pack mixes classes "
                "(allowed: d_pac 1, or conditional false)"
            )

    def _one_penalty(self) -> None:
        built_in = get_loss(self.loss.name, **self.loss.params).built_in_penalty
        if built_in is not None and self.penalty.name != "none":
            raise ValueError(
                f"loss {self.loss.name!r} carries the {built_in!r} penalty already; penalty.name "
                f"{self.penalty.name!r} would add a second one (use loss 'wasserstein' with a penalty, "
                "or penalty.name 'none')"
            )

    @property
    def effective_penalty(self) -> Penalty | None:
        """The penalty D's loss carries, at its starting weight: ``penalty``'s, or the loss's own (wgan_gp's
        gp); None without one."""
        loss = get_loss(self.loss.name, **self.loss.params)
        if loss.built_in_penalty is not None:
            return Penalty(loss.built_in_penalty, loss.penalty_weight)
        if self.penalty.name == "none":
            return None
        weight = self.penalty.weight
        return Penalty(self.penalty.name, default_weight(self.penalty.name) if weight is None else weight)

    @property
    def objective(self) -> Objective:
        """What a run on this config is ranked by unless a sweep says otherwise (see
        :meth:`gan_ray.data.catalog.DatasetInfo.objective`)."""
        return self.data.info.objective(self.metrics.features)

    @property
    def reported_metrics(self) -> tuple[str, ...]:
        """The metrics every eval report of this config carries; a conditional model's adds the
        classifier's ``class_accuracy`` and the intra-class FID ``intra_fid`` (per class: ``intra_fid_<c>``)."""
        reported = self.data.info.reported_metrics(self.metrics.features, self.metrics.suite)
        if not self.model.conditional:
            return reported
        per_class = (
            ("class_accuracy", "intra_fid") if self.metrics.features == "classifier" else ("intra_fid",)
        )
        return reported + per_class

    @property
    def model_name(self) -> str:
        """``model.name`` with ``auto`` resolved: ``mlp`` for the 2-D mixtures, ``dcgan`` for images."""
        if self.model.name != "auto":
            return self.model.name
        return AUTO["vector" if self.data.is_mixture else "image"]

    @property
    def model_spec(self) -> ModelSpec:
        """The model's builder and traits (channels_last, bf16, CUDA-graph safety)."""
        return MODELS.resolve(self.model_name)

    @property
    def model_params(self) -> dict[str, Any]:
        """The builder's keyword arguments: ``model.params`` and D's options where the builder takes them."""
        takes = self.model_spec.param_names()
        params = dict(self.model.params)
        for key in D_OPTIONS:
            if takes is None or key in takes:
                params[key] = getattr(self.model, key)
        return params

    @property
    def num_classes(self) -> int:
        """The classes G and D are conditioned on: the dataset's, with ``model.conditional``; else 0."""
        if not self.model.conditional:
            return 0
        if self.data.info.shaped_by_config:  # a folder: its class subfolders, from the prepared file
            from gan_ray.data.prepared import load_prepared

            return load_prepared(self.data).num_classes
        return self.data.info.num_classes

    @property
    def noise_dim(self) -> int:
        """``noise.dim``, else the model's own default (8 for mlp, 100 for dcgan)."""
        if self.noise.dim is not None:
            return self.noise.dim
        return self.model_spec.default_noise_dim

    @property
    def d_steps_per_g_step(self) -> int:
        """k: the config's, else the loss's own default (5 critic steps for the Wasserstein losses)."""
        if self.train.d_steps_per_g_step is not None:
            return self.train.d_steps_per_g_step
        return get_loss(self.loss.name, **self.loss.params).default_d_steps

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, loss parameters resolved (only the current loss's): what MLflow logs."""
        out = _flatten(self.model_dump(mode="json"))
        out = {k: v for k, v in out.items() if not k.startswith("loss.params.")}
        for key, value in self.loss.resolved_params().items():
            out[f"loss.params.{key}"] = value
        out = {k: v for k, v in out.items() if not k.startswith("penalty.")}
        out.update(self._penalty_flat())
        out = {k: v for k, v in out.items() if not k.startswith("model.params.")}
        defaults = self.model_spec.param_defaults()
        for key, value in {**defaults, **self.model.params}.items():
            if key not in D_OPTIONS:
                out[f"model.params.{key}"] = value
        out["model.name"] = self.model_name
        out["noise.dim"] = self.noise_dim
        out["train.d_steps_per_g_step"] = self.d_steps_per_g_step
        return out

    def _penalty_flat(self) -> dict[str, Any]:
        """``penalty.*`` as logged: only the keys that apply, the weight resolved. wgan_gp's own gp shows as
        ``penalty.name: gp``; its weight is ``loss.params.gp_weight`` (one fact, one key)."""
        penalty = self.effective_penalty
        if penalty is None:
            return {"penalty.name": "none"}
        out: dict[str, Any] = {"penalty.name": penalty.name, "penalty.schedule": self.penalty.schedule}
        if self.penalty.every != 1:
            out["penalty.every"] = self.penalty.every
        if self.penalty.name != "none":
            out["penalty.weight"] = penalty.weight
        if self.penalty.schedule != "constant":
            out["penalty.final_ratio"] = self.penalty.final_ratio
            out["penalty.burn_in"] = self.penalty.burn_in
        return out

    def with_resolved_paths(self) -> GanConfig:
        """This config with its local paths (:data:`PATH_KEYS`) made absolute where the user gave them: ``~``
        expanded, a relative path resolved against this process's working directory. The entry points
        call it in the driver, before the config travels to Tune trials and Ray Train workers, which run
        in folders of their own (a relative ``data.root`` found nothing there). URIs stay as they are."""
        changed = {}
        for key in PATH_KEYS:
            section, _, field = key.rpartition(".")
            value = getattr(getattr(self, section) if section else self, field)
            resolved = resolve_path(value)
            if resolved != value:
                changed[key] = resolved
        return self.with_overrides(changed) if changed else self

    def with_overrides(self, overrides: dict[str, Any]) -> GanConfig:
        """A new validated config with dotted keys replaced, e.g. ``{"optim.lr_g": 1e-3}``."""
        data = self.model_dump()
        for dotted, value in overrides.items():
            _set_dotted(data, dotted, value)
        return validate_config(data)


#: The config keys that hold a local path (or a URI, which stays as it is).
PATH_KEYS = (
    "output_dir",
    "data.root",
    "data.prepared",
    "scaling.storage_path",
    "metrics.extractor",
    "metrics.reference",
)


def resolve_path(value: str | None) -> str | None:
    """``value`` as an absolute local path (``~`` expanded, resolved against the working directory); None
    and URIs (``s3://...``) unchanged."""
    if value is None or "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        elif not isinstance(v, dict):
            out[key] = v
    return out


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            raise ConfigError(
                f"unknown config key {dotted!r}: {'.'.join(parents[: i + 1])!r} is not a section"
            )
        node = child
    node[leaf] = value


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (the command line's ``--set``) as dotted overrides, each VALUE read as YAML
    (``1e-3`` a float, ``null`` None, ``[a, b]`` a list); a bad item or an unknown key is one error line."""
    out: dict[str, Any] = {}
    keys = known_keys()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. data.root=~/data")
        if not is_known_key(key, keys):
            close = sorted(k for k in keys if k.split(".")[0] == key.split(".")[0])
            hint = f"; keys of {key.split('.')[0]!r}: {close}" if close else ""
            raise ConfigError(f"--set {item!r}: unknown config key {key!r}{hint}")
        try:
            out[key] = read_yaml(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: {yaml_error_line(err, 'VALUE')}") from None
    return out


def known_keys() -> set[str]:
    """Every dotted key a config (or a search space) may set. Loss and model parameters are
    ``loss.params.NAME`` and ``model.params.NAME`` (see :func:`is_known_key` for a plug-in's), and the
    model section's keys of earlier versions (``model.hidden_dim``...) still count."""
    keys = {k for k in _flatten(GanConfig().model_dump(mode="json")) if not k.startswith("loss.params")}
    keys |= {"noise.dim", "data.root", "data.image_size", "scaling.storage_path", "penalty.weight"}
    keys |= {"data.channels", "data.prepared"}
    keys |= {f"loss.params.{p}" for name in LOSSES for p in loss_param_names(name)}
    keys |= {
        f"model.params.{p}" for name in MODELS for p in MODELS[name].param_names() or () if p not in D_OPTIONS
    }
    keys |= {f"model.{k}" for k in LEGACY_MODEL_KEYS}
    return keys


def is_known_key(key: str, keys: set[str] | None = None) -> bool:
    """Whether a config may set ``key``: one of :func:`known_keys`, or a parameter of a plug-in loss or
    model (``loss.params.X`` / ``model.params.X``: the config's validation checks it against the plug-in)."""
    keys = known_keys() if keys is None else keys
    return key in keys or (key.startswith(("loss.params.", "model.params.")) and key.count(".") == 2)


def _section_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed in the config section that holds ``loc`` (None if it is not a config section)."""
    model: type[BaseModel] = GanConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return sorted(model.model_fields)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            allowed = _section_keys(e["loc"])
            expected = f"expected one of {allowed}" if allowed else "check the spelling against the docs"
            lines.append(f"{loc}: unknown key (value {e['input']!r}); {expected}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{loc}: {msg}{shown}")
    return f"invalid config{source}: " + "; ".join(lines)


def validate_config(data: dict[str, Any] | None, source: str = "") -> GanConfig:
    """A :class:`GanConfig` from a plain dict, or a :class:`ConfigError` naming every bad field."""
    try:
        return GanConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


#: Config keys a resumed run may change, and the resume applies: how long and how it trains from here,
#: where it runs, what it is called. Everything else (data, model, noise, loss, seed) defines the game
#: the checkpoint was trained in. Prefixes end with a dot.
RESUMABLE_CHANGES = (
    "name",
    "output_dir",
    "optim.",
    "train.steps",
    "train.eval_every",
    "train.eval_samples",
    "train.d_steps_per_g_step",
    "train.batch_size",
    "train.device",
    "train.precision",
    "train.cuda_graphs",
    "train.ema_decay",
    # How strongly the penalty holds from here, not which one it is.
    "penalty.weight",
    "penalty.schedule",
    "penalty.final_ratio",
    "penalty.burn_in",
    "penalty.every",
    "metrics.",
    "scaling.",
)


def resume_conflicts(trained: GanConfig, resuming: GanConfig) -> list[str]:
    """What ``resuming`` changes that a resume cannot apply, as ``key: old -> new`` lines."""
    old, new = trained.flat(), resuming.flat()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in changed
        if not any(k == c or (c.endswith(".") and k.startswith(c)) for c in RESUMABLE_CHANGES)
    ]


def check_resumable(trained: GanConfig | dict[str, Any], resuming: GanConfig, where: str = "") -> None:
    """Refuse, in one line, to resume a checkpoint under a config that changes the game it was trained in.

    Changes to the keys of :data:`RESUMABLE_CHANGES` are allowed; the resume applies them (the
    optimisers take the new learning rates and betas).
    """
    if isinstance(trained, dict):
        trained = validate_config(trained)
    conflicts = resume_conflicts(trained, resuming)
    if conflicts:
        raise ConfigError(
            f"cannot resume{where}: the checkpoint was trained with another config ({'; '.join(conflicts)}); "
            "set those back, or start a new run (another name or output_dir). A resume may change only "
            + ", ".join(c.rstrip(".") + ("*" if c.endswith(".") else "") for c in RESUMABLE_CHANGES)
        )


def config_yaml(cfg: GanConfig) -> str:
    """The config as YAML, in field order: what ``config.yaml`` files and MLflow artifacts hold."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path) -> GanConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = read_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {yaml_error_line(err, path)}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level, got {type(data).__name__}"
        )
    return validate_config(data, source=f" in {path}")
