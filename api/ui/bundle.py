"""Which files of the pinned front-end packages the dashboard serves, and their copy into a
built wheel or sdist (``api/ui/vendor/``). Standard library only: server/setup.py loads this
file by path at build time, before any dependency is installed.

Two kinds: files served straight from an npm package (``PACKAGES``), and bundles that
``npm run build`` (esbuild, a devDependency) makes from packages -- the spec editor's
CodeMirror 6, many ES modules with bare imports, is one file (``BUILT``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

# served name -> (npm package, its folder that is served, the files shipped; None: all)
PACKAGES: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    "uplot": ("uplot", "dist", ("uPlot.esm.js", "uPlot.min.css")),
    "yaml": ("yaml", "browser/dist", None),
    "swagger-ui": (
        "swagger-ui-dist",
        "",
        ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "oauth2-redirect.html"),
    ),
}
# served name -> (the folder under api/ui that `npm run build` writes, its files, the npm
# package whose LICENSE ships with it, the sources it is built from)
BUILT: dict[str, tuple[str, tuple[str, ...], str, tuple[str, ...]]] = {
    "codemirror": (
        "dist/codemirror",
        ("codemirror.js",),
        "codemirror",
        ("editor/codemirror.js", "package-lock.json"),
    ),
}
FIX = "run `make ui` (npm ci and npm run build in api/ui), or install a built wheel (`make dist`)"


def pinned_versions(ui_dir: Path) -> dict[str, str]:
    lock = json.loads((ui_dir / "package-lock.json").read_text(encoding="utf-8"))
    packages = lock.get("packages") or {}
    return {
        npm: str(packages.get(f"node_modules/{npm}", {}).get("version"))
        for npm, _, _ in PACKAGES.values()
    }


def installed_version(ui_dir: Path, npm: str) -> str | None:
    manifest = ui_dir / "node_modules" / npm / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text(encoding="utf-8")).get("version"))


def ensure_node_modules(ui_dir: Path) -> None:
    """node_modules as package-lock.json pins it: ``npm ci`` when it is not."""
    wanted = pinned_versions(ui_dir)
    if all(installed_version(ui_dir, npm) == v for npm, v in wanted.items()):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            f"building the dashboard needs {wanted} in {ui_dir / 'node_modules'} "
            "(npm ci --ignore-scripts) and npm is not on the PATH"
        )
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=ui_dir,
                   check=True)  # fmt: skip
    missing = {n: v for n, v in wanted.items() if installed_version(ui_dir, n) != v}
    if missing:
        raise SystemExit(f"npm ci did not install {missing} in {ui_dir / 'node_modules'}")


def ensure_built(ui_dir: Path) -> None:
    """The bundles of ``BUILT``, rebuilt (``npm run build``) when missing or older than
    their sources."""
    stale = False
    for folder, files, _, sources in BUILT.values():
        outputs = [ui_dir / folder / name for name in files]
        newest = max((ui_dir / src).stat().st_mtime for src in sources)
        stale |= not all(o.is_file() and o.stat().st_mtime >= newest for o in outputs)
    if not stale:
        return
    ensure_node_modules(ui_dir)
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"building the dashboard's bundles needs npm on the PATH ({FIX})")
    subprocess.run([npm, "run", "build"], cwd=ui_dir, check=True)


def copy_vendor(ui_dir: Path, target: Path) -> list[Path]:
    """The shipped files into ``target/<served name>/``; returns them."""
    ensure_node_modules(ui_dir)
    ensure_built(ui_dir)
    shutil.rmtree(target, ignore_errors=True)
    copied: list[Path] = []
    for served, (npm, folder, files) in PACKAGES.items():
        package = ui_dir / "node_modules" / npm
        source = package / folder
        out = target / served
        if files is None:
            shutil.copytree(source, out)
            copied.extend(p for p in out.rglob("*") if p.is_file())
        else:
            out.mkdir(parents=True)
            for name in files:
                copied.append(Path(shutil.copy2(source / name, out / name)))
        if (package / "LICENSE").is_file():
            copied.append(Path(shutil.copy2(package / "LICENSE", out / "LICENSE")))
    for served, (folder, files, licensed, _) in BUILT.items():
        out = target / served
        out.mkdir(parents=True)
        for name in files:
            copied.append(Path(shutil.copy2(ui_dir / folder / name, out / name)))
        license_file = ui_dir / "node_modules" / licensed / "LICENSE"
        if license_file.is_file():
            copied.append(Path(shutil.copy2(license_file, out / "LICENSE")))
    return copied
