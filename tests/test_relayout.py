"""tools/relayout.py: the rewrites it makes, and that the tree is already in its layout."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("relayout", REPO / "tools" / "relayout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["relayout"] = module
    spec.loader.exec_module(module)
    return module


relayout = _load()


def test_from_imports_follow_the_module_map() -> None:
    source = (
        "from api.db import jobs as repo, pages\n"
        "from api.routers import admin, jobs  # the routers\n"
        "from api import jobs_service\n"
        "def f() -> None:\n"
        "    from api.db.jobs import (\n"
        "        TERMINAL,\n"
        "        fence,\n"
        "    )\n"
    )
    out = relayout.rewrite_imports(source, relayout.MODULES, {})
    assert out == (
        "from api.ledger import repository as repo\n"
        "from api.db import pages\n"
        "from api.teams import router as admin\n"
        "from api.jobs import router as jobs  # the routers\n"
        "from api.jobs import service as jobs_service\n"
        "def f() -> None:\n"
        "    from api.ledger.repository import TERMINAL, fence\n"
    )


def test_a_split_name_is_imported_from_its_new_module_once_that_defines_it() -> None:
    source = "from api.schemas import DatasetRead, JobRead\n"
    symbols = {("api.schemas", "DatasetRead"): "api.datasets.schemas"}
    out = relayout.rewrite_imports(source, relayout.MODULES, symbols)
    assert out == (
        "from api.datasets.schemas import DatasetRead\nfrom api.jobs.schemas import JobRead\n"
    )


def test_text_references_dotted_paths_and_imports_in_strings() -> None:
    patterns = relayout.text_patterns(relayout.MODULES)
    text = (
        'monkeypatch.setattr("api.db.jobs.claim_job", f)\n'
        "see api/db/jobs.py and api.sweeps.schemas, not api.schemas_x\n"
        '"import api.app; from api.db import jobs; jobs._OBSERVERS"\n'
        '"from api.db import jobs as j"\n'
    )
    assert relayout.rewrite_text(text, patterns) == (
        'monkeypatch.setattr("api.ledger.repository.claim_job", f)\n'
        "see api/ledger/repository.py and api.sweeps.schemas, not api.schemas_x\n"
        '"import api.app; from api.ledger import repository as jobs; jobs._OBSERVERS"\n'
        '"from api.db import jobs as j"\n'
    )


def test_no_new_name_is_an_old_one() -> None:
    for new in relayout.MODULES.values():
        assert not any(new == old or new.startswith(old + ".") for old in relayout.MODULES)


@pytest.mark.e2e  # a process of its own (see below)
def test_the_tree_is_in_the_new_layout() -> None:
    """A dry run moves nothing and rewrites nothing: no file is left at an old place and no
    import, dotted name or path names an old module.

    In a fresh interpreter: CPython 3.11.7's ``ast.parse`` can fail with "AST constructor
    recursion depth mismatch" in a process where an earlier test hit a RecursionError
    (a unit worker that ran the deep-nesting input tests first, as CI's run of 2026-12-07)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "relayout.py"), "--dry-run"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ["0 files rewritten"], done.stdout
