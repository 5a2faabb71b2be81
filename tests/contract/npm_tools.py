"""openapi-typescript and typescript, pinned by ts/package-lock.json, installed once.

They go to ``.cache/npm-tools/<hash of the lock file>/`` in the repository (ignored
by git), so a change of pinned versions installs afresh and nothing else does.
``python -m tests.contract.npm_tools`` (``make npm-tools``) installs them ahead of
time; the TypeScript contract test calls the same code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCK = HERE / "ts" / "package-lock.json"
MANIFEST = HERE / "ts" / "package.json"
CACHE = REPO / ".cache" / "npm-tools"


def tools_dir() -> Path:
    key = hashlib.sha256(MANIFEST.read_bytes() + LOCK.read_bytes()).hexdigest()[:16]
    return CACHE / key


def bin_path(name: str) -> Path:
    return tools_dir() / "node_modules" / ".bin" / name


def install() -> Path:
    """Install the pinned tools unless already there; return their folder."""
    target = tools_dir()
    if (target / ".installed").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed (Node.js 18+ with npm is needed)")
    CACHE.mkdir(parents=True, exist_ok=True)
    # Install beside the target, then rename: two concurrent runs never see half a tree.
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=CACHE))
    try:
        shutil.copy(MANIFEST, staging / "package.json")
        shutil.copy(LOCK, staging / "package-lock.json")
        env = {**os.environ, "npm_config_update_notifier": "false"}
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        (staging / ".installed").touch()
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".installed").exists():  # not a concurrent run's finished tree
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":
    try:
        print(install())
    except subprocess.CalledProcessError as exc:
        sys.exit(f"npm ci failed:\n{exc.stdout.decode(errors='replace')}")
