"""The ``parameters:`` section of a sweep file: each dotted config key with a distribution, a fixed value
or a tie to another key, maybe under a condition; and the points a file asks to try first."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gan_ray.config import is_known_key, known_keys
from gan_ray.search.lines import SourceLines

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "log_int", "choice")


@dataclass(frozen=True)
class Param:
    """One searched parameter: a distribution over a dotted config key, maybe active only under ``when``."""

    key: str
    kind: str  # one of DISTRIBUTIONS, "fixed", or "same_as" (value: the key whose value it copies)
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(k in chosen and chosen[k] in allowed for k, allowed in self.when.items())

    def suggest(self, trial) -> Any:
        """Draw this parameter from an Optuna trial (define-by-run)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.kind == "log_int")
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log_uniform")

    def corners(self) -> list[Any]:
        """The extreme values, used to check every branch of the space against the config schema."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "log_int"):
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


# A parameter with no value, told apart from a chosen None.
UNSET: Any = object()


def read_params(lines: SourceLines, raw: Any) -> list[Param]:
    """The ``parameters:`` mapping as :class:`Param` s in file order; a condition or tie names a parameter
    above it."""
    if not isinstance(raw, dict) or not raw:
        raise lines.fail(("parameters",), "expected a mapping of dotted config keys to distributions")
    allowed = known_keys()
    params = [_param(lines, str(k), v, allowed) for k, v in raw.items()]
    _check_conditions(lines, params)
    return params


def _param(lines: SourceLines, key: str, spec: Any, allowed_keys: set[str]) -> Param:
    path = ("parameters", key)
    _check_key(lines, path, key, allowed_keys)
    if not isinstance(spec, dict):
        return Param(key, "fixed", value=spec)
    spec = dict(spec)
    when = _when(lines, path, spec.pop("when", None))
    if "value" in spec and len(spec) == 1:
        return Param(key, "fixed", value=spec["value"], when=when)
    if "same_as" in spec and len(spec) == 1:
        if spec["same_as"] not in allowed_keys:
            raise lines.fail(path + ("same_as",), f"unknown parameter {spec['same_as']!r}")
        return Param(key, "same_as", value=spec["same_as"], when=when)
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    if len(kinds) != 1 or len(spec) != 1:
        raise lines.fail(
            path, f"expected exactly one of {list(DISTRIBUTIONS)} (plus optional 'when'), got {sorted(spec)}"
        )
    kind = kinds[0]
    if kind == "choice":
        if not isinstance(spec[kind], list) or not spec[kind]:
            raise lines.fail(path + (kind,), "choice needs a non-empty list")
        return Param(key, kind, choices=tuple(spec[kind]), when=when)
    low, high = _range(lines, path + (kind,), kind, spec[kind])
    return Param(key, kind, low=low, high=high, when=when)


def _check_key(lines: SourceLines, path: tuple[str, ...], key: str, allowed_keys: set[str]) -> None:
    if is_known_key(key, allowed_keys):  # a plug-in's loss.params.X / model.params.X: its config checks it
        return
    near = sorted(k for k in allowed_keys if k.split(".")[-1] == key.split(".")[-1])
    hint = f"; did you mean {near}?" if near else "; see gan_ray.config.known_keys() for the searchable keys"
    raise lines.fail(path, f"unknown parameter {key!r}{hint}")


def _when(lines: SourceLines, path: tuple[str, ...], raw: Any) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise lines.fail(path + ("when",), "expected a mapping like {loss.name: wasserstein}")
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in raw.items()}


def _range(lines: SourceLines, path: tuple[str, ...], kind: str, arg: Any) -> tuple[float, float]:
    """The [low, high] of a numeric distribution, checked for its kind."""
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(x, (int, float)) for x in arg)):
        raise lines.fail(path, f"{kind} needs [low, high] numbers, got {arg!r}")
    low, high = float(arg[0]), float(arg[1])
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise lines.fail(path, f"empty range [{arg[0]}, {arg[1]}]: low must be < high")
    if kind.startswith("log") and low <= 0:
        raise lines.fail(path, f"{kind} needs low > 0, got {arg[0]}")
    if kind in ("int", "log_int") and not (low.is_integer() and high.is_integer()):
        raise lines.fail(path, f"{kind} needs integer bounds, got {arg!r}")
    return low, high


def _check_conditions(lines: SourceLines, params: list[Param]) -> None:
    seen: dict[str, Param] = {}
    for p in params:
        if p.kind == "same_as" and p.value not in seen:
            # Ties are resolved in file order: a later or missing target would leave the key at the base
            # config's value in silence.
            raise lines.fail(
                ("parameters", p.key, "same_as"),
                f"{p.value!r} is not a parameter listed above this one (a tie copies a value already chosen)",
            )
        for parent, values in p.when.items():
            path = ("parameters", p.key, "when", parent)
            if parent not in seen:
                raise lines.fail(
                    path, f"condition on {parent!r}, which is not a parameter listed above this one"
                )
            options = seen[parent].corners() if seen[parent].kind in ("choice", "fixed") else None
            if options is None:
                raise lines.fail(
                    path, f"conditions must be on a choice parameter; {parent!r} is {seen[parent].kind}"
                )
            bad = [v for v in values if v not in options]
            if bad:
                raise lines.fail(path, f"{bad} not among {parent!r}'s choices {options}")
        seen[p.key] = p


def initial_points(raw: Any, params: list[Param]) -> tuple[dict[str, Any], ...]:
    """Points to try first, each a full assignment of the searched parameters active in it; a bad one
    is a ValueError naming it (``search.initial_points`` is where the file has them)."""
    if not isinstance(raw, list):
        raise ValueError("expected a list of {parameter: value} mappings")
    return tuple(_initial_point(i, point, params) for i, point in enumerate(raw))


def _initial_point(i: int, point: Any, params: list[Param]) -> dict[str, Any]:
    searched = {p.key: p for p in params if p.kind != "fixed"}
    if not isinstance(point, dict):
        raise ValueError(f"point {i}: expected a mapping, got {point!r}")
    unknown = sorted(set(point) - set(searched))
    if unknown:
        raise ValueError(f"point {i}: {unknown} are not searched parameters ({sorted(searched)})")
    chosen: dict[str, Any] = {}
    for p in params:
        if p.kind == "fixed" or not p.active(chosen):
            continue
        if p.key not in point:
            raise ValueError(f"point {i}: missing {p.key!r} (active under this point's choices)")
        value = point[p.key]
        ok = value in p.choices if p.kind == "choice" else p.low <= value <= p.high
        if not ok:
            raise ValueError(f"point {i}: {p.key}={value!r} is outside its distribution")
        chosen[p.key] = value
    extra = sorted(set(point) - set(chosen))
    if extra:
        raise ValueError(f"point {i}: {extra} do not apply under this point's choices")
    return chosen
