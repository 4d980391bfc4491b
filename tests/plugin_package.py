"""A small package of gan_ray plug-ins (docs/examples/plugins.py as ``my_gan_plugins``, with the entry
points of docs/extending.md), installed for real (pip) into a folder that the test session and
its Ray processes put on their path: the entry-point route of tests/test_plugins.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "plugins.py"

#: entry-point group -> name -> the example module's attribute.
ENTRY_POINTS = {
    "gan_ray.datasets": {"ring3": "RING3", "shapes8": "SHAPES"},
    "gan_ray.models": {"flat_mlp": "FLAT_MLP"},
    "gan_ray.losses": {"soft_hinge": "SoftHinge"},
    "gan_ray.noise": {"laplace": "laplace"},
    "gan_ray.penalties": {"logit_decay": "logit_decay"},
}


def pyproject() -> str:
    lines = ["[project]", 'name = "gan-ray-demo-plugins"', 'version = "0.1.0"', ""]
    for group, names in ENTRY_POINTS.items():
        lines.append(f'[project.entry-points."{group}"]')
        lines += [f'{name} = "my_gan_plugins:{attr}"' for name, attr in names.items()]
        lines.append("")
    lines += ["[tool.setuptools]", 'py-modules = ["my_gan_plugins"]', ""]
    lines += ["[build-system]", 'requires = ["setuptools"]', 'build-backend = "setuptools.build_meta"']
    return "\n".join(lines) + "\n"


def install(workdir: Path) -> Path:
    """Build the package from source and pip-install it into ``workdir/site``; returns that folder."""
    src = workdir / "src"
    src.mkdir(parents=True)
    # The module under the name docs/extending.md's entry points give it (the example file is "plugins").
    shutil.copy(EXAMPLE, src / "my_gan_plugins.py")
    (src / "pyproject.toml").write_text(pyproject())
    site = workdir / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    return site
