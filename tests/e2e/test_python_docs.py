"""docs/python.md runs as written: its ```python blocks, in order, in one Python process
(as a notebook would), against a real `trainforge up`; and the AsyncClient against the
same server: the same requests, coroutines and async iterators."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.procs import UpServer, trainforge_up
from trainforge import AsyncClient, AsyncJob, EndEvent, InvalidSpec, JobEvent, NotFound, StatusEvent
from trainforge.sdk.events import kind_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpServer]:
    with trainforge_up(tmp_path_factory.mktemp("sdk")) as server:
        yield server


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)


def test_the_python_walkthrough_runs_against_a_real_server(up: UpServer, tmp_path: Path) -> None:
    blocks = python_blocks(REPO / "docs" / "python.md")
    assert len(blocks) >= 6
    script = tmp_path / "walkthrough.py"
    script.write_text("\n".join(blocks))
    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    (work / "examples" / "digits-mlp.yaml").write_bytes(
        (REPO / "examples" / "digits-mlp.yaml").read_bytes()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env |= {"TRAINFORGE_URL": up.base, "TRAINFORGE_API_KEY": up.key,
            "XDG_CONFIG_HOME": str(tmp_path / "xdg")}  # fmt: skip
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    out = done.stdout
    assert "succeeded completed" in out
    assert re.search(r"status running", out) and "end succeeded completed" in out
    assert "no such job" in out
    assert (work / "iris-model.zip").stat().st_size > 1000
    assert re.search(r"^spec\.epochs -> ", out, re.M)
    assert sorted(re.findall(r"^async (async-\S+) succeeded 1$", out, re.M)) == [
        "async-0.001", "async-0.01"]  # fmt: skip


def test_the_async_client_against_the_same_server(up: UpServer) -> None:
    async def scenario() -> tuple[AsyncJob, list[JobEvent], list[str]]:
        async with AsyncClient(up.base, up.key) as client:
            assert await client.server_version()
            with pytest.raises(InvalidSpec) as bad:
                await client.submit({"dataset": DIGITS, "epochs": 0})
            assert "spec.epochs" in [loc for loc, _ in bad.value.errors]
            job = await client.submit({"dataset": DIGITS, "epochs": 1}, name="async-test")
            events = [e async for e in job.events()]
            same = await client.job(job.id[:8])  # a unique prefix
            with pytest.raises(NotFound):
                await client.job("no-such-job")
            listed = [j.id async for j in client.jobs(name="async-test", page_size=1)]
            assert same.id == job.id and same.spec["epochs"] == 1
            assert len(await same.metrics("val_loss")) == 1
            assert await same.checkpoints()
            return await same.wait(timeout=60), events, listed

    job, events, listed = asyncio.run(scenario())
    assert (job.status, job.status_reason) == ("succeeded", "completed")
    assert listed == [job.id]
    assert isinstance(events[0], StatusEvent) and isinstance(events[-1], EndEvent)
    ids = [e.id or 0 for e in events]
    assert ids == sorted(ids), ids  # in order (the end shares its status change's id)
    assert len({(kind_of(e), e.id) for e in events}) == len(events)  # none twice


DIGITS = {"source": {"kind": "builtin", "name": "digits"}}
