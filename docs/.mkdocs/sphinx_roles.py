"""A griffe extension for the API reference: gan_ray's docstrings cross-reference with Sphinx roles
(:func:`train`, :class:`~gan_ray.errors.ConfigError`); Markdown has none, so each becomes inline code."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring's ``:role:`target``` into ```target``` before it is rendered."""

    def on_object(self, *, obj: griffe.Object, **kwargs: object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(r"`\1`", obj.docstring.value)
