"""The distributions as users install them (issue 25): both wheels built from this checkout
(`trainforge`, the client; `trainforge-server`), installed into fresh venvs. The client wheel
alone on Python 3.10 to 3.13 carries no server code and makes a venv under 60 MB (`du -sm`
of the whole venv, its own pip included); on 3.10 and 3.13 it drives a real server through
the SDK. The server wheel, built from its sdist with no npm, serves the dashboard's pinned
files (the spec editor's CodeMirror bundle among them) from the install itself."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.procs import UpServer, trainforge_up

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLIENT_VENV_LIMIT_MB = 60

SDK_SCRIPT = """
import sys
from trainforge import Client, InvalidSpec
assert not any(m.split(".")[0] in ("api", "ml", "worker", "torch") for m in sys.modules)
client = Client()
try:
    client.submit({"epochs": 0})
except InvalidSpec as exc:
    assert ("spec.epochs" in [loc for loc, _ in exc.errors]), exc.errors
job = client.submit("digits-mlp.yaml", set={"epochs": 1}, name="from-the-wheel").wait()
print(job.status, job.status_reason, len(job.metrics("val_accuracy")))
"""


def interpreter(version: str) -> str:
    found = shutil.which(f"python{version}")
    candidates = [found] if found else []
    candidates += glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}")
    for path in candidates:
        if path and subprocess.run([path, "--version"], capture_output=True).returncode == 0:
            return path
    pytest.skip(f"no python{version} on this machine")


def clean_env() -> dict[str, str]:
    """No TRAINFORGE_* and no PYTHONPATH: the fresh venv sees its own packages only."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("TRAINFORGE_") and k != "PYTHONPATH"}  # fmt: skip


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", clean_env())
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600,
                          **kwargs)  # type: ignore[call-overload]  # fmt: skip
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return done  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Wheels:
    client: Path
    server: Path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """`make dist`'s two builds: each wheel is built from its sdist (python -m build)."""
    if not (REPO / "api" / "ui" / "node_modules").is_dir() and not shutil.which("npm"):
        pytest.skip("the wheel build needs api/ui/node_modules (`make ui`) or npm")
    out = tmp_path_factory.mktemp("dist")
    for project in (REPO, REPO / "server"):
        run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
            "--outdir", out, project, env=os.environ)  # fmt: skip
    assert len(list(out.glob("*.tar.gz"))) == 2, "an sdist is missing"
    (client,) = out.glob("trainforge-*.whl")
    (server,) = out.glob("trainforge_server-*.whl")
    return Wheels(client, server)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpServer]:
    with trainforge_up(tmp_path_factory.mktemp("server")) as up:
        yield up


def du_mb(path: Path) -> int:
    return int(run("du", "-sm", path).stdout.split()[0])


@pytest.mark.parametrize(
    ("version", "drive"), [("3.10", True), ("3.11", False), ("3.12", False), ("3.13", True)]
)
def test_the_client_wheel_is_small_and_drives_a_real_server(
    wheels: Wheels, version: str, drive: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    venv = tmp_path / f"venv{version}"
    run(interpreter(version), "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheels.client)
    size = du_mb(venv)
    assert size < CLIENT_VENV_LIMIT_MB, f"the client venv is {size} MB (du -sm)"
    site = Path(run(venv / "bin" / "python", "-c", PURELIB).stdout.strip())
    shipped = {p.name for p in site.iterdir()}
    assert not shipped & {"api", "ml", "worker", "migrations", "trainforge_server"}, shipped
    refused = subprocess.run(
        [venv / "bin" / "trainforge", "up"], capture_output=True, text=True, env=clean_env()
    )
    assert refused.returncode == 2 and "pip install 'trainforge[server]'" in refused.stderr
    if not drive:
        return
    up: UpServer = request.getfixturevalue("server")
    shutil.copy(REPO / "examples" / "digits-mlp.yaml", tmp_path / "digits-mlp.yaml")
    env = clean_env() | {"TRAINFORGE_URL": up.base, "TRAINFORGE_API_KEY": up.key,
            "XDG_CONFIG_HOME": str(tmp_path / "xdg")}  # fmt: skip
    done = run(venv / "bin" / "python", "-c", SDK_SCRIPT, cwd=tmp_path, env=env)
    listed = run(venv / "bin" / "trainforge", "jobs", "--json", cwd=tmp_path, env=env)
    assert done.stdout.split() == ["succeeded", "completed", "1"], done.stdout
    assert "from-the-wheel" in listed.stdout


PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


WHERE = "import api, trainforge, trainforge_server as s; print(api.__file__, trainforge.__file__, s.__file__)"  # noqa: E501


def test_the_server_wheel_serves_the_dashboard_without_node_modules(
    wheels: Wheels, tmp_path: Path
) -> None:
    """Both wheels installed with --no-deps into a venv that borrows this venv's packages for
    the server's dependencies (no download of torch): api/ and trainforge/ are the
    install's, its api/ui/vendor/ the files the sdist carried; no npm, no node_modules."""
    venv = tmp_path / "server-venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheels.client,
        wheels.server)  # fmt: skip
    site = Path(run(venv / "bin" / "python", "-c", PURELIB).stdout.strip())
    (site / "zz-borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = clean_env() | {
        "TRAINFORGE_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
    }  # no npm
    where = run(venv / "bin" / "python", "-c", WHERE, env=env, cwd=tmp_path)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout
    port = free_port()
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen([venv / "bin" / "trainforge", "up", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            subprocess.run(["sleep", "0.3"])
        shell = httpx.get(f"{base}/ui/")
        assert shell.status_code == 200 and "/ui/static/js/main.js" in shell.text
        docs = httpx.get(f"{base}/docs")
        assert docs.status_code == 200 and "/ui/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
        served = [
            "/ui/vendor/uplot/uPlot.esm.js",
            "/ui/vendor/yaml/index.js",
            "/ui/vendor/codemirror/codemirror.js",
            "/ui/vendor/swagger-ui/swagger-ui-bundle.js",
            "/ui/static/js/main.js",
        ]
        for path in served:
            r = httpx.get(base + path)
            assert r.status_code == 200 and len(r.content) > 100, path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert "not installed" not in (tmp_path / "up.log").read_text()
