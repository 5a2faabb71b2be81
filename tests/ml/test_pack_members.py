"""Each member of a pack ends as its solo run ends -- early stopped, pruned, canceled, failed
on a NaN loss -- alone, the others unaffected; a member resumes from its own checkpoint
exactly; packed and solo checkpoints resume each other."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ml.engine import NonFiniteLoss, TrainResult, train
from ml.logsink import MemoryLogSink
from ml.pack import PackMember, train_pack
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

from .test_pack import assert_metrics_match


class StopAfter:
    def __init__(self, calls: int) -> None:
        self.calls, self.left = 0, calls

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.left


class PruneAt:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def should_prune(self, epoch: int, values: object) -> bool:
        return epoch == self.epoch


def diabetes(lr: float, **parts) -> JobSpec:
    return JobSpec.model_validate({
        "dataset": {"source": {"kind": "builtin", "name": "diabetes"}, "batch_size": 64},
        "model": {"kind": "mlp", "hidden_units": [32]}, "epochs": 3,
        "optimizer": {"kind": "sgd", "lr": lr, "momentum": 0.9}, **parts,
    })  # fmt: skip


def digits(lr: float, epochs: int = 3, **parts) -> JobSpec:
    return JobSpec.model_validate({
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
        "model": {"kind": "mlp", "hidden_units": [32]}, "epochs": epochs,
        "optimizer": {"kind": "adam", "lr": lr}, "regularization": {"dropout": 0.1}, **parts,
    })  # fmt: skip


def run_solo(spec: JobSpec, **kw) -> tuple[TrainResult | BaseException, MemoryMetricSink]:
    sink = MemoryMetricSink()
    try:
        return train(spec, metrics=sink, **kw), sink
    except Exception as exc:  # noqa: BLE001 -- compared with the packed member's
        return exc, sink


def test_each_member_ends_alone_as_its_solo_run_ends():
    never = {"monitor": "val_loss", "patience": 0, "baseline": -1.0}
    cases: list[tuple[JobSpec, dict[str, Any]]] = [
        (diabetes(1e-3), {}),
        (diabetes(1.0), {}),  # the loss overflows at step 4 (solo)
        (diabetes(3e-4, early_stopping=never), {}),
        (diabetes(1e-4, seed=0), {"pruner": PruneAt(1)}),
        (diabetes(5e-4), {"control": StopAfter(8)}),
    ]
    sinks = [MemoryMetricSink() for _ in cases]
    members = [PackMember(f"j{i}", spec, metrics=sink, **kw)
               for i, ((spec, kw), sink) in enumerate(zip(cases, sinks, strict=True))]  # fmt: skip
    results = train_pack(members)
    fresh: list[dict[str, Any]] = [{}, {}, {}, {"pruner": PruneAt(1)}, {"control": StopAfter(8)}]
    for (spec, _), kw, result, sink in zip(cases, fresh, results, sinks, strict=True):
        ref, ref_sink = run_solo(spec, **kw)
        if isinstance(ref, NonFiniteLoss):
            assert isinstance(result, NonFiniteLoss)
            # where in the overflow the sum of squares reaches inf depends on its order
            assert result.epoch == ref.epoch == 0 and abs(result.step - ref.step) <= 2
            continue
        assert isinstance(result, TrainResult) and isinstance(ref, TrainResult)
        assert (result.status_reason, result.epochs_completed, result.step,
                result.stopped_epoch) == (ref.status_reason, ref.epochs_completed, ref.step,
                                          ref.stopped_epoch)  # fmt: skip
        assert_metrics_match(ref_sink, sink)
    reasons = [getattr(r, "status_reason", type(r).__name__) for r in results]
    assert reasons == ["completed", "NonFiniteLoss", "early_stopped", "pruned", "canceled"]


def test_a_member_resumes_from_its_checkpoint_as_if_never_stopped():
    """Two members stopped at different steps (as a worker dies, or a cancel) resume in one
    pack: the later one waits and joins; both series equal the uninterrupted solo runs'."""
    specs = [digits(1e-3), digits(3e-3, seed=4)]
    refs = [run_solo(s)[1] for s in specs]
    checkpoints = [MemoryCheckpointSink() for _ in specs]
    first = [MemoryMetricSink() for _ in specs]
    stopped = train_pack([
        PackMember("a", specs[0], metrics=first[0], checkpoints=checkpoints[0],
                   control=StopAfter(30)),
        PackMember("b", specs[1], metrics=first[1], checkpoints=checkpoints[1],
                   control=StopAfter(52)),
    ])  # fmt: skip
    assert [getattr(r, "status_reason", r) for r in stopped] == ["canceled", "canceled"]
    second = [MemoryMetricSink() for _ in specs]
    resumed = train_pack(
        [
            PackMember(n, s, metrics=m, checkpoints=c)
            for n, s, m, c in zip("ab", specs, second, checkpoints, strict=True)
        ]
    )
    for result, ref, a, b in zip(resumed, refs, first, second, strict=True):
        assert isinstance(result, TrainResult) and result.status_reason == "completed"
        joined = MemoryMetricSink(points=a.points + b.points)
        assert_metrics_match(ref, joined)


def test_packed_and_solo_checkpoints_resume_each_other():
    spec, other = digits(2e-3), digits(1e-3)
    ref = run_solo(spec)[1]
    # packed -> solo
    packed_ckpt, before = MemoryCheckpointSink(), MemoryMetricSink()
    train_pack([PackMember("a", spec, metrics=before, checkpoints=packed_ckpt,
                           control=StopAfter(35)), PackMember("b", other)])  # fmt: skip
    after = MemoryMetricSink()
    result = train(spec, metrics=after, checkpoints=packed_ckpt)
    assert result.status_reason == "completed"
    assert_metrics_match(ref, MemoryMetricSink(points=before.points + after.points))
    # solo -> packed
    solo_ckpt, before = MemoryCheckpointSink(), MemoryMetricSink()
    train(spec, metrics=before, checkpoints=solo_ckpt, control=StopAfter(35))
    after = MemoryMetricSink()
    out = train_pack([PackMember("a", spec, metrics=after, checkpoints=solo_ckpt),
                      PackMember("b", other)])  # fmt: skip
    assert isinstance(out[0], TrainResult) and out[0].status_reason == "completed"
    assert_metrics_match(ref, MemoryMetricSink(points=before.points + after.points))


def test_one_member_trains_solo_and_a_finished_member_reports_its_result():
    spec = digits(1e-3, epochs=1)
    ckpt, sink = MemoryCheckpointSink(), MemoryMetricSink()
    (result,) = train_pack([PackMember("a", spec, metrics=sink, checkpoints=ckpt)])
    ref, _ = run_solo(spec)
    assert isinstance(result, TrainResult) and isinstance(ref, TrainResult)
    assert result.final_metrics["loss"] == ref.final_metrics["loss"]
    again = train_pack([PackMember("a", spec, checkpoints=ckpt), PackMember("b", spec)])
    assert isinstance(again[0], TrainResult) and again[0].step == result.step
    assert math.isclose(again[0].final_metrics["loss"], result.final_metrics["loss"])
    assert isinstance(again[1], TrainResult) and again[1].step == result.step


def test_a_failing_sink_fails_its_member_alone():
    class Broken(MemoryMetricSink):
        def flush(self) -> None:
            raise OSError("disk full")

    spec = digits(1e-3, epochs=1)
    ok = MemoryMetricSink()
    results = train_pack([PackMember("a", spec, metrics=Broken()),
                          PackMember("b", spec, metrics=ok)])  # fmt: skip
    assert isinstance(results[0], OSError)
    assert isinstance(results[1], TrainResult) and results[1].status_reason == "completed"
    assert_metrics_match(run_solo(spec)[1], ok)


def test_a_model_the_batched_program_cannot_express_trains_solo(monkeypatch):
    """Found only when the models are built (e.g. an upload's embedded columns): every member
    trains solo, exactly as alone, and its log says why."""
    from ml.pack_net import PackedNet, Unpackable

    def refuse(*args: object) -> None:
        raise Unpackable("the model is not a chain of layers")

    monkeypatch.setattr(PackedNet, "__init__", refuse)
    specs = [digits(1e-3, epochs=1), digits(2e-3, epochs=1)]
    logs = [MemoryLogSink() for _ in specs]
    sinks = [MemoryMetricSink() for _ in specs]
    members = [
        PackMember(f"j{i}", s, metrics=m, logs=log)
        for i, (s, m, log) in enumerate(zip(specs, sinks, logs, strict=True))
    ]
    reasons: list[str] = []
    results = train_pack(members, on_unpacked=reasons.append)
    assert reasons == ["the packed engine trained a pack's trials solo: the model is not a "
                       "chain of layers"]  # fmt: skip
    for spec, result, sink, log in zip(specs, results, sinks, logs, strict=True):
        assert isinstance(result, TrainResult) and result.status_reason == "completed"
        assert any(
            "trained solo, not packed: the model is not a chain" in m for m in log.messages()
        )
        assert_metrics_match(run_solo(spec)[1], sink)


def test_each_member_reports_its_own_progress_within_an_epoch(monkeypatch):
    """The live view of a packed trial (the worker's `progress` events): each member's own
    step, batch and running loss, as its solo run reports them, and the members' numbers
    the same as alone."""
    from ml import engine
    from ml.sinks import StepProgress

    monkeypatch.setattr(engine, "PROGRESS_SECONDS", 0.0)  # every step is due a report
    specs = [digits(1e-3, epochs=1), digits(3e-2, epochs=1)]
    seen: list[list[StepProgress]] = [[], []]
    sinks = [MemoryMetricSink() for _ in specs]
    members = [PackMember(f"j{i}", s, metrics=sink, on_step_progress=seen[i].append)
               for i, (s, sink) in enumerate(zip(specs, sinks, strict=True))]  # fmt: skip
    results = train_pack(members)
    assert all(isinstance(r, TrainResult) for r in results)
    steps = seen[0][-1].steps_per_epoch
    for spec, reports, sink in zip(specs, seen, sinks, strict=True):
        assert [r.step for r in reports] == list(range(1, steps + 1))  # every step, in order
        assert [r.batch for r in reports] == list(range(1, steps + 1))
        assert all(r.epoch == 0 and r.epochs == 1 for r in reports)
        solo: list[StepProgress] = []
        train(spec, on_step_progress=solo.append)
        assert [r.loss for r in reports] == [
            pytest.approx(r.loss, rel=1e-5) for r in solo
        ]  # its own running loss, as alone
        assert_metrics_match(run_solo(spec)[1], sink)
    assert seen[0][-1].loss != pytest.approx(seen[1][-1].loss)  # not one shared figure
