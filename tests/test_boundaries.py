"""The spec is importable without torch (the API relies on it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


@pytest.mark.e2e
def test_importing_the_api_and_the_spec_does_not_import_torch() -> None:
    code = (
        "import sys, ml.spec, ml.checks, ml.plan, api.app; "
        "bad = [m for m in ('torch', 'worker') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
