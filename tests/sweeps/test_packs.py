"""Packed sweeps (issue 26), the service half: a pack's claim (keys, quota, max_pack) and
a pack trained by the worker's own code, member by member an ordinary job (cancel one,
prune one, one's loss turns NaN). In-process on SQLite: the API under a TestClient, the
trials run by ``worker.runner.run_job`` as a worker runs them; ``ml.pack.train_pack`` is
whatever engine this tree has (the vectorised one once merged)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db.session import session_factory
from api.ledger.devices import Pool
from api.ledger.models import Job
from api.settings import Settings
from api.teams.repository import DEFAULT_TEAM, get_or_create_team
from ml.engine import train
from ml.pack import PackMember, train_pack
from ml.sinks import MemoryMetricSink
from ml.spec import JobSpec
from tests.conftest import FakeQueue
from worker import runner
from worker.metric_sink import with_db_retry
from worker.packs import PackClaim

SPEC: dict[str, Any] = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 128},
    "model": {"kind": "mlp", "hidden_units": [16]},
    "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
    "epochs": 3,
    "seed": 5,
    "deterministic": True,
}


def grid(
    lrs: list[float],
    widths: list[list[int]] | None = None,
    *,
    path: str = "optimizer.lr",
    **rest: Any,
) -> dict[str, Any]:
    parameters: dict[str, Any] = {path: {"kind": "grid", "values": lrs}}
    if widths is not None:
        parameters["model.hidden_units"] = {"kind": "grid", "values": widths}
    return {"spec": SPEC, "parameters": parameters, "algorithm": {"kind": "grid"}} | rest


def trials(settings: Settings, sweep_id: str) -> list[Job]:
    with session_factory(settings.resolved_database_url)() as s:
        stmt = select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial_number)
        return list(s.scalars(stmt))


def claim(settings: Settings, job_id: str) -> PackClaim | None:
    factory = session_factory(settings.resolved_database_url)
    pool = Pool(f"test-packs-{uuid.uuid4().hex[:8]}", 1)  # a worker of its own each time
    return with_db_retry(factory, lambda s: runner._claim(s, job_id, 60, pool))


def set_quota(settings: Settings, quota: int | None) -> None:
    with session_factory(settings.resolved_database_url)() as s:
        get_or_create_team(s, DEFAULT_TEAM).max_running_jobs = quota
        s.commit()


def test_a_claim_packs_same_key_trials_up_to_max_pack_and_the_quota(
    client: TestClient, settings: Settings, fake_queue: FakeQueue
) -> None:
    # 4 learning rates x 2 widths: two pack keys (the width changes shapes), 4 trials each.
    body = grid(
        [0.1, 0.2, 0.3, 0.4], [[8], [16]], max_concurrent_trials=3, execution={"max_pack": 3}
    )
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["execution"] == {"pack": "auto", "max_pack": 3}
    assert sweep["trials_created"] == 8  # grid: max_concurrent_trials (3) x max_pack (3) >= 8
    set_quota(settings, 5)
    rows = trials(settings, sweep["id"])
    width = {t.id: t.params["model.hidden_units"] for t in rows if t.params}

    first = claim(settings, rows[0].id)
    assert first is not None and len(first.members) == 3  # max_pack
    assert len({str(width[m.job_id]) for m in first.members}) == 1  # one pack key
    assert all(m.attempt == 1 for m in first.members)
    second = claim(settings, rows[0].id)  # 3 running, quota 5: room for 2
    assert second is not None and len(second.members) == 2
    assert claim(settings, rows[0].id) is None  # the team is at its quota

    now = {t.id: t for t in trials(settings, sweep["id"])}
    packed = [m.job_id for p in (first, second) for m in p.members]
    assert all(now[j].status == "running" and now[j].attempt == 1 for j in packed)
    assert sum(t.status == "running" for t in now.values()) == 5
    assert {now[m.job_id].pack_id for m in first.members} == {first.pack_id}
    read = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert [p["id"] for p in read["packs"]] == [first.pack_id, second.pack_id]
    assert read["packs"][0]["trial_ids"] == [m.job_id for m in first.members]
    board = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["items"]
    assert {t["job_id"]: t["pack_id"] for t in board}[packed[0]] == first.pack_id
    assert client.get(f"/v1/jobs/{packed[0]}").json()["pack_id"] == first.pack_id
    metrics = client.get("/metrics").text
    assert "trainforge_sweep_packs_running 2.0" in metrics
    assert "trainforge_sweep_pack_members_running 5.0" in metrics


@pytest.mark.parametrize("execution", [{"pack": "off"}, {"max_pack": 1}], ids=["off", "max_pack_1"])
def test_without_packing_a_claim_takes_one_trial(
    client: TestClient, settings: Settings, execution: dict[str, Any]
) -> None:
    sweep = client.post("/v1/sweeps", json=grid([0.1, 0.2, 0.3], execution=execution)).json()
    assert sweep["trials_created"] == 2  # max_concurrent_trials, as before packing
    got = claim(settings, trials(settings, sweep["id"])[0].id)
    assert got is not None and len(got.members) == 1 and got.pack_id is None


def test_a_warm_started_trial_trains_alone_and_the_sweep_says_why(
    client: TestClient, settings: Settings
) -> None:
    from ml.pack_key import pack_blocker

    sweep = client.post("/v1/sweeps", json=grid([0.1, 0.2])).json()
    rows = trials(settings, sweep["id"])
    spec = JobSpec.model_validate(rows[0].spec | {"warm_start": {"job_id": rows[1].id}})
    reason = pack_blocker(spec)
    assert reason is not None
    with session_factory(settings.resolved_database_url)() as s:
        s.get_one(Job, rows[0].id).spec = spec.model_dump(mode="json")
        s.commit()
    got = claim(settings, rows[0].id)
    assert got is not None and len(got.members) == 1 and got.blocked == reason
    runner._note_packing_off(session_factory(settings.resolved_database_url), sweep["id"], reason)
    assert client.get(f"/v1/sweeps/{sweep['id']}").json()["packing_off_reason"] == reason


# regularization.l2 of trial 0, 1: good; 2: hopeless (pruned at a rung); 3: diverges (its
# loss turns inf within the first epoch); 4: canceled mid-pack.
L2 = [0.0, 0.001, 0.5, 1000.0, 0.002]


@pytest.mark.slow  # trains a pack of five digits MLPs (seconds)
def test_a_pack_trains_every_member_as_an_ordinary_job(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    asha = {"kind": "asha", "grace_epochs": 1, "reduction_factor": 2}
    body = grid(L2, path="regularization.l2", early_termination=asha)
    sweep = client.post("/v1/sweeps", json=body).json()
    rows = trials(settings, sweep["id"])
    victim = rows[4].id
    real = train_pack

    def cancel_one_then_train(members: Sequence[PackMember], **kw: Any) -> Any:
        # The pack is claimed and running: cancel one member the way a user does.
        assert len(members) == 5
        assert client.post(f"/v1/jobs/{victim}/cancel").status_code == 200
        control = next(m.control for m in members if m.job_id == victim)
        assert control is not None
        for _ in range(200):  # its heartbeat reads the flag (every 0.2 s here)
            if control.should_stop():
                break
            time.sleep(0.05)
        return real(members, **kw)

    monkeypatch.setattr(runner, "train_pack", cancel_one_then_train)
    said = runner.run_job(rows[0].id, settings)
    assert said.startswith("pack "), said

    jobs = {j["trial_number"]: j for j in (client.get(f"/v1/jobs/{t.id}").json() for t in rows)}
    outcome = {n: (j["status"], j["status_reason"]) for n, j in jobs.items()}
    assert outcome[0] == ("succeeded", "completed")
    assert outcome[2] == ("succeeded", "pruned")
    assert outcome[3] == ("failed", "non_finite_loss")
    assert outcome[4] == ("canceled", "canceled_by_user")
    assert outcome[1][0] == "succeeded"
    assert jobs[2]["progress"]["epoch"] < SPEC["epochs"] == jobs[0]["progress"]["epoch"]
    assert len({j["pack_id"] for j in jobs.values()}) == 1 and jobs[0]["pack_id"]
    read = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert read["packs"][0]["trial_numbers"] == [0, 1, 2, 3, 4]
    assert (read["status"], read["trials_ended"]) == ("succeeded", 5)
    assert read["best"]["trial_number"] in (0, 1)

    # Each member is a job: its own checkpoints, export, log (naming the pack), metrics.
    ok = jobs[0]["id"]
    assert client.get(f"/v1/jobs/{ok}/checkpoints").json()["items"]
    assert jobs[0]["export"]["status"] == "ready"
    log = client.get(f"/v1/jobs/{ok}/logs").text
    assert f"pack {jobs[0]['pack_id']}" in log
    assert "not packed" not in log  # the engine trained it in the pack, not alone
    # ... and trains as it would alone: the first epoch's loss within 1e-5 relative.
    packed = client.get(f"/v1/jobs/{ok}/metrics", params={"name": "val_loss"}).json()
    alone = MemoryMetricSink()
    train(JobSpec.model_validate(jobs[0]["spec"]), metrics=alone)
    first = packed["series"][0]["points"][0]["value"]
    assert first == pytest.approx(alone.series("val_loss")[0], rel=1e-5)


def test_a_pack_the_engine_cannot_build_trains_solo_and_the_sweep_says_why(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found only when the models are built (not from the specs): the members train solo,
    # each log says so, and so does the sweep's (its `packing_off_reason`).
    from ml.pack_net import PackedNet, Unpackable

    def refuse(*args: object) -> None:
        raise Unpackable("the members' models differ")

    monkeypatch.setattr(PackedNet, "__init__", refuse)
    body = grid([0.05, 0.1]) | {"spec": {**SPEC, "epochs": 1}}
    sweep = client.post("/v1/sweeps", json=body).json()
    rows = trials(settings, sweep["id"])
    said = runner.run_job(rows[0].id, settings)
    assert said.startswith("pack "), said
    read = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert read["packing_off_reason"] == (
        "the packed engine trained a pack's trials solo: the members' models differ"
    )
    for row in rows:
        job = client.get(f"/v1/jobs/{row.id}").json()
        assert (job["status"], job["status_reason"]) == ("succeeded", "completed")
        assert "trained solo, not packed" in client.get(f"/v1/jobs/{row.id}/logs").text


def test_a_member_that_leaves_the_pack_ends_then_not_with_the_pack(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trial 1 diverges in its first epoch; trial 0 trains three. Trial 1's job is failed
    # (its quota slot free, the sweep told) while trial 0 still trains in the pack.
    body = grid([0.0, 1000.0], path="regularization.l2")
    sweep = client.post("/v1/sweeps", json=body).json()
    rows = trials(settings, sweep["id"])
    seen: dict[str, dict[str, str]] = {}
    real = train_pack

    def statuses() -> dict[str, str]:
        with session_factory(settings.resolved_database_url)() as s:
            return {r.id: s.get_one(Job, r.id).status for r in rows}

    def watching(members: Sequence[PackMember], **kw: Any) -> Any:
        for m in members:
            handed = m.on_end
            assert handed is not None

            def on_end(result: Any, m: PackMember = m, handed: Any = handed) -> None:
                handed(result)
                seen[m.job_id] = statuses()

            m.on_end = on_end
        return real(members, **kw)

    monkeypatch.setattr(runner, "train_pack", watching)
    said = runner.run_job(rows[0].id, settings)
    assert said.startswith("pack "), said
    good, bad = rows[0].id, rows[1].id
    assert seen[bad] == {bad: "failed", good: "running"}  # recorded as it left
    assert seen[good] == {bad: "failed", good: "succeeded"}
    assert client.get(f"/v1/jobs/{bad}").json()["status_reason"] == "non_finite_loss"


def test_one_heartbeat_thread_and_one_progress_writer_serve_every_member(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    sweep = client.post("/v1/sweeps", json=grid([0.05, 0.1, 0.2])).json()
    rows = trials(settings, sweep["id"])
    seen: dict[str, Any] = {}
    real = train_pack

    def leases() -> dict[str, Any]:
        with session_factory(settings.resolved_database_url)() as s:
            return {r.id: s.get_one(Job, r.id).lease_expires_at for r in rows}

    def watching(members: Sequence[PackMember], **kw: Any) -> Any:
        mine = {"lease-pack", "progress-pack"}
        mine |= {f"{kind}-{r.id}" for r in rows for kind in ("lease", "progress")}
        seen["threads"] = sorted(t.name for t in threading.enumerate() if t.name in mine)
        before = leases()
        time.sleep(4 * settings.heartbeat_seconds)  # a few ticks of the heartbeat
        seen["renewed"] = [leases()[r.id] > before[r.id] for r in rows]
        return real(members, **kw)

    monkeypatch.setattr(runner, "train_pack", watching)
    assert runner.run_job(rows[0].id, settings).startswith("pack ")
    assert seen["threads"] == ["lease-pack", "progress-pack"]  # not two threads per member
    assert seen["renewed"] == [True, True, True]
    assert not [t for t in threading.enumerate() if t.name.endswith("-pack")]  # closed after
