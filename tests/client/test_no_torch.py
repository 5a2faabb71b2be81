"""The user CLI imports no torch, database or broker library: `pip install trainforge` on a
laptop without torch stays possible (import-linter checks the imports it declares; this
checks what importing it really loads)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

HEAVY = ("torch", "sqlalchemy", "celery", "numpy", "api.db", "worker")


def test_importing_the_client_app_loads_no_heavy_module() -> None:
    code = f"import sys, trainforge.client.app; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
