"""The metadata is in pyproject.toml; this adds one build step: a wheel carries the
dashboard's pinned front-end files (api/ui/bundle.py), so `pip install` serves /ui/ and
/docs with no npm. An editable install serves them from api/ui/node_modules instead."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithDashboard(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        spec = importlib.util.spec_from_file_location("ui_bundle", HERE / "api/ui/bundle.py")
        assert spec is not None and spec.loader is not None
        bundle = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bundle)
        bundle.copy_vendor(HERE / "api" / "ui", Path(self.build_lib) / "api" / "ui" / "vendor")


setup(cmdclass={"build_py": BuildPyWithDashboard})
