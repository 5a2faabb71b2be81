"""The domain-package move of issue 22, as a script that can be re-run.

``python tools/relayout.py`` (from the repository root) does three things, each idempotent:

1. **Moves** every module of ``MODULES`` (old dotted name -> new dotted name) with
   ``git mv``, and any file that someone added since to a directory this move empties
   (``api/routers/``, ``api/joblist/``, ``api/db/`` outside the kernel) by ``DIR_RULES``;
   new packages get an ``__init__.py``, emptied ones lose theirs.
2. **Rewrites imports** in every Python file: ``from api.db import jobs as repo`` becomes
   ``from api.jobs import repository as repo``, ``from api.db.jobs import fence`` becomes
   ``from api.jobs.repository import fence``; a name that ``SYMBOLS`` sends elsewhere is
   imported from there once its new module defines it (so a hand-made split of a module
   is followed by a re-run of this script, and every importer follows).
3. **Rewrites references** in text: dotted names (``"api.db.jobs.claim_job"`` in a
   ``monkeypatch``, the import-linter contracts, docs) and paths (``api/db/jobs.py``) in
   ``api/``, ``worker/``, ``ml/``, ``trainforge/``, ``tests/``, ``docs/``, ``bench/``,
   ``migrations/``, ``tools/`` and the top-level text files (``pyproject.toml``,
   ``Makefile``, ``README.md`` ...).

Then it runs ``ruff check --fix --select I`` and ``ruff format`` on the files it
changed. A second run on the result changes nothing. ``--dry-run`` prints what it would
do. To replay the move on a tree where other branches landed: run it, commit, apply the
hand-fix commits, run it again (it follows the symbols those commits moved), commit.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

# Old module -> new module. A new name is never an old name (re-runs are no-ops).
MODULES: dict[str, str] = {
    # the jobs domain: the job resource over HTTP (submit, read, list, events, specs)
    "api.routers.jobs": "api.jobs.router",
    "api.routers.events": "api.jobs.events_router",
    "api.routers.specs": "api.jobs.specs_router",
    "api.routers.schemas": "api.jobs.spec_schema_router",
    "api.jobs_service": "api.jobs.service",
    "api.spec_service": "api.jobs.spec_service",
    "api.joblist.service": "api.jobs.list_service",
    "api.joblist.repository": "api.jobs.list_repository",
    "api.joblist.schemas": "api.jobs.list_schemas",
    "api.schemas": "api.jobs.schemas",
    "api.event_hub": "api.jobs.event_hub",
    # the job ledger below every domain that acts on a job (checkpoints, logs, exports,
    # storage, sweeps, webhooks) and below the jobs routes that show it all
    "api.jobs.status": "api.ledger.status",
    "api.db.jobs": "api.ledger.repository",
    "api.db.lifecycle": "api.ledger.lifecycle",
    "api.db.scheduling": "api.ledger.scheduling",
    "api.db.events": "api.ledger.events",
    "api.db.progress": "api.ledger.progress",
    "api.db.series": "api.ledger.series",
    "api.db.metrics": "api.ledger.metrics",
    "api.db.workers": "api.ledger.workers",
    # datasets
    "api.routers.datasets": "api.datasets.router",
    "api.db.datasets": "api.datasets.repository",
    # checkpoints
    "api.routers.checkpoints": "api.checkpoints.router",
    "api.db.checkpoints": "api.checkpoints.repository",
    "api.db.warm_start_pins": "api.checkpoints.warm_start_pins",
    "api.db.warm_start_source": "api.checkpoints.warm_start_source",
    "api.warm_start": "api.checkpoints.warm_start",
    # model exports belong to the predict domain
    "api.db.model_exports": "api.predict.repository",
    # teams: teams, keys, quotas, audit, the admin routes and `trainforge admin`
    "api.routers.admin": "api.teams.router",
    "api.admin_schemas": "api.teams.schemas",
    "api.db.keys": "api.teams.repository",
    "api.db.audit": "api.teams.audit",
    "api.audit": "api.teams.audit_middleware",
    "api.db.admin": "api.teams.admin_service",
    # liveness, readiness, version
    "api.routers.system": "api.system.router",
    # the schema registry imports every domain's tables: it stands above them, not in the kernel
    "api.db.all_models": "api.all_models",
    # names that say what the module holds
    "api.serving": "api.nodelay_protocol",
    "worker.sinks": "worker.metric_sink",
    "worker.operations": "worker.sidecars",
    "worker.threads": "worker.torch_threads",
    # and their tests
    "tests.worker.test_sinks": "tests.worker.test_metric_sink",
    "tests.worker.test_threads": "tests.worker.test_torch_threads",
    "tests.worker.test_operations_worker": "tests.worker.test_sidecars",
    "tests.api.test_serving": "tests.api.test_nodelay_protocol",
}

_DATASET_BODIES = [
    "DatasetFormat",
    "DatasetTaskOption",
    "DatasetTask",
    "DatasetModality",
    "ImputeOption",
    "ColumnType",
    "ColorMode",
    "ArrayLayout",
    "DatasetOptions",
    "DatasetColumn",
    "DatasetClass",
    "TargetSummary",
    "DatasetRead",
    "DatasetPage",
]
_AUTH = ["_UNAUTHORIZED", "bearer_scheme", "require_principal", "PrincipalDep"]

# Top-level definitions that leave a module: (old module name) -> {name: new module}.
# The script moves each one (with its decorators and the comment lines right above it)
# while the old module still defines it and the new one does not, gives the new module
# the imports its code uses, and points every importer at the new place.
SPLITS: dict[str, dict[str, str]] = {
    "api.db.models": {
        "Team": "api.teams.models",
        "ApiKey": "api.teams.models",
        "Job": "api.ledger.models",
        "JobTransition": "api.ledger.models",
        "MetricPoint": "api.ledger.models",
    },
    "api.schemas": {
        **{name: "api.datasets.schemas" for name in _DATASET_BODIES},
        "CheckpointRead": "api.checkpoints.schemas",
        "CheckpointPage": "api.checkpoints.schemas",
        "HealthRead": "api.system.schemas",
    },
    "api.jobs_service": {"team_scope": "api.ledger.access", "get_job_or_404": "api.ledger.access"},
    "api.deps": {
        **{name: "api.teams.auth" for name in _AUTH},
        "require_admin": "api.teams.auth",
        "AdminDep": "api.teams.auth",
    },
}

NEW_MODULE_DOCS: dict[str, str] = {
    "api.ledger.models": "The job ledger's tables: jobs, their status transitions, metric points.",
    "api.teams.models": "Teams and their API keys (only sha256 of a key's secret is stored).",
    "api.datasets.schemas": "Bodies of the /v1/datasets routes, and an upload's options.",
    "api.checkpoints.schemas": "Bodies of the /v1/jobs/{job_id}/checkpoints routes.",
    "api.system.schemas": "The body of /healthz and /readyz.",
    "api.ledger.access": "Which jobs a caller sees: its team's, or every team's with an admin "
    "key; another team's job is a 404.",
    "api.teams.auth": "The caller's API key as FastAPI dependencies (a 401 without a valid "
    "key, a 403 for an admin route without an admin key).",
}

# (old module, name) -> new module, followed once the new module defines the name.
SYMBOLS: dict[tuple[str, str], str] = {
    (old, name): new for old, names in SPLITS.items() for name, new in names.items()
}

# The kernel: what api/db keeps.
KERNEL = {"__init__", "session", "models", "pages", "migrate", "blobs"}

# A file added since to a directory the move empties: (old dir, new dir, name pattern).
DIR_RULES: list[tuple[str, str, str]] = [
    ("api/routers", "api/jobs", "{}_router.py"),
    ("api/joblist", "api/jobs", "list_{}.py"),
    ("api/db", "api/ledger", "{}.py"),  # a new repository about jobs, most likely
]

NEW_PACKAGES: dict[str, str] = {
    "api/checkpoints": "A job's checkpoints: rows, files in the blob store, warm-start sources.",
    "api/teams": "Teams, API keys, quotas and the audit log; the /v1/admin routes.",
    "api/system": "Liveness, readiness and the server's version.",
    "api/ledger": "The job ledger: job rows and their status changes (fenced by the attempt), "
    "events, metrics, progress, scheduling -- what every domain and the worker read and "
    "write about a job.",
}

EMPTIED_PACKAGES = ["api/routers", "api/joblist"]

TEXT_ROOTS = [
    "api",
    "worker",
    "ml",
    "trainforge",
    "trainforge_server",
    "tests",
    "docs",
    "bench",
    "migrations",
    "tools",
]
TOP_FILES = [
    "pyproject.toml",
    "Makefile",
    "README.md",
    "DEVELOPERS.md",
    "Dockerfile",
    "docker-compose.yml",
    "docker-compose.gpu.yml",
    ".ci/run",
    "setup.py",
    "alembic.ini",
]
TEXT_SUFFIXES = {".py", ".md", ".toml", ".ini", ".cfg", ".yml", ".yaml", ".txt", ".sh", ".mako"}
# This script and its test name the old modules on purpose.
EXCLUDED = {Path("tools/relayout.py"), Path("tests/test_relayout.py")}


def path_of(module: str) -> Path:
    return Path(*module.split(".")).with_suffix(".py")


def module_of(path: Path) -> str:
    return ".".join(path.with_suffix("").parts)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def say(dry: bool, what: str) -> None:
    print(("would " if dry else "") + what)


# 1. moves ------------------------------------------------------------------------------


def rule_moves() -> dict[str, str]:
    """Files in an emptied directory that MODULES does not name."""
    named = set(MODULES)
    found: dict[str, str] = {}
    for old_dir, new_dir, pattern in DIR_RULES:
        for path in sorted(Path(old_dir).glob("*.py")):
            module = module_of(path)
            if module in named or path.stem == "__init__":
                continue
            if old_dir == "api/db" and path.stem in KERNEL:
                continue
            found[module] = module_of(Path(new_dir) / pattern.format(path.stem))
    return found


def move_files(mapping: dict[str, str], dry: bool) -> None:
    for new_dir, doc in NEW_PACKAGES.items():
        init = Path(new_dir) / "__init__.py"
        if not init.exists():
            say(dry, f"create {init}")
            if not dry:
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text(docstring(doc))
                git("add", str(init))
    for old, new in mapping.items():
        src, dst = path_of(old), path_of(new)
        if not src.exists():
            continue
        if dst.exists():
            print(f"WARNING: both {src} and {dst} exist; left {src} where it is", file=sys.stderr)
            continue
        say(dry, f"git mv {src} {dst}")
        if not dry:
            dst.parent.mkdir(parents=True, exist_ok=True)
            git("mv", str(src), str(dst))
    for pkg in EMPTIED_PACKAGES:
        init = Path(pkg) / "__init__.py"
        rest = [p for p in Path(pkg).glob("*") if p.name not in {"__init__.py", "__pycache__"}]
        if init.exists() and not rest:
            say(dry, f"git rm {init}")
            if not dry:
                git("rm", "-q", str(init))


def docstring(text: str) -> str:
    return '"""' + textwrap.fill(text, width=88, break_on_hyphens=False) + '"""\n'


# 1b. splits -----------------------------------------------------------------------------


def bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def used_names(nodes: list[ast.stmt]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def import_bindings(tree: ast.Module) -> dict[str, str]:
    """Name bound by a top-level import -> the statement that binds it alone."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            for a in node.names:
                alias = f" as {a.asname}" if a.asname else ""
                out[a.asname or a.name] = f"from {node.module} import {a.name}{alias}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                out[bound] = f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
    return out


def block_span(node: ast.stmt, lines: list[str]) -> tuple[int, int]:
    """0-based first and last line of a definition, its decorators and comments above."""
    decorators = getattr(node, "decorator_list", [])
    first = (decorators[0].lineno if decorators else node.lineno) - 1
    while first > 0 and lines[first - 1].lstrip().startswith("#"):
        first -= 1
    return first, (node.end_lineno or node.lineno) - 1


def after_imports(lines: list[str], tree: ast.Module) -> int:
    """The line index after the module's last top-level import (or its docstring)."""
    last = 0
    for node in tree.body:
        is_import = isinstance(node, (ast.Import, ast.ImportFrom))
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if is_import or (is_doc and not last):
            last = node.end_lineno or node.lineno
    return last


def split_module(old: str, names: dict[str, str], mapping: dict[str, str], dry: bool) -> list[Path]:
    src_module = renamed(old, mapping)
    src = path_of(src_module)
    if not src.exists():
        return []
    text = src.read_text()
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    moving: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        bound = bound_names(node)
        targets = {names[b] for b in bound if b in names}
        if len(targets) == 1 and not any(defines(t, b) for t in targets for b in bound):
            moving.setdefault(targets.pop(), []).append(node)
    if not moving:
        return []
    imports = import_bindings(tree)
    moved_to = {b: t for t, nodes in moving.items() for n in nodes for b in bound_names(n)}
    staying = {b for node in tree.body for b in bound_names(node)} - set(moved_to)
    touched = [src]
    drop: list[tuple[int, int]] = []
    for target, nodes in moving.items():
        used = used_names(nodes)
        wanted = [imports[n] for n in sorted(used) if n in imports]
        wanted += [f"from {src_module} import {n}" for n in sorted(used & staying)]
        wanted += [
            f"from {moved_to[n]} import {n}"
            for n in sorted(used)
            if moved_to.get(n, target) != target
        ]
        blocks = []
        for node in nodes:
            first, last = block_span(node, lines)
            drop.append((first, last))
            blocks.append("".join(lines[first : last + 1]).rstrip() + "\n")
        path = path_of(target)
        say(dry, f"move {', '.join(b for n in nodes for b in bound_names(n))} {src} -> {path}")
        if dry:
            continue
        if path.exists():
            head = path.read_text().rstrip() + "\n"
        else:
            head = (
                docstring(NEW_MODULE_DOCS.get(target, target))
                + "\nfrom __future__ import annotations\n"
            )
        body = head + "\n" + "\n".join(wanted) + "\n\n\n" + "\n\n".join(blocks)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        git("add", str(path))
        touched.append(path)
    if dry:
        return []
    for first, last in sorted(drop, reverse=True):
        del lines[first : last + 1]
    rest = ast.parse("".join(lines))
    back = used_names(list(rest.body)) & set(moved_to)
    at = after_imports(lines, rest)
    extra = [f"from {moved_to[n]} import {n}\n" for n in sorted(back)]
    lines[at:at] = extra
    src.write_text("".join(lines))
    return touched


def split_all(mapping: dict[str, str], dry: bool) -> list[Path]:
    touched: list[Path] = []
    for old, names in SPLITS.items():
        touched += split_module(old, names, mapping, dry)
    return touched


# 2. imports ----------------------------------------------------------------------------


def defines(module: str, name: str) -> bool:
    path = path_of(module)
    if not path.exists():
        return False
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == name:
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def active_symbols() -> dict[tuple[str, str], str]:
    return {key: new for key, new in SYMBOLS.items() if defines(new, key[1])}


def renamed(module: str, mapping: dict[str, str]) -> str:
    for old in sorted(mapping, key=len, reverse=True):
        if module == old or module.startswith(old + "."):
            return mapping[old] + module[len(old) :]
    return module


def new_import_from(
    node: ast.ImportFrom, mapping: dict[str, str], symbols: dict[tuple[str, str], str]
) -> list[tuple[str, str, str | None]] | None:
    """The (module, name, alias) triples the statement becomes, or None if unchanged."""
    assert node.module is not None
    out: list[tuple[str, str, str | None]] = []
    changed = False
    for alias in node.names:
        module, name, asname = node.module, alias.name, alias.asname
        full = f"{module}.{name}"
        if full in mapping:  # `from api.db import jobs [as repo]`
            new_full = mapping[full]
            parent, _, leaf = new_full.rpartition(".")
            alias_name = asname or name
            out.append((parent, leaf, None if alias_name == leaf else alias_name))
            changed = True
            continue
        moved = symbols.get((module, name)) or symbols.get((renamed(module, mapping), name))
        new_module = moved or renamed(module, mapping)
        changed |= new_module != module
        out.append((new_module, name, asname))
    return out if changed else None


def render(triples: list[tuple[str, str, str | None]], indent: str) -> str:
    by_module: dict[str, list[str]] = {}
    for module, name, asname in triples:
        # `X as X` (an explicit re-export) stays as written
        text = name if asname is None else f"{name} as {asname}"
        by_module.setdefault(module, []).append(text)
    lines = [f"{indent}from {m} import {', '.join(names)}" for m, names in by_module.items()]
    return "\n".join(lines)


def rewrite_imports(
    source: str, mapping: dict[str, str], symbols: dict[tuple[str, str], str]
) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
            continue
        triples = new_import_from(node, mapping, symbols)
        if triples is None:
            continue
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        head = lines[first][: node.col_offset]
        if head.strip():  # `if x: from a import b` on one line: leave it to the text pass
            continue
        tail = lines[last][node.end_col_offset or 0 :]
        inner = "".join(lines[first : last + 1])
        if "#" in inner[: len(inner) - len(tail)]:
            print(f"note: a comment inside an import was dropped ({node.module})", file=sys.stderr)
        edits.append((first, last, render(triples, head) + (tail if tail.strip() else "\n")))
    for first, last, text in sorted(edits, reverse=True):
        lines[first : last + 1] = [text]
    return "".join(lines)


# 3. text references --------------------------------------------------------------------


Pattern = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def text_patterns(mapping: dict[str, str]) -> list[Pattern]:
    """Three passes, each one regex over every old name (longest first): dotted names,
    `from api.db import jobs` written in a string (code run in a subprocess), paths."""
    olds = sorted(mapping, key=len, reverse=True)
    dotted = "|".join(re.escape(old) for old in olds)
    paths = {str(path_of(old)): str(path_of(mapping[old])) for old in olds}
    in_text: dict[str, str] = {}
    for old in olds:
        old_parent, _, old_leaf = old.rpartition(".")
        new_parent, _, new_leaf = mapping[old].rpartition(".")
        alias = "" if old_leaf == new_leaf else f" as {old_leaf}"
        in_text[f"from {old_parent} import {old_leaf}"] = (
            f"from {new_parent} import {new_leaf}{alias}"
        )
    return [
        (re.compile(r"(?<![\w.])(" + dotted + r")(?![\w])"), lambda m: mapping[m.group(1)]),
        (
            re.compile(
                r"(?<![\w.])(" + "|".join(re.escape(k) for k in in_text) + r")(?![\w,])(?!\s+as\b)"
            ),
            lambda m: in_text[m.group(1)],
        ),
        (
            re.compile(r"(?<![\w/.])(" + "|".join(re.escape(k) for k in paths) + r")(?![\w])"),
            lambda m: paths[m.group(1)],
        ),
    ]


def rewrite_text(text: str, patterns: list[Pattern]) -> str:
    for pattern, new in patterns:
        text = pattern.sub(new, text)
    return text


def text_files() -> list[Path]:
    tracked = git("ls-files", "-co", "--exclude-standard").splitlines()
    files = []
    for name in tracked:
        path = Path(name)
        if path in EXCLUDED or not path.is_file():
            continue
        if name in TOP_FILES or (path.parts[0] in TEXT_ROOTS and path.suffix in TEXT_SUFFIXES):
            files.append(path)
    return files


def rewrite_all(mapping: dict[str, str], dry: bool) -> list[Path]:
    symbols = active_symbols()
    patterns = text_patterns(mapping)
    changed = []
    for path in text_files():
        before = path.read_text()
        after = rewrite_imports(before, mapping, symbols) if path.suffix == ".py" else before
        after = rewrite_text(after, patterns)
        if after != before:
            changed.append(path)
            say(dry, f"rewrite {path}")
            if not dry:
                path.write_text(after)
    return changed


def tidy(paths: list[Path], unused: list[Path]) -> None:
    """Sort the imports of every changed file; drop the ones a split left unused."""
    py = [str(p) for p in paths if p.suffix == ".py"]
    if not py:
        return
    ruff = str(Path(sys.executable).with_name("ruff"))
    if unused:
        split = [str(p) for p in unused]
        subprocess.run([ruff, "check", "-q", "--fix", "--select", "F401", *split], check=False)
    subprocess.run([ruff, "check", "-q", "--fix", "--select", "I", *py], check=False)
    subprocess.run([ruff, "format", "-q", *py], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if not Path("pyproject.toml").exists() or not Path("api").is_dir():
        print("run me from the repository root", file=sys.stderr)
        return 2
    for old, new in MODULES.items():
        clash = [o for o in MODULES if new == o or new.startswith(o + ".")]
        assert not clash, f"{old} -> {new} lands on an old name {clash}"
    mapping = {**MODULES, **rule_moves()}
    for module in sorted(set(mapping) - set(MODULES)):
        print(f"rule move (not in MODULES): {module} -> {mapping[module]}", file=sys.stderr)
    move_files(mapping, args.dry_run)
    split = split_all(mapping, args.dry_run)
    changed = rewrite_all(mapping, args.dry_run)
    if not args.dry_run:
        tidy(sorted(set(changed) | set(split)), unused=split)
    print(f"{len(changed)} files rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
