"""The user CLI against a real `trainforge up`: submit with --set and follow in a
pseudo-terminal, the exit codes (0 succeeded, 1 failed, 2 invalid, 3 refused or
unreachable, 130 detached), Ctrl-C never cancels, download checks the sha256."""

from __future__ import annotations

import hashlib
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.conftest import free_port
from tests.e2e.cli_helpers import cli_env, run_cli, screen_text, spawn_cli
from tests.procs import UpServer, trainforge_up, wait_status

pytestmark = pytest.mark.e2e

SPEC_YAML = """\
name: digits-cli
spec:
  dataset:
    source: {kind: builtin, name: digits}
    batch_size: 32
  model: {kind: mlp, hidden_units: [64], activation: relu}
  optimizer: {kind: adam, lr: 0.001}
  epochs: 10
  seed: 0
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpServer]:
    with trainforge_up(tmp_path_factory.mktemp("cli")) as server:
        yield server


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "digits.yaml"
    path.write_text(SPEC_YAML)
    return path


def auth(up: UpServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {up.key}"}


def test_submit_with_overrides_follows_live_in_a_terminal(
    up: UpServer, spec_file: Path, tmp_path: Path
) -> None:
    child = spawn_cli(
        ["submit", str(spec_file), "--set", "epochs=3", "--set", "dataset.batch_size=8",
         "--set", "model.hidden_units=[32]", "--set", "optimizer.lr=3e-4"],
        cli_env(up, tmp_path),
    )  # fmt: skip
    child.expect(r"job (\w+) succeeded \(completed\) after 3 epochs", timeout=300)
    job_id = child.match.group(1)
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    screen = screen_text(child)
    assert child.exitstatus == 0, screen[-3000:]
    # The bar over the current epoch's steps advanced (180 steps of 8 samples)...
    steps = {int(s) for s in re.findall(r"step (\d+)/180", screen)}
    assert len(steps) >= 2, screen[-3000:]
    # ...so did the one over epochs, and every epoch got its line.
    assert {"0/3", "1/3", "2/3"} <= set(re.findall(r"epochs\s+\S*\s*(\d/3)", screen)), screen
    assert [int(e) for e in re.findall(r"^epoch (\d)/3 +loss", screen, re.M)] == [1, 2, 3]
    job = httpx.get(f"{up.base}/v1/jobs/{job_id}", headers=auth(up)).json()
    assert (job["name"], job["spec"]["epochs"]) == ("digits-cli", 3)
    assert job["spec"]["model"]["hidden_units"] == [32]
    assert job["spec"]["optimizer"]["lr"] == 3e-4
    assert job["spec"]["dataset"]["batch_size"] == 8


def test_the_same_file_and_overrides_make_one_job(
    up: UpServer, spec_file: Path, tmp_path: Path
) -> None:
    env = cli_env(up, tmp_path)
    args = ["submit", str(spec_file), "--set", "epochs=1", "--detach", "--json"]
    first, again = run_cli(args, env), run_cli(args, env)
    assert first.returncode == again.returncode == 0, first.stderr
    assert json.loads(first.stdout)["id"] == json.loads(again.stdout)["id"]
    other = run_cli([*args, "--again"], env)
    assert json.loads(other.stdout)["id"] != json.loads(first.stdout)["id"]


def test_a_job_whose_loss_becomes_infinite_exits_1(up: UpServer, tmp_path: Path) -> None:
    # A regression target near float32's limit: the first squared error is infinite.
    rows = "\n".join(f"{i / 60},{(i * 7 % 60) / 60},{3e38 if i % 2 else -3e38}" for i in range(60))
    (tmp_path / "huge.csv").write_text("a,b,target\n" + rows + "\n")
    env = cli_env(up, tmp_path)
    upload = run_cli(["datasets", "upload", str(tmp_path / "huge.csv"), "--format", "csv",
                      "--label-column", "target", "--task", "regression", "--json"],
                     env)  # fmt: skip
    assert upload.returncode == 0, upload.stderr
    dataset_id = json.loads(upload.stdout)["id"]
    assert dataset_id in run_cli(["datasets", "ls"], env).stdout
    spec = {"dataset": {"source": {"kind": "uploaded", "dataset_id": dataset_id}}, "epochs": 2}
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    done = run_cli(["submit", str(tmp_path / "bad.json"), "--follow"], env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "failed (non_finite_loss)" in done.stdout.splitlines()[-1]
    assert "\x1b" not in done.stdout and "\r" not in done.stdout  # no terminal: plain lines


def test_an_invalid_spec_exits_2_naming_every_field(
    up: UpServer, spec_file: Path, tmp_path: Path
) -> None:
    env = cli_env(up, tmp_path)
    for verb in (["submit", "--detach"], ["validate"], ["submit", "--dry-run"]):
        done = run_cli([*verb, str(spec_file), "--set", "optimizer.lr=-1",
                        "--set", "model.kind=transformerz"], env)  # fmt: skip
        assert done.returncode == 2, (verb, done.stdout, done.stderr)
        assert "spec.optimizer.lr: " in done.stderr and "spec.model" in done.stderr
        assert "Traceback" not in done.stderr
    bad_set = run_cli(["validate", str(spec_file), "--set", "optimizer.lr"], env)
    assert bad_set.returncode == 2 and "PATH=VALUE" in bad_set.stderr
    jobs = httpx.get(f"{up.base}/v1/jobs", headers=auth(up), params={"limit": 100}).json()
    assert all(j.get("name") != "digits-cli" or j["status"] != "queued" for j in jobs["items"])


def test_a_refused_key_or_no_server_exits_3_in_one_line(up: UpServer, tmp_path: Path) -> None:
    wrong = run_cli(["jobs"], cli_env(up, tmp_path, TRAINFORGE_API_KEY="tf_nope_nope"))
    assert wrong.returncode == 3
    assert len(wrong.stderr.strip().splitlines()) == 1 and "refused the API key" in wrong.stderr
    gone = run_cli(
        ["jobs"], cli_env(up, tmp_path, TRAINFORGE_URL=f"http://127.0.0.1:{free_port()}")
    )
    assert gone.returncode == 3
    assert len(gone.stderr.strip().splitlines()) == 1 and "cannot reach" in gone.stderr


def test_ctrl_c_detaches_with_130_and_the_job_still_succeeds(
    up: UpServer, spec_file: Path, tmp_path: Path
) -> None:
    child = spawn_cli(["submit", str(spec_file), "--set", "epochs=20",
                       "--set", "dataset.batch_size=8"], cli_env(up, tmp_path))  # fmt: skip
    child.expect(r"submitted job (\w+)")
    job_id = child.match.group(1)
    child.expect(r"step \d+/180", timeout=120)  # the live view is up and the job trains
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF, timeout=10)  # well within; the issue asks for 2 s
    child.close()
    assert child.exitstatus == 130, screen_text(child)[-2000:]
    assert f"trainforge follow {job_id}" in screen_text(child)
    job = wait_status(lambda u: httpx.get(up.base + u, headers=auth(up)), job_id,
                      {"succeeded", "failed", "canceled"}, 300)  # fmt: skip
    assert job["status"] == "succeeded"


def test_download_best_writes_the_checkpoint_the_api_describes(
    up: UpServer, spec_file: Path, tmp_path: Path
) -> None:
    env = cli_env(up, tmp_path)
    submitted = run_cli(["submit", str(spec_file), "--set", "epochs=3", "--json"], env)
    job_id = json.loads(submitted.stdout)["id"]
    assert run_cli(["follow", job_id], env).returncode == 0
    items = httpx.get(f"{up.base}/v1/jobs/{job_id}/checkpoints", headers=auth(up)).json()["items"]
    best = next(c for c in items if c["is_best"])
    out = tmp_path / "weights"
    out.mkdir()
    done = run_cli(["download", job_id, "--checkpoint", "best", "-o", str(out)], env)
    assert done.returncode == 0, done.stderr
    written = out / f"{job_id}-step{best['step']}.safetensors"
    assert hashlib.sha256(written.read_bytes()).hexdigest() == best["sha256"]
    assert list(out.iterdir()) == [written]  # no partial file left
    latest = run_cli(["download", job_id, "-c", "latest", "-o", str(tmp_path / "l.st")], env)
    assert latest.returncode == 0
    newest = max(items, key=lambda c: c["step"])
    assert hashlib.sha256((tmp_path / "l.st").read_bytes()).hexdigest() == newest["sha256"]
    missing = run_cli(["download", job_id, "--checkpoint", "999999"], env)
    assert missing.returncode == 2 and "no checkpoint 999999" in missing.stderr
