"""The loop of a pack: every member's solo bookkeeping (``ml.engine``'s ``_Run``) around one
batched step (``ml.pack_net``, ``ml.pack_optim``) of all the members still training.

Members train in lockstep at one position (epoch, batch). A member resumed from a checkpoint
further on waits and joins when the pack reaches its position; a member that ends (finished,
early stopped, pruned, canceled, failed) leaves. At each change the members' tensors are
written back to their own solo model and optimizer and the pack is stacked again from
them (``Pack.regroup``), so the solo objects are the one source of truth between steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.nn import functional as F

from ml import engine
from ml.architecture import is_classification
from ml.data import DeviceData, n_batches
from ml.engine import NonFiniteLoss, TrainResult
from ml.epoch_meter import EpochMeter
from ml.logsink import LogSink
from ml.metrics import EpochPredictions
from ml.models import kernel_weights
from ml.pack_data import PackData
from ml.pack_net import PackedNet, Unpackable
from ml.pack_optim import PackedOptimizer, kernel_coefficients, penalty
from ml.pruning import EpochPruner
from ml.sinks import CheckpointSink, MetricSink, RunControl, StepProgress
from ml.spec import JobSpec, loss_kind
from ml.trainer import EVAL_BATCH, EVAL_VALUES

log = logging.getLogger(__name__)


class Sinks(Protocol):
    metrics: MetricSink | None
    checkpoints: CheckpointSink | None
    control: RunControl | None
    logs: LogSink | None
    pruner: EpochPruner | None
    on_progress: Callable[[int, int], None] | None
    on_step_progress: Callable[[StepProgress], None] | None
    on_end: Callable[[TrainResult | BaseException], None] | None


@dataclass
class Member:
    job_id: str
    spec: JobSpec
    sinks: Sinks
    run: Any = None  # ml.engine._Run
    data: DeviceData | None = None
    gen: torch.Generator | None = None  # dropout's random stream (the solo run's)
    cpu_rng: Tensor | None = None
    meter: Any = None  # ml.epoch_meter.EpochMeter
    started: float = 0.0
    result: TrainResult | BaseException | None = None

    @property
    def position(self) -> tuple[int, int]:
        s = self.run.state
        return s.epoch, s.batch


@dataclass
class _Pending:
    step: int
    n: int
    loss: Tensor  # (M,)
    norm: Tensor | None
    correct: Tensor | None


@dataclass
class Pack:
    waiting: list[Member]
    device: torch.device
    active: list[Member] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)

    def __post_init__(self) -> None:
        first = self.waiting[0]
        assert first.data is not None
        spec = first.spec
        self.epochs, self.bs = spec.epochs, spec.dataset.batch_size
        self.steps = n_batches(first.data.n_train, self.bs)
        self.info = first.data.info
        self.classification = is_classification(self.info)
        self.loss_kind = loss_kind(spec.loss)
        if self.loss_kind == "auto":
            self.loss_kind = "cross_entropy" if self.classification else "mse"
        self.net: PackedNet | None = None
        self.data: PackData | None = None
        for m in self.waiting:
            m.run.logs.line("info", f"training in a pack of {len(self.waiting)} jobs")

    # ------------------------------------------------------------------ membership

    def regroup(self, members: list[Member]) -> None:
        """Write the current members back to their solo objects; stack ``members``."""
        self.store_all(optimizer=True)
        # Members with equal optimizer numbers side by side: one fused Adam call for them.
        self.active = members = sorted(members, key=_optimizer_order)
        if not members:
            return
        models = [m.run.trainer.model for m in members]
        specs = [m.spec for m in members]
        if self.net is None:
            self.net = PackedNet(models, self.device)
            _check_outputs(self.net, models, members[0])
        else:
            self.net.load(models)
        net = self.net
        kernels = set(net.kernel_names(models[0], kernel_weights(models[0])))
        self.popt = PackedOptimizer(specs, net, kernels)
        for i, m in enumerate(members):
            self.popt.load(i, m.run.trainer.optimizer, m.run.trainer.model)
        self.coefs = kernel_coefficients(specs, models, net)
        smoothing = [s.regularization.label_smoothing for s in specs]
        self.smoothing = torch.tensor(smoothing, device=self.device) if any(smoothing) else None
        self.gens = [m.gen for m in members if m.gen is not None]
        datas = [m.data for m in members if m.data is not None]
        self.data = PackData(datas, [s.seed for s in specs], self.bs, specs[0].dataset.shuffle)

    def store_all(self, optimizer: bool) -> None:
        if self.net is None or not self.active:
            return
        for i, m in enumerate(self.active):
            self.net.store(i, m.run.trainer.model)
            if optimizer:
                self.popt.store(i, m.run.trainer.optimizer, m.run.trainer.model)

    def leave(self, gone: Sequence[Member]) -> None:
        if gone:
            self.regroup([m for m in self.active if m not in gone])
            for m in gone:  # its model, optimizer (and views of old stacks) can go
                m.run = m.meter = m.data = None
            for m in gone:  # its job ends now, not when the whole pack does
                if m.sinks.on_end is not None and m.result is not None:
                    try:
                        m.sinks.on_end(m.result)
                    except Exception:
                        log.exception("job %s: its end could not be handed over", m.job_id)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        while self.waiting or self.active:
            pos = self.active[0].position if self.active else min(m.position for m in self.waiting)
            joining = [m for m in self.waiting if m.position == pos]
            if joining:
                self.sync(pos[0])
                self.waiting = [m for m in self.waiting if m not in joining]
                for m in joining:
                    self.start_epoch(m)
                self.regroup([m for m in self.active if m.result is None] + joining)
                continue
            if not self.active:
                continue
            epoch, batch = pos
            stopping = [m for m in self.active if self.guard(m, m.run.control.should_stop)]
            if stopping:
                self.sync(epoch)
                for m in stopping:
                    if m.result is None:
                        self.guard(m, partial(self.cancel, m))
                self.leave([m for m in self.active if m.result is not None])  # a NaN too
                continue
            self.step(epoch, batch)
            step = self.active[0].run.state.step
            # As the solo loop: the device is read every SYNC_EVERY steps, and also when a
            # member's live view is due a report (each member reports its own progress).
            due = [m for m in self.active if m.run.step_progress_due()]
            if step % engine.SYNC_EVERY == 0 or due:
                self.sync(epoch)
                for m in self.active:
                    self.guard(m, m.run.progress)
                for m in due:
                    if m.result is None:
                        self.guard(m, partial(m.run.step_progress, m.meter))
                self.leave([m for m in self.active if m.result is not None])
            if self.active and self.active[0].run.state.batch == self.steps:
                self.end_epoch(epoch)

    def guard(self, m: Member, fn: Callable[[], object]) -> bool:
        """Run one member's callback; an exception ends that member alone."""
        try:
            return bool(fn())
        except Exception as exc:  # noqa: BLE001 -- that member's result, the pack goes on
            m.result = exc
            return True

    def start_epoch(self, m: Member) -> None:
        run = m.run
        m.meter = meter = EpochMeter.restore(run.state.partial)
        meter.classification = self.classification
        if m.spec.metrics:
            meter.predictions = EpochPredictions.for_names(m.spec.metrics, self.classification)
        m.started = time.perf_counter() - meter.seconds

    # ------------------------------------------------------------------ one step

    def step(self, epoch: int, batch: int) -> None:
        net, data = self.net, self.data
        assert net is not None and data is not None
        lrs = [m.run.schedule.lr_at(epoch, batch) for m in self.active]
        xb, yb = data.batch(epoch, batch)
        out = net.forward(xb, not data.shared, True, self.gens)
        loss = self.loss(out, yb)
        pen = penalty(net, self.coefs)
        if pen is not None:
            loss = loss + pen
        for p in net.params.values():
            p.grad = None
        loss.sum().backward()  # type: ignore[no-untyped-call]
        norm = self.popt.clip(batch % engine.GRAD_NORM_EVERY == 0)
        self.popt.step(lrs)
        correct = None
        if self.classification:
            predicted = out.detach().argmax(-1)
            correct = (predicted == yb).sum(-1)
            for i, m in enumerate(self.active):
                if m.meter.predictions is not None:
                    m.meter.predictions.add(out[i].detach(), _row(yb, i, data.shared), predicted[i])
        else:
            for i, m in enumerate(self.active):
                if m.meter.predictions is not None:
                    m.meter.predictions.add(out[i].detach(), _row(yb, i, data.shared))
        n = int(yb.shape[-1] if self.classification else yb.shape[-2])
        for m, lr in zip(self.active, lrs, strict=True):
            s = m.run.state
            s.batch, s.step = s.batch + 1, s.step + 1
            m.meter.lr = lr
        step = self.active[0].run.state.step
        self.pending.append(_Pending(step, n, loss.detach(), norm, correct))

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Each member's mean loss over the batch, ``(M,)`` (``ml.models.build_loss``)."""
        m = out.shape[0]
        if self.loss_kind == "cross_entropy":
            logp = out.float().log_softmax(-1)
            target = y.expand(m, -1) if y.ndim == 1 else y
            nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).mean(1)
            if self.smoothing is None:
                return nll
            smooth = -logp.sum(-1).mean(1)
            return (1 - self.smoothing) * nll + smooth * (self.smoothing / out.shape[-1])
        fn: Callable[..., Tensor] = _REGRESSION[self.loss_kind]
        per_sample = fn(out.float(), y.expand_as(out), reduction="none")
        mean: Tensor = per_sample.mean(dim=(1, 2))
        return mean

    def sync(self, epoch: int) -> None:
        """Read the pending steps' statistics in one copy; a non-finite loss fails its member."""
        if not self.pending:
            return
        pend, self.pending = self.pending, []
        k, mm = len(pend), len(self.active)
        parts = [torch.stack([p.loss.float() for p in pend]).flatten()]
        with_norm = [p for p in pend if p.norm is not None]
        if with_norm:
            parts.append(
                torch.stack([p.norm.float() for p in with_norm if p.norm is not None]).flatten()
            )
        if self.classification:
            counts = [p.correct for p in pend if p.correct is not None]
            parts.append(torch.stack(counts).sum(0).to(parts[0].dtype))
        values = torch.cat(parts).tolist()
        losses, rest = values[: k * mm], values[k * mm :]
        norms, correct = rest[: len(with_norm) * mm], rest[len(with_norm) * mm :]
        for i, m in enumerate(self.active):
            meter = m.meter
            for j, p in enumerate(pend):
                value = losses[j * mm + i]
                if value != value or value in (float("inf"), float("-inf")):
                    m.result = NonFiniteLoss(p.step, epoch, value)
                    self.guard(m, m.run.metrics.flush)
                    break
                meter.loss, meter.samples = meter.loss + value * p.n, meter.samples + p.n
            for j in range(len(with_norm)):
                value = norms[j * mm + i]
                if value - value == 0:  # finite
                    meter.grad_norm, meter.norms = meter.grad_norm + value, meter.norms + 1
            if correct:
                meter.correct += correct[i]

    # ------------------------------------------------------------------ epoch end

    def end_epoch(self, epoch: int) -> None:
        self.sync(epoch)
        self.leave([m for m in self.active if m.result is not None])
        if not self.active:
            return
        now = time.perf_counter()
        trained = [now - m.started for m in self.active]
        val = self.evaluate()
        self.store_all(optimizer=True)
        done: list[Member] = []
        for i, m in enumerate(self.active):
            values = m.meter.values(self.classification, m.spec.metrics, self.info.n_classes)
            values |= val[i]
            values["epoch_seconds"] = time.perf_counter() - m.started
            values["samples_per_second"] = m.meter.samples / max(trained[i], 1e-9)
            if self.guard(m, partial(self.close_epoch, m, epoch, values)):
                done.append(m)
        self.leave(done)
        for m in self.active:
            self.start_epoch(m)

    def close_epoch(self, m: Member, epoch: int, values: dict[str, float]) -> bool:
        """``ml.engine._fit``'s epoch end for one member; True when it has ended."""
        run, s = m.run, m.run.state
        self.use_rng(m)
        stop = run.end_epoch(epoch, values)
        if stop or s.epoch == m.spec.epochs:
            m.result = run.finish("early_stopped" if stop else "completed")
        elif run.pruner is not None and run.pruner.should_prune(epoch, values):
            m.result = run.finish("pruned")
        elif s.epochs_completed % m.spec.checkpointing.every_n_epochs == 0:
            run.save()
        return m.result is not None

    def cancel(self, m: Member) -> None:
        self.store_all(optimizer=True)
        s = m.run.state
        s.partial = m.meter.state(time.perf_counter() - m.started)
        self.use_rng(m)
        m.result = m.run.finish("canceled")

    def use_rng(self, m: Member) -> None:
        """The member's random stream as the process's (what its checkpoint saves)."""
        assert m.gen is not None and m.cpu_rng is not None
        if self.device.type == "cpu":
            torch.set_rng_state(m.gen.get_state())
        else:
            torch.set_rng_state(m.cpu_rng)
            torch.cuda.set_rng_state(m.gen.get_state(), self.device)

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """``Trainer.evaluate`` of every member."""
        net, data = self.net, self.data
        assert net is not None and data is not None
        mm = len(self.active)
        if data.x_val is None or data.y_val is None:
            return [{} for _ in range(mm)]
        x, y, shared = data.x_val, data.y_val, data.shared
        n = int(y.shape[-1] if self.classification else y.shape[-2])
        per_sample = max(1, (x[0, :1] if not shared else x[:1]).numel())
        size = max(min(EVAL_BATCH, EVAL_VALUES // per_sample), self.bs)
        loss = torch.zeros(mm, device=self.device)
        correct = torch.zeros(mm, device=self.device)
        preds = [
            EpochPredictions.for_names(m.spec.metrics, self.classification)
            if m.spec.metrics else None
            for m in self.active
        ]  # fmt: skip
        for lo in range(0, n, size):
            xb = x[lo : lo + size] if shared else x[:, lo : lo + size]
            yb = y[lo : lo + size] if shared else y[:, lo : lo + size]
            out = net.forward(xb, not shared, False, self.gens)
            loss += self.loss(out, yb) * int(yb.shape[-1] if self.classification else yb.shape[-2])
            if self.classification:
                correct += (out.argmax(-1) == yb).sum(-1)
            for i, p in enumerate(preds):
                if p is not None:
                    p.add(out[i].float(), _row(yb, i, data.shared))
        pen = penalty(net, self.coefs)
        pens = pen.tolist() if pen is not None else [0.0] * mm
        losses, right = loss.tolist(), correct.tolist()
        out_values: list[dict[str, float]] = []
        for i, m in enumerate(self.active):
            v = {"val_loss": losses[i] / n + pens[i]}
            if self.classification:
                v["val_accuracy"] = right[i] / n
            p = preds[i]
            if p is not None:
                computed = p.compute(m.spec.metrics, self.info.n_classes)
                v |= {f"val_{k}": value for k, value in computed.items()}
            out_values.append(v)
        return out_values


_REGRESSION: dict[str, Callable[..., Tensor]] = {
    "mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss
}  # fmt: skip


def _optimizer_order(m: Member) -> tuple[float, ...]:
    opt = m.spec.optimizer
    return tuple(float(getattr(opt, k, 0.0)) for k in ("beta1", "beta2", "eps", "lr"))


def _row(y: Tensor, i: int, shared: bool) -> Tensor:
    """Member ``i``'s labels: a shared batch's, or row ``i`` of per-member labels."""
    return y if shared else y[i]


@torch.no_grad()
def _check_outputs(net: PackedNet, models: Sequence[torch.nn.Module], first: Member) -> None:
    """The batched program gives each member's solo outputs (eval mode) on a few rows, or the
    pack is not trained packed: a safety net for a layer kind translated wrongly."""
    assert first.data is not None
    x = first.data.x_train[:4]
    out = net.forward(x, False, False, [])
    for i, model in enumerate(models):
        was = model.training
        model.eval()
        ref = model(x)
        model.train(was)
        if not torch.allclose(out[i], ref, rtol=1e-3, atol=1e-4):
            raise Unpackable("the batched model does not reproduce a member's outputs")
