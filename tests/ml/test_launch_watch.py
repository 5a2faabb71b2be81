"""The data-parallel parent's watch loop (ml/launch.py) tells a dead rank from a rank's own
error: a peer killed mid-collective reaches the parent first as the surviving rank's gloo
error ("connection reset by peer"), which must count as the lost worker it is."""

from __future__ import annotations

import pickle
import queue
from dataclasses import dataclass
from typing import Any

import pytest

from ml import launch


@dataclass
class FakeProcess:
    exitcode: int | None


def _relay() -> launch._Relay:
    return launch._Relay(None, None, None, None, None, None, replies=None)


def _events(*messages: tuple[Any, ...]) -> queue.Queue[tuple[Any, ...]]:
    events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    for message in messages:
        events.put(message)
    return events


def _reset() -> bytes:
    return pickle.dumps(RuntimeError("Read error: Connection reset by peer"))


def test_a_ranks_error_after_its_peer_was_killed_is_the_lost_rank() -> None:
    procs = [FakeProcess(None), FakeProcess(-9)]  # rank 1 died by SIGKILL
    with pytest.raises(launch.RankLost) as caught:
        launch._watch(procs, _events(("error", 0, _reset())), None, None, _relay())
    assert (caught.value.rank, caught.value.exitcode) == (1, -9)
    assert "rank 1 died (signal 9)" in str(caught.value)


def test_a_ranks_own_error_stays_its_error_while_the_peers_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(launch, "PEER_GRACE_SECONDS", 0.1)
    # rank 1 is alive; rank 2 finished its work and exited cleanly: neither is a death
    procs = [FakeProcess(None), FakeProcess(None), FakeProcess(0)]
    error = pickle.dumps(ValueError("the loss is NaN"))
    with pytest.raises(ValueError, match="NaN"):
        launch._watch(procs, _events(("error", 0, error)), None, None, _relay())
