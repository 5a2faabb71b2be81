"""docker-compose.yml and docker-compose.gpu.yml (a second GPU machine) against the code.

`docker compose config` (or Debian's `docker-compose`, which `make test` installs where
the docker client has no compose plugin) validates both files; it needs no Docker
engine. The static checks below also run: the
files are parsed as YAML and interpolated here the way Compose does it (``${VAR}``,
``${VAR:-default}``, ``${VAR:?error}``), with the values of .env.example.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import Settings
from tests.conftest import REPO
from tests.operator.cli_parse import parse
from worker.queues import worker_queues

FILES = ["docker-compose.yml", "docker-compose.gpu.yml"]
_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values | {"TRAINFORGE_BACKEND_HOST": "10.0.0.5"}  # the GPU machine's .env


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op else ""

    return _VAR.sub(one, value)


def compose(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / name).read_text())
    data: dict[str, Any] = interpolate(raw, env_example() if env is None else env)
    return data


def workers(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data["services"].items() if k.startswith("worker")}


def docker_compose() -> list[str] | None:
    for argv in (["docker", "compose"], ["docker-compose"]):
        if not shutil.which(argv[0]):
            continue
        if subprocess.run([*argv, "version"], capture_output=True).returncode == 0:
            return argv
    return None


@pytest.mark.parametrize("name", FILES)
@pytest.mark.e2e
def test_docker_compose_config_accepts_the_file(name: str, tmp_path: Path) -> None:
    argv = docker_compose()
    if argv is None:
        pytest.skip("no `docker compose` here (the docker client has no compose plugin)")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_example().items()))
    done = subprocess.run([*argv, "-f", str(REPO / name), "--env-file", str(env_file),
                           "config", "--quiet"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_services_are_the_production_layout() -> None:
    services = compose("docker-compose.yml")["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker", "postgres", "redis"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    check = " ".join(services["api"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/readyz" in check


def test_credentials_come_from_the_env_file_only() -> None:
    for name in FILES:
        text = (REPO / name).read_text()
        assert "${POSTGRES_PASSWORD:?" in text and "${REDIS_PASSWORD:?" in text
        assert "trainforge:trainforge@" not in text  # no password written into the file
        with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
            compose(name, {})  # compose refuses to start without .env
    main = compose("docker-compose.yml")
    env = env_example()
    pg = main["services"]["postgres"]["environment"]
    assert pg["POSTGRES_PASSWORD"] == env["POSTGRES_PASSWORD"]
    redis = main["services"]["redis"]
    assert redis["command"][redis["command"].index("--requirepass") + 1] == env["REDIS_PASSWORD"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    for data in (main, compose("docker-compose.gpu.yml")):
        for service in data["services"].values():
            url = service.get("environment", {}).get("TRAINFORGE_DATABASE_URL")
            if url:
                assert f"trainforge:{env['POSTGRES_PASSWORD']}@" in url
                assert service["environment"]["TRAINFORGE_BROKER_URL"].startswith(
                    f"redis://:{env['REDIS_PASSWORD']}@"
                )


def test_commands_parse_with_the_real_cli() -> None:
    main = compose("docker-compose.yml")["services"]
    expected = {"migrate": "db", "api": "api", "worker": "worker"}
    for name, command in expected.items():
        argv = main[name]["command"]
        assert argv[0] == "trainforge"
        assert parse(argv[1:])[0][0] == command
    # A worker that sees its GPU consumes both queues (worker/queues.py).
    _, args = parse(main["worker"]["command"][1:])
    queues = worker_queues(Settings(), args["queues"], has_gpu=True).split(",")
    assert queues == [Settings().queue, Settings().gpu_queue]
    # The README's one-shot commands for the first admin key.
    assert parse(["admin", "create-team", "ops"])[0] == ["admin", "create-team"]
    path, key = parse(["admin", "create-key", "--team", "ops", "--role", "admin"])
    assert (path[-1], key["role"]) == ("create-key", "admin")


def test_environment_names_real_settings_and_services() -> None:
    fields = {f"TRAINFORGE_{name.upper()}" for name in Settings.model_fields}
    for name, host in (("docker-compose.yml", "postgres"), ("docker-compose.gpu.yml", "10.0.0.5")):
        for service, spec in compose(name)["services"].items():
            env = spec.get("environment", {})
            if "TRAINFORGE_DATABASE_URL" not in env:
                continue
            assert {k for k in env if k.startswith("TRAINFORGE_")} <= fields, service
            assert env["TRAINFORGE_DATABASE_URL"].startswith("postgresql+psycopg://")
            assert f"@{host}:5432/trainforge" in env["TRAINFORGE_DATABASE_URL"]
            broker_host = "redis" if host == "postgres" else host
            assert env["TRAINFORGE_BROKER_URL"].endswith(f"@{broker_host}:6379/0")
            settings = Settings(database_url=env["TRAINFORGE_DATABASE_URL"],
                                broker_url=env["TRAINFORGE_BROKER_URL"])  # fmt: skip
            assert not settings.embedded


def test_each_worker_reserves_its_own_gpu_with_a_cuda_torch() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG TORCH_VARIANT=cpu" in dockerfile  # the CPU build stays the default
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in dockerfile
    for name in FILES:
        found = workers(compose(name))
        assert found, name
        ids = []
        for service in found.values():
            devices = service["deploy"]["resources"]["reservations"]["devices"]
            assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
            ids += devices[0]["device_ids"]
            # inside the container the reserved GPU is device 0: no CUDA_VISIBLE_DEVICES
            assert "CUDA_VISIBLE_DEVICES" not in service["environment"]
            assert service["build"]["args"]["TORCH_VARIANT"].startswith("cu")
            assert service["restart"] == "unless-stopped"
        assert len(ids) == len(set(ids)), f"{name}: two workers on one GPU"
    gpu = compose("docker-compose.gpu.yml")["services"]
    assert "migrate" not in gpu and "postgres" not in gpu  # joins the main machine's


def test_the_gpu_image_has_a_compiler_the_cublas_setting_and_nvml() -> None:
    """What the GPU worker needs at run time and the slim base lacks (issue 30): a C/C++
    compiler for compile: true (Triton, Inductor), CUBLAS_WORKSPACE_CONFIG before any
    process's first cuBLAS call, and NVML's bindings for the utilization gauge."""
    runtime = (REPO / "Dockerfile").read_text().split("FROM python:")[1]  # the final stage
    apt = " ".join(line for line in runtime.splitlines() if "apt-get" in line or "\\" in line)
    assert "apt-get install" in apt and {"gcc", "g++", "libc6-dev"} <= set(apt.split())
    assert re.search(r"^ENV CUBLAS_WORKSPACE_CONFIG=:(4096|16):8$", runtime, re.M)
    assert "-e './server[worker]'" in runtime
    pyproject = tomllib.loads((REPO / "server" / "pyproject.toml").read_text())
    worker_extra = pyproject["project"]["optional-dependencies"]["worker"]
    assert "nvidia-ml-py" in worker_extra
