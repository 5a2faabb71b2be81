"""The embedded home is owner-only: TRAINFORGE_HOME 700, trainforge.db 600 (issue 18, 8).

It holds the SQLite database (key hashes, every team's data) and the broker's files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from api.db.migrate import upgrade
from api.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_is_700_and_the_database_600_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        settings = Settings(home=tmp_path / "home")
        settings.ensure_home()
        upgrade(settings.resolved_database_url)
    finally:
        os.umask(old)
    assert _mode(settings.home) == 0o700
    db = settings.home / "trainforge.db"
    assert _mode(db) == 0o600
    for extra in settings.home.glob("trainforge.db-*"):  # WAL and shared-memory files
        assert _mode(extra) & 0o077 == 0, extra


def test_an_existing_home_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "trainforge.db").touch(mode=0o644)
    Settings(home=home).ensure_home()
    assert _mode(home) == 0o700 and _mode(home / "trainforge.db") == 0o600
