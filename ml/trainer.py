"""One run's model, loss, optimizer and precision: one optimizer step, one evaluation.

The loop in ``ml.engine`` drives it; tests drive it directly to check a single
step against its reference (regularization, augmentation, dropout).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ml.architecture import TrainError, is_classification
from ml.augment import augment, is_active
from ml.clipping import clip_gradients
from ml.data import DeviceData, eval_batches
from ml.embedding_front import build_table_model
from ml.init import init_weights
from ml.models import build_loss, kernel_weights, regularization_penalty
from ml.optim import (
    apply_decoupled_weight_decay,
    build_optimizer,
    has_decoupled_weight_decay,
    set_lr,
)
from ml.spec import JobSpec

# Validation batches: no gradients to hold, so up to 1024 samples (or 4M input values),
# never fewer than the training batch.
EVAL_BATCH, EVAL_VALUES = 1024, 1 << 22
_AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class StepStats(NamedTuple):
    """What one optimizer step leaves on the device, read at the next sync point."""

    loss: Tensor  # 0-d: the loss that was minimized (data loss + l1/l2 penalty)
    grad_norm: Tensor | None  # 0-d: global gradient norm before clipping, when measured
    logits: Tensor | None  # classification: the batch's outputs and labels, for accuracy
    labels: Tensor | None


class Trainer:
    """Model, loss, optimizer and precision of one run: one optimizer step, one evaluation."""

    def __init__(self, spec: JobSpec, data: DeviceData, device: torch.device) -> None:
        self.spec, self.data, self.device = spec, data, device
        self.classification = is_classification(data.info)
        self.model = build_table_model(spec, data.info, data.embeddings)
        init_weights(self.model, spec.init)
        self.model.to(device)
        if any(isinstance(m, torch.nn.Conv2d) for m in self.model.modules()):
            # NHWC convolutions: 1.3-1.5x faster on CPU (oneDNN) and what tensor cores want;
            # the weights' format carries through the network, the input needs no copy.
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Only the forward pass is compiled: the optimizer step is already fused/foreach.
        self.forward: Callable[[Tensor], Tensor] = (
            torch.compile(self.model) if spec.resources.compile else self.model
        )
        self.loss_fn = build_loss(spec, data.info)
        self.optimizer = build_optimizer(spec, self.model, device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.kernels = kernel_weights(self.model)
        reg = spec.regularization
        self.l1, self.l2 = reg.l1, reg.l2
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
        if self.l1 == 0 and self.l2 == 0:
            return None
        return regularization_penalty(self.kernels, self.l1, self.l2)

    def step(self, xb: Tensor, yb: Tensor, lr: float, measure_norm: bool = True) -> StepStats:
        """One optimizer step; its statistics stay on the device.

        Without clipping the gradient norm costs a few kernels of its own, so the
        loop asks for it on every ``GRAD_NORM_EVERY``-th step only.
        """
        if self.augmentation is not None:
            xb = augment(xb, self.augmentation)
        set_lr(self.optimizer, lr)
        with self.autocast():
            out = self.forward(xb)
        loss = self.loss_fn(out.float(), yb)
        penalty = self.penalty()
        if penalty is not None:
            loss = loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        norm = None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        else:
            loss.backward()  # type: ignore[no-untyped-call]
        if self.spec.clipping is not None or measure_norm:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip and log the true gradients
            norm = clip_gradients(self.params, self.spec.clipping)
        if self.decay:
            apply_decoupled_weight_decay(self.optimizer)
        if self.scaler is not None:
            # update() lowers the scale in place exactly when it skipped the step (inf/NaN
            # gradients): counted on the device, read once per epoch (take_skipped_steps).
            scale = self.scaler._scale
            before = scale.clone() if scale is not None else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if before is not None and self.scaler._scale is not None:
                self._skipped += (self.scaler._scale < before).float()
        else:
            self.optimizer.step()
        if self.classification:
            return StepStats(loss.detach(), norm, out.detach(), yb)
        return StepStats(loss.detach(), norm, None, None)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        x, y = self.data.x_val, self.data.y_val
        if x is None or y is None:
            return {}
        self.model.eval()
        loss, correct = self._zero.clone(), self._zero.clone()
        per_sample = max(1, x[:1].numel())
        size = max(min(EVAL_BATCH, EVAL_VALUES // per_sample), self.spec.dataset.batch_size)
        for xb, yb in eval_batches(x, y, size, self.device):
            with self.autocast():
                out = self.forward(xb)
            loss += self.loss_fn(out.float(), yb) * len(yb)
            if self.classification:
                correct += (out.argmax(1) == yb).sum()
        self.model.train()
        penalty = self.penalty()  # Keras' val_loss includes the regularization losses too
        n = self.data.n_val
        values = {"val_loss": loss.item() / n + (penalty.item() if penalty is not None else 0.0)}
        if self.classification:
            values["val_accuracy"] = correct.item() / n
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
