"""Engine overhead: the engine's training throughput against the same work done by

1. a minimal hand-written PyTorch loop in this process (goal: engine at most 1.10x slower),
2. PyTorch Lightning's Trainer, if ``lightning`` is importable (goal: engine >= 1.3x faster).

Same data (digits, 80/20 split, standardized, held as tensors), same model (built by
ml.models), same optimizer (Adam, fused, lr 1e-3), same batch size, a shuffled pass
over the training split and a validation pass per epoch in all three. Lightning gets
the data the way Lightning wants it (a DataLoader over a TensorDataset).

The engine runs convolutions in channels_last (NHWC) memory format. For the CNN the
hand loop and Lightning therefore run twice: as usually written (NCHW), and with the
model in channels_last too, which isolates the loop's own overhead.

Timing: a clock reading at every epoch end; an epoch's time is the difference, so
setup and the first (warm-up) epoch count for nobody. Epoch times are pooled over
``--repeats`` interleaved runs (engine, hand, lightning, engine, ...) and the median
is used. Both process CPU time (robust on a shared machine: time spent descheduled
does not count) and wall time are reported; with one intra-op thread, CPU time is
the work done.

    .venv/bin/python bench/engine_overhead.py [--repeats 5] [--threads 1] [--device cuda]
        [--metrics f1_macro auroc [--before]] [--cases mlp cnn]

``--metrics`` gives the engine's job extra metrics (``spec.metrics``, issue 24: computed
over the whole split at each epoch's end, for training and validation) and adds an arm
``engine, no metrics``: the hand loop computes none of them, so the engine's ratio to
it includes their whole cost. ``--before`` adds an arm ``engine, metrics before``: the same
job with the epoch-end metric code as it was before this turn's change
(``bench/metrics_before.py``), interleaved with the others, for a before/after under one load.

With ``--device cuda`` (a lent GPU) the data and the models of the engine and the
hand loop live on the GPU, Lightning runs with ``accelerator="gpu"`` over its
DataLoader, and every clock reading waits for the GPU first; read the wall times.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch.nn import functional as F

from ml.data import DeviceData, load_dataset, prepare
from ml.engine import train
from ml.models import build_model
from ml.spec import JobSpec

CASES = {
    "mlp": ({"kind": "mlp"}, 32, 6),  # model, batch size, epochs per run
    "cnn": ({"kind": "cnn"}, 128, 6),
}

Stamp = tuple[float, float]  # (process CPU time, wall time)


DEVICE = torch.device("cpu")  # --device


def stamp() -> Stamp:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()  # the GPU's queued work belongs to the epoch it ends
    return time.process_time(), time.perf_counter()


def job(model: dict, batch: int, epochs: int, metrics: list[str] | None = None) -> JobSpec:
    return JobSpec.model_validate(
        {"dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": batch},
         "model": model, "epochs": epochs, "optimizer": {"kind": "adam", "lr": 1e-3},
         "resources": {"device": DEVICE.type}, "metrics": metrics or []}
    )  # fmt: skip


def engine_run(spec: JobSpec) -> list[Stamp]:
    stamps: list[Stamp] = []
    done = [0]

    def progress(epochs_completed: int, step: int) -> None:
        if epochs_completed > done[0]:  # also called mid-epoch; keep epoch ends only
            done[0] = epochs_completed
            stamps.append(stamp())

    train(spec, on_progress=progress)
    return stamps


def engine_run_before(spec: JobSpec) -> list[Stamp]:
    """The engine with the epoch-end metric code of before (bench/metrics_before.py)."""
    from metrics_before import classification_metrics as before

    import ml.metrics

    now = ml.metrics.classification_metrics
    ml.metrics.classification_metrics = before  # type: ignore[assignment]
    try:
        return engine_run(spec)
    finally:
        ml.metrics.classification_metrics = now


def adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)


@torch.no_grad()
def validate(model: torch.nn.Module, data: DeviceData) -> tuple[float, float]:
    assert data.x_val is not None and data.y_val is not None
    model.eval()
    out = torch.cat([model(data.x_val[i : i + 1024]) for i in range(0, data.n_val, 1024)])
    model.train()
    loss = F.cross_entropy(out, data.y_val).item()
    return loss, (out.argmax(1) == data.y_val).float().mean().item()


def model_for(spec: JobSpec, data: DeviceData, channels_last: bool) -> torch.nn.Module:
    model = build_model(spec, data.info).to(data.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def hand_run(spec: JobSpec, channels_last: bool = False) -> list[Stamp]:
    """The loop a PyTorch user writes, with the data already in tensors."""
    torch.manual_seed(spec.seed)
    data = prepare(spec, load_dataset(spec), DEVICE)
    model = model_for(spec, data, channels_last)
    opt = adam(model)
    bs, stamps = spec.dataset.batch_size, []
    for _ in range(spec.epochs):
        perm = torch.randperm(data.n_train, device=DEVICE)
        for i in range(0, data.n_train, bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        validate(model, data)
        stamps.append(stamp())
    return stamps


def lightning_run(spec: JobSpec, channels_last: bool = False) -> list[Stamp]:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(spec.seed)
    data = prepare(spec, load_dataset(spec), torch.device("cpu"))
    assert data.x_val is not None and data.y_val is not None

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model_for(spec, data, channels_last)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.model(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            out = self.model(x)
            self.log("val_loss", F.cross_entropy(out, y))
            self.log("val_accuracy", (out.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return adam(self.model)

    class Stamps(L.Callback):
        def __init__(self) -> None:
            self.stamps: list[Stamp] = []

        def on_validation_epoch_end(self, trainer, module) -> None:
            self.stamps.append(stamp())

    stamps = Stamps()
    trainer = L.Trainer(
        max_epochs=spec.epochs, accelerator="gpu" if DEVICE.type == "cuda" else "cpu",
        devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[stamps],
    )  # fmt: skip
    bs = spec.dataset.batch_size
    trainer.fit(
        Module(),
        DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=bs, shuffle=True),
        DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=1024),
    )
    return stamps.stamps


def epoch_times(stamps: list[Stamp]) -> list[Stamp]:
    return [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(stamps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--metrics", nargs="*", default=[], help="spec.metrics of the engine")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--before", action="store_true", help="add the old metric code's arm")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    try:
        import lightning

        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)
        print(f"lightning {lightning.__version__}")
        have_lightning = True
    except ImportError:
        print("lightning is not importable: skipping the Lightning comparison "
              "(pip install lightning)")  # fmt: skip
        have_lightning = False
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__} on {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f", {threads} intra-op thread(s), {args.repeats} "
          "interleaved runs per case; throughput in samples/s (median epoch)")  # fmt: skip
    if args.metrics:
        print(f"engine job with metrics {args.metrics} (train and val_ series)")
    for name in args.cases:
        model, batch, epochs = CASES[name]
        spec = job(model, batch, epochs, args.metrics)
        n_train = prepare(spec, load_dataset(spec), torch.device("cpu")).n_train
        runners: dict[str, Callable[[JobSpec], list[Stamp]]] = {"engine": engine_run}
        if args.metrics and args.before:
            runners["engine, metrics before"] = engine_run_before
        if args.metrics:
            plain = spec.model_copy(update={"metrics": []})
            runners["engine, no metrics"] = lambda _spec, plain=plain: engine_run(plain)
        conv = name == "cnn"
        runners["hand"] = partial(hand_run, channels_last=conv)
        if conv:
            runners["hand, NCHW"] = hand_run
        if have_lightning:
            runners["lightning"] = lightning_run
            if conv:
                runners["lightning, channels_last"] = partial(lightning_run, channels_last=True)
        times: dict[str, list[Stamp]] = {k: [] for k in runners}
        for _ in range(args.repeats):
            for key, run in runners.items():
                times[key] += epoch_times(run(spec))
        print(f"\ndigits {name}, batch {batch}:")
        for clock, i in (("CPU time", 0), ("wall time", 1)):
            sps = {k: n_train / statistics.median(t[i] for t in v) for k, v in times.items()}
            print(f"  [{clock}] " + ", ".join(f"{k} {v:.0f}" for k, v in sps.items()))
            for k in sps:
                if k == "engine, no metrics":
                    ratio = sps[k] / sps["engine"]
                    print(f"    the metrics make the engine take {ratio:.3f}x its time")
                if k == "engine, metrics before":
                    ratio = sps[k] / sps["engine"]
                    print(f"    the old metric code took {1 / ratio:.3f}x the engine's time")
                if k.startswith("hand"):
                    for arm in [a for a in sps if a.startswith("engine")]:
                        ratio = sps[k] / sps[arm]
                        print(f"    {arm} takes {ratio:.3f}x the time of '{k}' (goal <= 1.10)")
                if k.startswith("lightning"):
                    ratio = sps["engine"] / sps[k]
                    print(f"    engine is {ratio:.2f}x faster than '{k}' (goal >= 1.3)")


if __name__ == "__main__":
    main()
