"""The errors a user can meet, in one module that imports nothing heavy.

The CLI catches these to print one line; keeping them here lets ``gan-ray --help`` start without
importing torch, Ray or MLflow.
"""

from __future__ import annotations

import math


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the field, the value and what is allowed."""


class SearchSpaceError(ConfigError):
    """A sweep file that cannot run; the message says file:line and the key."""


class StudyNotFoundError(ConfigError):
    """``--resume`` with no study of the sweep in the study storage: resuming must never start over."""


class PluginError(ConfigError):
    """A component named in a config that cannot be used: an unknown name, an import path that does not
    import, a missing attribute, a builder of the wrong signature, a model that breaks its contract."""


class TrialsCannotRunError(ConfigError):
    """A sweep's trial failed before its first eval on an error every trial would meet (a dataset its node
    cannot read, a plug-in that does not import there): the sweep stops instead of running the rest."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the config points (and no download was asked for)."""


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store cannot be reached or written; the message names the URI and why."""


class ClusterError(RuntimeError):
    """The Ray cluster cannot run what was asked (resources, storage); raised before anything starts."""


class FeatureExtractorUnavailable(RuntimeError):
    """The requested feature extractor cannot be built here (a missing package or weights file)."""


class MissingExtraError(RuntimeError):
    """A feature needs packages of an optional extra that are not installed; the message says which."""


class DivergedError(RuntimeError):
    """The losses, D's outputs or G's samples became NaN or infinite."""

    def __init__(self, step: int, metrics: dict[str, float]):
        self.step = step
        self.metrics = metrics
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        super().__init__(f"training diverged by step {step}: non-finite {bad}")


#: What the CLI reports as one ``gan-ray: error:`` line with exit code 2 (bad input, before any work).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    FileNotFoundError,
    TrackingUnavailableError,
    ClusterError,
    FeatureExtractorUnavailable,
    MissingExtraError,
)
