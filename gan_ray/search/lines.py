"""A sweep file parsed with the line of every key, and the one error format pointing into it:
``FILE:LINE: key.path: message``, also for the pydantic models that validate its sections."""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gan_ray.config import YamlLoader, read_yaml, yaml_error_line
from gan_ray.errors import SearchSpaceError

Model = TypeVar("Model", bound=BaseModel)


class SourceLines:
    """Where each key of a sweep file is: errors name the file, the line and the dotted key path."""

    def __init__(self, source: str, lines: dict[tuple[str, ...], int]):
        self.source, self.lines = source, lines

    def fail(self, path: tuple[str, ...], message: str) -> SearchSpaceError:
        """The error for ``path`` (at the line of its deepest key the file has)."""
        line = None
        for i in range(len(path), 0, -1):
            line = self.lines.get(path[:i])
            if line is not None:
                break
        where = f"{self.source}:{line}" if line else self.source
        return SearchSpaceError(f"{where}: {'.'.join(path) or '<top level>'}: {message}")

    def validate(
        self, path: tuple[str, ...], model: type[Model], raw: dict[str, Any], context: Any = None
    ) -> Model:
        """Section ``path`` of the file as ``model``; its first error is raised at its key's line."""
        try:
            return model.model_validate(raw, context=context)
        except ValidationError as err:
            first = err.errors()[0]
            raise self.fail(path + tuple(str(p) for p in first["loc"]), _message(first)) from None


def _message(error: Any) -> str:
    """A validator's own message (pydantic prefixes a ValueError's with "Value error, ")."""
    raised = error.get("ctx", {}).get("error")
    return str(raised) if isinstance(raised, ValueError) else error["msg"]


def compose(text: str, source: str) -> tuple[Any, SourceLines]:
    """The file's data, and the line of each mapping key keyed by its path."""
    try:
        node = yaml.compose(text, Loader=YamlLoader)
    except yaml.YAMLError as err:
        raise SearchSpaceError(yaml_error_line(err, source)) from None
    lines: dict[tuple[str, ...], int] = {}

    def walk(n, path: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = str(k.value)
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))

    if node is not None:
        walk(node, ())
    return read_yaml(text), SourceLines(source, lines)
