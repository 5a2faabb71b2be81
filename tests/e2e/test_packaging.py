"""The distributions as users install them (issue 25): the wheel built from this checkout,
installed into fresh venvs. The client alone on Python 3.10 to 3.13 (no server code
imported, venv under 60 MB) drives a real server through the SDK; the same wheel with the
server's dependencies serves the dashboard's pinned files from the install itself."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.procs import trainforge_up

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / "api" / "ui" / "node_modules").is_dir() and not shutil.which("npm"):
        pytest.skip("the wheel build needs api/ui/node_modules (`make ui`) or npm")
    out = tmp_path_factory.mktemp("dist")
    run(
        sys.executable,
        "-m",
        "build",
        "--no-isolation",
        "--sdist",
        "--wheel",
        "--outdir",
        out,
        REPO,
        env=os.environ,
    )
    (built,) = out.glob("trainforge-*.whl")
    assert list(out.glob("trainforge-*.tar.gz")), "no sdist"
    return built


VENV_TOOLS = ("pip", "setuptools", "_distutils_hack")  # what `python -m venv` itself puts there


def venv_size_mb(venv: Path) -> float:
    """The venv's bytes, less its own pip and setuptools (14-24 MB depending on the Python:
    there before `pip install trainforge`): what installing the client costs."""
    tools = [d for d in venv.glob("lib/python3.*/site-packages/*")
             if d.name.split("-")[0] in VENV_TOOLS]  # fmt: skip

    def size(paths: list[Path]) -> int:
        return sum(p.stat().st_size for root in paths for p in root.rglob("*") if p.is_file())

    return (size([venv]) - size(tools)) / 1e6


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_the_client_wheel_drives_a_real_server(wheel: Path, version: str, tmp_path: Path) -> None:
    venv = tmp_path / f"venv{version}"
    run(interpreter(version), "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    size = venv_size_mb(venv)
    assert size < CLIENT_VENV_LIMIT_MB, f"the client venv is {size:.0f} MB"
    refused = subprocess.run(
        [venv / "bin" / "trainforge", "up"], capture_output=True, text=True, env=clean_env()
    )
    assert refused.returncode == 2 and "pip install 'trainforge[server]'" in refused.stderr
    shutil.copy(REPO / "examples" / "digits-mlp.yaml", tmp_path / "digits-mlp.yaml")
    (tmp_path / "server").mkdir()
    with trainforge_up(tmp_path / "server") as up:
        env = clean_env() | {"TRAINFORGE_URL": up.base, "TRAINFORGE_API_KEY": up.key,
                "XDG_CONFIG_HOME": str(tmp_path / "xdg")}  # fmt: skip
        done = run(venv / "bin" / "python", "-c", SDK_SCRIPT, cwd=tmp_path, env=env)
        listed = run(venv / "bin" / "trainforge", "jobs", "--json", cwd=tmp_path, env=env)
    assert done.stdout.split() == ["succeeded", "completed", "1"], done.stdout
    assert "from-the-wheel" in listed.stdout


def test_the_server_wheel_serves_the_dashboard_without_node_modules(
    wheel: Path, tmp_path: Path
) -> None:
    """The wheel installed with --no-deps into a venv that borrows this venv's packages for
    the server's dependencies (no download of torch): api/ is the install's, its
    api/ui/vendor/ the files the build copied; no npm, no node_modules on the way."""
    venv = tmp_path / "server-venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheel)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run(venv / "bin" / "python", "-c", purelib).stdout.strip())
    (site / "zz-borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = clean_env() | {
        "TRAINFORGE_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
    }  # no npm
    where = run(
        venv / "bin" / "python", "-c", "import api; print(api.__file__)", env=env, cwd=tmp_path
    )
    assert where.stdout.startswith(str(venv)), where.stdout
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
