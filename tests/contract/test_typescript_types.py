"""TypeScript types generated from the committed openapi.json (openapi-typescript)
type-check a job spec under `tsc --strict`, and reject wrong variants."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.contract import npm_tools

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parent / "ts" / "spec_example.ts"


def _run(args: list[str], cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}{result.stderr}"


def test_generated_types_check_a_spec_and_discriminate_its_variants(tmp_path: Path) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are needed for the TypeScript contract test in CI")
        pytest.skip("node/npm not installed: the TypeScript contract test needs them")
    try:
        npm_tools.install()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"npm ci failed for tests/contract/ts:\n{exc.stdout.decode(errors='replace')}")
    assert "@ts-expect-error" in EXAMPLE.read_text()
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    # --default-non-nullable false: a field with a default is optional to send.
    _run(
        [
            str(npm_tools.bin_path("openapi-typescript")),
            str(REPO / "openapi.json"),
            "--output",
            str(tmp_path / "api.d.ts"),
            "--default-non-nullable",
            "false",
        ],
        tmp_path,
    )
    # An unused `@ts-expect-error` is itself an error: the wrong variants must fail.
    _run(
        [
            str(npm_tools.bin_path("tsc")),
            "--strict",
            "--noEmit",
            "--target",
            "es2022",
            "--lib",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            EXAMPLE.name,
        ],
        tmp_path,
    )
