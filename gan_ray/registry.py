"""Components by name: one small registry type behind every table a config names a component from
(datasets, models, losses, penalties, noise, feature extractors).

A name resolves in this order: the built-ins; then a ``package.module:attr`` import path written in the
config; then a Python entry point of the registry's group (``gan_ray.models``, ``gan_ray.losses``, ...).
Configs travel to Ray Train workers and Tune trial processes as data, and every process resolves the
name itself, so a plug-in reaches them as long as its module imports there; a ``register()`` made only
in the driver would not (which is why there is no such call). Stdlib only: the lowest floor.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any, Generic, TypeVar

from gan_ray.errors import PluginError

T = TypeVar("T")

#: ``package.module:attr`` (attr may be dotted: ``pkg.mod:Class.factory``).
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_import_path(name: str) -> bool:
    """Whether ``name`` is written as ``package.module:attr``."""
    return bool(IMPORT_PATH.match(name))


def import_object(path: str, what: str = "plug-in") -> object:
    """The object at ``package.module:attr``, or a :class:`PluginError` in one line saying which part failed."""
    module_name, _, attr = path.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as err:  # any import-time failure of a user's module is theirs to read in one line
        raise PluginError(
            f"{what} {path!r}: module {module_name!r} does not import ({type(err).__name__}: {err}); "
            "install it, or put its folder on PYTHONPATH on every node"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = sorted(n for n in dir(obj) if not n.startswith("_"))[:20]
            raise PluginError(
                f"{what} {path!r}: {module_name!r} has no attribute {attr!r} (it has {names})"
            ) from None
    return obj


def require_callable(kind: str, contract: str) -> Callable[[str, object], Any]:
    """The converter of a registry whose plug-ins are plain functions: the object itself, or one line
    naming the contract it had to meet."""

    def convert(name: str, obj: object) -> Any:
        if not callable(obj):
            raise PluginError(f"{kind} {name!r} is {obj!r}; expected {contract}")
        return obj

    return convert


class Registry(Generic[T]):
    """A table of built-in components of one kind, open to plug-ins by import path or entry point.

    ``convert`` turns a resolved object into the registry's value type (and checks it): built-ins are
    stored converted, plug-ins are converted when first resolved and then cached by name.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        builtins: Mapping[str, T] | None = None,
        convert: Callable[[str, object], T] | None = None,
    ):
        self.kind, self.group = kind, group
        self._builtins: dict[str, T] = dict(builtins or {})
        self._plugins: dict[str, T] = {}
        self._convert = convert

    def add(self, name: str, value: T) -> T:
        """Add a built-in (gan_ray's own tables are filled this way, in their modules)."""
        if name in self._builtins:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._builtins[name] = value
        return value

    @property
    def builtins(self) -> tuple[str, ...]:
        """The built-in names, in the order they were added."""
        return tuple(self._builtins)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.resolve(name)
        except PluginError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._builtins)

    def __getitem__(self, name: str) -> T:
        return self.resolve(name)

    def resolve(self, name: str) -> T:
        """The component called ``name``: a built-in, an import path, or an entry point of ``group``."""
        if name in self._builtins:
            return self._builtins[name]
        if name in self._plugins:
            return self._plugins[name]
        if is_import_path(name):
            obj = import_object(name, self.kind)
        else:
            obj = self._entry_point(name)
        value = self._convert(name, obj) if self._convert is not None else obj  # type: ignore[assignment]
        self._plugins[name] = value  # type: ignore[assignment]
        return value  # type: ignore[return-value]

    def _entry_point(self, name: str) -> object:
        found = [ep for ep in metadata.entry_points(group=self.group) if ep.name == name]
        if not found:
            raise PluginError(self.unknown_message(name))
        try:
            return found[0].load()
        except Exception as err:
            raise PluginError(
                f"{self.kind} {name!r}: entry point {found[0].value!r} of group {self.group!r} does not "
                f"load ({type(err).__name__}: {err})"
            ) from None

    def unknown_message(self, name: str) -> str:
        """One line: the name, the built-ins, and how to plug one in."""
        plugged = sorted({ep.name for ep in metadata.entry_points(group=self.group)})
        installed = f", installed plug-ins {plugged}" if plugged else ""
        return (
            f"unknown {self.kind} {name!r}; built-ins are {list(self._builtins)}{installed}; plug one in by "
            f"import path 'package.module:attr' or an entry point in group {self.group!r}"
        )
