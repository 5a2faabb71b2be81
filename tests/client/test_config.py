"""Where the CLI finds its server and key; login's config file is 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from trainforge.client import config


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "xdg"),
            "TRAINFORGE_HOME": str(tmp / "tfhome"), **extra}  # fmt: skip


def test_defaults_then_the_api_key_file_of_trainforge_up(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    found = config.resolve(env)
    assert (found.url, found.api_key) == ("http://127.0.0.1:8000", None)
    (tmp_path / "tfhome").mkdir()
    (tmp_path / "tfhome" / "api-key").write_text("tf_from_home\n")
    found = config.resolve(env)
    assert found.api_key == "tf_from_home" and found.key_source.endswith("api-key")


def test_the_config_file_beats_the_home_key_and_the_environment_beats_both(
    tmp_path: Path,
) -> None:
    env = env_for(tmp_path)
    (tmp_path / "tfhome").mkdir()
    (tmp_path / "tfhome" / "api-key").write_text("tf_from_home\n")
    path = config.config_path(env)
    config.save(path, "https://tf.example/", "tf_from_login")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path == tmp_path / "xdg" / "trainforge" / "config.toml"
    found = config.resolve(env)
    assert (found.url, found.api_key) == ("https://tf.example", "tf_from_login")
    env |= {"TRAINFORGE_URL": "http://other:9000", "TRAINFORGE_API_KEY": "tf_env"}
    found = config.resolve(env)
    assert (found.url, found.api_key, found.key_source) == (
        "http://other:9000", "tf_env", "TRAINFORGE_API_KEY")  # fmt: skip


def test_without_xdg_the_file_is_under_home(tmp_path: Path) -> None:
    assert config.config_path({"HOME": str(tmp_path)}) == (
        tmp_path / ".config" / "trainforge" / "config.toml"
    )


def test_saving_again_keeps_0600_and_quotes_values(tmp_path: Path) -> None:
    path = tmp_path / "c" / "config.toml"
    path.parent.mkdir()
    path.write_text("")
    path.chmod(0o644)
    config.save(path, 'http://a"b', "tf_x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.read_config_file(path) == {"url": 'http://a"b', "api_key": "tf_x"}
