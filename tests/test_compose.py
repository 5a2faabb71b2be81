"""docker-compose.yml cannot run here (no Docker engine); check it agrees with the code."""

from __future__ import annotations

from typing import Any

import yaml

from api.settings import Settings
from tests.conftest import REPO
from trainforge.cli import build_parser


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_services_are_the_production_layout() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_commands_parse_with_the_real_cli() -> None:
    parser = build_parser()
    services = compose()["services"]
    expected = {"migrate": "db", "api": "api", "worker": "worker"}
    for name, command in expected.items():
        argv = services[name]["command"]
        assert argv[0] == "trainforge"
        args = parser.parse_args(argv[1:])
        assert args.command == command
    worker_args = parser.parse_args(services["worker"]["command"][1:])
    assert Settings().queue in worker_args.queues.split(",")
    assert Settings().gpu_queue in worker_args.queues.split(",")


def test_environment_names_real_settings_and_services() -> None:
    services = compose()["services"]
    fields = {f"TRAINFORGE_{name.upper()}" for name in Settings.model_fields}
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        trainforge_vars = {k for k in env if k.startswith("TRAINFORGE_")}
        assert trainforge_vars <= fields, trainforge_vars - fields
        assert "@postgres:5432/" in env["TRAINFORGE_DATABASE_URL"]
        assert env["TRAINFORGE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["TRAINFORGE_BROKER_URL"].startswith("redis://redis:6379")
        settings = Settings(
            database_url=env["TRAINFORGE_DATABASE_URL"], broker_url=env["TRAINFORGE_BROKER_URL"]
        )
        assert not settings.embedded


def test_worker_reserves_a_gpu() -> None:
    worker = compose()["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["capabilities"] == ["gpu"]
    assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_postgres_credentials_match_the_url() -> None:
    services = compose()["services"]
    pg = services["postgres"]["environment"]
    url = services["api"]["environment"]["TRAINFORGE_DATABASE_URL"]
    assert f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@" in url
    assert url.endswith(f"/{pg['POSTGRES_DB']}")
