"""trainforge-server's build: the metadata is in pyproject.toml; this adds its runtime
dependencies (with the client of the same release) and one build step: a wheel and an sdist
carry the dashboard's pinned front-end files (api/ui/bundle.py) in api/ui/vendor/, so that
`pip install` serves /ui/ and /docs with no npm, and a wheel builds from the sdist offline.
An editable install serves them from api/ui/node_modules instead (`make ui`)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent  # server/ (its packages are links into the checkout)
UI = HERE / "api" / "ui"
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "trainforge_server" / "version.py").read_text()
)
assert VERSION is not None

DEPENDENCIES = [
    f"trainforge=={VERSION.group(1)}",  # the client: the one CLI's verbs, the SDK
    "fastapi",
    "uvicorn",
    "sqlalchemy>=2",
    "alembic",
    "psycopg[binary]",
    "celery",
    "redis",
    "pydantic-settings",
    "numpy",
    "scikit-learn",
    "safetensors",
    "torch==2.13.0",
    "python-multipart",
    "pillow",
    "prometheus-client",
    "optuna",  # sweeps: random/TPE samplers, ASHA/median pruners (issue 13)
    "onnxruntime",  # POST /v1/jobs/{id}/predict runs a job's exported model (issue 14)
    "pyarrow",  # CSV uploads read column by column (issues 28.8, 29)
]


def _bundle() -> Any:
    spec = importlib.util.spec_from_file_location("ui_bundle", UI / "bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithDashboard(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "api" / "ui" / "vendor"
        if (UI / "vendor").is_dir():  # building from an sdist: the files came with it
            return
        _bundle().copy_vendor(UI, target)


class SdistWithDashboard(sdist):  # type: ignore[misc]
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _bundle().copy_vendor(UI, Path(base_dir) / "api" / "ui" / "vendor")


setup(
    install_requires=DEPENDENCIES,
    cmdclass={"build_py": BuildPyWithDashboard, "sdist": SdistWithDashboard},
)
