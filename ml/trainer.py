"""One run's model, loss, optimizer and precision: one optimizer step, one evaluation.

The loop in ``ml.engine`` drives it; tests drive it directly to check a single
step against its reference (regularization, augmentation, dropout).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ml.architecture import TrainError, is_classification
from ml.augment import apply_transform, augment, is_active, random_transform, slice_transform
from ml.class_weights import weighted_loss
from ml.clipping import clip_gradients
from ml.data import DeviceData, eval_batches
from ml.distributed import Shard, prepare_model
from ml.embedding_front import build_table_model
from ml.init import init_weights
from ml.metrics import EpochPredictions
from ml.models import (
    build_loss,
    kernel_groups,
    kernel_weights,
    regularization_penalty,
)
from ml.optim import (
    apply_decoupled_weight_decay,
    build_optimizer,
    has_decoupled_weight_decay,
    set_lr,
)
from ml.spec import JobSpec
from ml.warm_start import WarmStart, apply_warm_start
from ml.warm_start_plan import WarmStartPlan

# Validation batches: no gradients to hold, so up to 1024 samples (or 4M input values),
# never fewer than the training batch.
EVAL_BATCH, EVAL_VALUES = 1024, 1 << 22
_AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class StepStats(NamedTuple):
    """What one optimizer step leaves on the device, read at the next sync point."""

    loss: Tensor  # 0-d: the loss that was minimized (data loss + l1/l2 penalty)
    grad_norm: Tensor | None  # 0-d: global gradient norm before clipping, when measured
    logits: Tensor | None  # the batch's outputs and labels: accuracy, spec.metrics
    labels: Tensor | None  # (regression: only with spec.metrics)


def _all_finite(params: Sequence[Tensor], device: torch.device) -> Tensor:
    """0-d bool on the device: no gradient holds an inf or NaN (GradScaler's skip test). The
    max-abs norm cannot overflow the way a sum of squares can; NaN propagates through it."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool, device=device)
    return torch.isfinite(torch.stack(torch._foreach_norm(grads, math.inf))).all()


class Trainer:
    """Model, loss, optimizer and precision of one run: one optimizer step, one evaluation."""

    def __init__(
        self,
        spec: JobSpec,
        data: DeviceData,
        device: torch.device,
        warm_start: WarmStart | None = None,
        shard: Shard | None = None,
    ) -> None:
        self.spec, self.data, self.device, self.shard = spec, data, device, shard
        self.classification = is_classification(data.info)
        self.model = build_table_model(spec, data.info, data.embeddings)
        init_weights(self.model, spec.init)
        self.warm_start: WarmStartPlan | None = None
        if warm_start is not None:  # before the optimizer: frozen parameters stay out of it
            self.warm_start = apply_warm_start(self.model, warm_start)
        self.model.to(device)
        if any(isinstance(m, torch.nn.Conv2d) for m in self.model.modules()):
            # NHWC convolutions: 1.3-1.5x faster on CPU (oneDNN) and what tensor cores want;
            # the weights' format carries through the network, the input needs no copy.
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Only the forward pass is compiled: the optimizer step is already fused/foreach.
        self.forward: Callable[[Tensor], Tensor] = (
            torch.compile(self.model) if spec.resources.compile else self.model
        )
        self.train_forward = self.forward
        if shard is not None:  # data parallel: DDP averages the gradients in backward
            prepare_model(self.model, shard, spec.resources.sync_batch_norm)
            ids = [device.index] if device.type == "cuda" else None
            ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            self.train_forward = torch.compile(ddp) if spec.resources.compile else ddp
        self.loss_fn = build_loss(spec, data.info)  # validation: never class-weighted (Keras)
        self.train_loss_fn = weighted_loss(spec, data, device) or self.loss_fn
        self.keep_outputs = self.classification or bool(spec.metrics)
        self.optimizer = build_optimizer(spec, self.model, device)
        # Every parameter the optimizer holds (frozen ones are in neither): the step clears
        # their gradients itself.
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.clipping = spec.clipping
        self._lr = math.nan  # the lr last set on the optimizer's groups
        self.kernels = kernel_weights(self.model)
        self.kernel_groups = kernel_groups(
            self.model, spec.regularization.l1, spec.regularization.l2
        )
        self.decay = has_decoupled_weight_decay(self.optimizer)
        self.augmentation = spec.augmentation if is_active(spec.augmentation) else None
        if self.augmentation is not None and data.info.image_shape is None:
            raise TrainError("augmentation applies to images only: remove it for this dataset")
        precision = spec.resources.precision
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainError("this GPU has no bf16 support: use resources.precision 'fp16'")
        self.amp_dtype = _AMP[precision]
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self._skipped = torch.zeros((), device=device)  # fp16 steps the scaler skipped
        self._zero = torch.zeros((), device=device)

    def autocast(self) -> AbstractContextManager[None]:
        if self.amp_dtype is None:  # a disabled torch.autocast still costs a few µs a step
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def penalty(self) -> Tensor | None:
        if not self.kernel_groups:
            return None
        terms = [regularization_penalty(w, l1, l2) for w, l1, l2 in self.kernel_groups]
        return terms[0] if len(terms) == 1 else torch.stack(terms).sum()

    def step(self, xb: Tensor, yb: Tensor, lr: float, measure_norm: bool = True) -> StepStats:
        """One optimizer step; its statistics stay on the device.

        Without clipping the gradient norm costs a few kernels of its own, so the
        loop asks for it on every ``GRAD_NORM_EVERY``-th step only.
        """
        shard = self.shard
        if self.augmentation is not None:
            xb = self._augment(xb)
        if lr != self._lr:  # a constant schedule sets it once
            set_lr(self.optimizer, lr)
            self._lr = lr
        if self.amp_dtype is None:  # a step costs ~0.3 ms here: each µs is 0.3 % (bench/)
            out = self.train_forward(xb)
        else:
            with self.autocast():
                out = self.train_forward(xb)
        penalty = self.penalty() if self.kernel_groups else None
        if shard is None:
            loss = self.train_loss_fn(out.float(), yb)
            if penalty is not None:
                loss = loss + penalty
            reported = loss
        else:
            # This rank's share of the global batch's mean loss: DDP's average of the ranks'
            # gradients is then the global batch's gradient (last partial batch included).
            share = len(yb) / shard.n_global
            data = self.train_loss_fn(out.float(), yb) if len(yb) else out.float().sum() * 0
            loss, reported = data * (share * shard.world), data * share
            if penalty is not None:  # whole on every rank: the average is itself
                loss, reported = loss + penalty, reported + penalty / shard.world
        # zero_grad(set_to_none=True), without the optimizer's profiling hooks around it:
        # ~19 µs a step less on the digits MLP (~6 % of its step; bench/RESULTS.md).
        for p in self.params:
            p.grad = None
        norm = None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        else:
            loss.backward()  # type: ignore[no-untyped-call]
        if self.scaler is not None:
            # fp16: the true gradients, to clip and log, and to know (on the device) whether
            # the scaler will skip this step: they are inf/NaN exactly when it does.
            self.scaler.unscale_(self.optimizer)
            applies = _all_finite(self.params, self.device)  # before clipping changes them
            if self.spec.clipping is not None or measure_norm:
                norm = clip_gradients(self.params, self.spec.clipping)
            if self.decay:
                apply_decoupled_weight_decay(self.optimizer, applies)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._skipped += (~applies).float()  # read once per epoch (take_skipped_steps)
        else:
            if self.clipping is not None or measure_norm:
                norm = clip_gradients(self.params, self.clipping)
            if self.decay:
                apply_decoupled_weight_decay(self.optimizer)
            self.optimizer.step()
        if self.keep_outputs:
            return StepStats(reported.detach(), norm, out.detach(), yb)
        return StepStats(reported.detach(), norm, None, None)

    def _augment(self, xb: Tensor) -> Tensor:
        assert self.augmentation is not None
        shard = self.shard
        if shard is None:
            return augment(xb, self.augmentation)
        # The single run's draws for the whole global batch; this rank's rows of them.
        _, _, h, w = xb.shape
        drawn = random_transform(self.augmentation, shard.n_global, h, w, xb.device)
        return apply_transform(xb, slice_transform(drawn, shard.lo, shard.hi), self.augmentation)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        x, y = self.data.x_val, self.data.y_val
        if x is None or y is None:
            return {}
        self.model.eval()
        loss, correct = self._zero.clone(), self._zero.clone()
        per_sample = max(1, x[:1].numel())
        size = max(min(EVAL_BATCH, EVAL_VALUES // per_sample), self.spec.dataset.batch_size)
        names = self.spec.metrics
        predictions = EpochPredictions.for_names(names, self.classification) if names else None
        for xb, yb in eval_batches(x, y, size, self.device):
            with self.autocast():
                out = self.forward(xb)
            loss += self.loss_fn(out.float(), yb) * len(yb)
            predicted = out.argmax(1) if self.classification else None
            if predicted is not None:
                correct += (predicted == yb).sum()
            if predictions is not None:
                predictions.add(out.float(), yb, predicted)
        self.model.train()
        penalty = self.penalty()  # Keras' val_loss includes the regularization losses too
        n = self.data.n_val
        values = {"val_loss": loss.item() / n + (penalty.item() if penalty is not None else 0.0)}
        if self.classification:
            values["val_accuracy"] = correct.item() / n
        if predictions is not None:
            computed = predictions.compute(names, self.data.info.n_classes)
            values |= {f"val_{name}": v for name, v in computed.items()}
        return values

    def snapshot(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_weights(self, weights: dict[str, Tensor]) -> None:
        self.model.load_state_dict(weights)

    def take_skipped_steps(self) -> tuple[int, float] | None:
        """fp16: (steps skipped since the last call, the loss scale now); one host read."""
        if self.scaler is None:
            return None
        skipped = int(self._skipped.item())
        self._skipped.zero_()
        return skipped, float(self.scaler.get_scale())

    def scaler_state(self) -> dict[str, Any] | None:
        return None if self.scaler is None else dict(self.scaler.state_dict())

    def load_scaler_state(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
