"""Building a pack's members exactly as ``ml.engine._train`` builds a solo run (same data,
weights, random state, schedule, early stopping, resume), then running the pack."""

from __future__ import annotations

import torch

from ml import engine, logsink
from ml.data import DeviceData, LoadedDataset, n_batches, prepare
from ml.device_setup import check_cublas_config, global_settings, resolve_device
from ml.early_stopping import EarlyStopping
from ml.engine import TrainResult
from ml.logsink import NullLogSink
from ml.pack_loop import Member, Pack
from ml.pack_net import Unpackable
from ml.resources import ResourcesExceeded, out_of_memory_message
from ml.schedules import build_schedule
from ml.sinks import NeverStop
from ml.trainer import Trainer


def run_pack(members: list[Member], loaded: LoadedDataset) -> list[TrainResult | BaseException]:
    spec = members[0].spec
    try:
        device = resolve_device(spec.resources)
        check_cublas_config(device, spec.deterministic)
    except Exception as exc:  # noqa: BLE001 -- every member's result
        return [exc for _ in members]
    with global_settings(spec.deterministic):
        cache: dict[int, DeviceData] = {}
        for m in members:
            try:
                _build(m, loaded, device, cache)
            except Unpackable:
                raise  # the caller trains every member solo
            except Exception as exc:  # noqa: BLE001 -- that member's result (InvalidSpec...)
                m.result = exc
        live = [m for m in members if m.result is None]
        try:
            if live:
                Pack(live, device).run()
        except Unpackable:
            raise  # before any step: the caller trains the members solo
        except torch.OutOfMemoryError as exc:
            detail = ". ".join(str(exc).split(". ")[:2]).strip()
            message = out_of_memory_message(spec, loaded.info, str(device), detail)
            message += f" (a pack of {len(live)} trials: fewer trials per pack need less)"
            _fail_rest(live, ResourcesExceeded(message))
        except Exception as exc:  # noqa: BLE001 -- the batched step failed: every member still training
            _fail_rest(live, exc)
    return [m.result if m.result is not None else RuntimeError("no result") for m in members]


def _fail_rest(members: list[Member], exc: Exception) -> None:
    for m in members:
        if m.result is None:
            m.result = exc
            if m.run is not None:
                m.run.metrics.flush()


def _build(m: Member, loaded: LoadedDataset, device: torch.device,
           cache: dict[int, DeviceData]) -> None:  # fmt: skip
    """What ``ml.engine._train`` builds, in its order: the same weights and random state."""
    spec, sinks = m.spec, m.sinks
    torch.manual_seed(spec.seed)
    with engine._building("the dataset"):
        if spec.seed not in cache:
            cache[spec.seed] = prepare(spec, loaded, device)
        m.data = data = cache[spec.seed]
    if data.x_train.device != device:
        raise Unpackable("the data does not fit on the device")
    with engine._building("the model, loss and optimizer"):
        trainer = Trainer(spec, data, device)
    steps = n_batches(data.n_train, spec.dataset.batch_size)
    with engine._building("the learning-rate schedule"):
        schedule = build_schedule(spec, steps)
    with engine._building("early stopping"):
        stopper = EarlyStopping(spec.early_stopping) if spec.early_stopping else None
    m.run = run = engine._Run(
        spec=spec, trainer=trainer, schedule=schedule, stopper=stopper,
        metrics=sinks.metrics if sinks.metrics is not None else engine._NullSink(),
        checkpoints=sinks.checkpoints,
        control=sinks.control if sinks.control is not None else NeverStop(),
        on_progress=sinks.on_progress, on_step_progress=sinks.on_step_progress,
        pruner=sinks.pruner, steps_per_epoch=steps,
        logs=sinks.logs if sinks.logs is not None else NullLogSink(),
    )  # fmt: skip
    run.say_started(device)
    blob = sinks.checkpoints.load() if sinks.checkpoints is not None else None
    if blob is not None:
        run.restore(blob)
        run.logs.line("info", logsink.resumed(run.state.step, run.state.epoch, run.state.batch))
    m.cpu_rng = torch.get_rng_state()
    m.gen = torch.Generator(device)
    m.gen.set_state(m.cpu_rng if device.type == "cpu" else torch.cuda.get_rng_state(device))
    if run.state.finished or run.state.epoch >= spec.epochs:
        m.result = run.result()
