"""Early stopping with Keras ``EarlyStopping`` semantics (Keras 3), torch-free.

The engine calls :meth:`EarlyStopping.on_epoch_end` after each epoch's
metrics (validation included) are known. It returns True when training must
stop. When :meth:`EarlyStopping.is_new_best_this_epoch` is True the engine
snapshots the weights (if ``restore_best_weights``); at the end of training
-- stopped early or not, as Keras's ``on_train_end`` -- it restores that
snapshot when :attr:`EarlyStopping.should_restore` is True.

Keras details kept on purpose (they surprise people, so they are listed):

- ``wait`` is incremented *before* the improvement test, and an improvement
  resets it only if the value also beats ``baseline``: with a baseline that is
  never beaten, training stops after ``patience`` monitored epochs, and the
  best weights still are those of the best epoch seen.
- ``best`` starts unset: the first monitored epoch is always the new best
  (the baseline does not seed it).
- Epochs before ``start_from_epoch``, and epochs whose metrics lack the
  monitor, are ignored entirely (Keras warns on a missing monitor; ``ml.checks``
  rejects monitors the job never produces, so this only matters if the engine
  ever omits a metric). A NaN is compared as Keras compares it: it
  never improves on a value (but a NaN first value becomes the best).
- Stopping never happens at epoch 0 (Keras's ``epoch > 0`` guard), even with
  patience 0.

Where Keras uses 0 for "never" (``stopped_epoch``, ``best_epoch``) we use
None, so epoch 0 is unambiguous.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml.monitor import Mode, decode_float, encode_float, is_improvement, resolve_mode
from ml.spec import EarlyStoppingSpec


class EarlyStopping:
    def __init__(self, spec: EarlyStoppingSpec) -> None:
        self.spec = spec
        self.mode: Mode = resolve_mode(spec.monitor, spec.mode)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self._new_best = False

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Update with this epoch's metrics; True means stop training now."""
        self._new_best = False
        current = metrics.get(self.spec.monitor)
        if current is None or epoch < self.spec.start_from_epoch:
            return False
        current = float(current)
        self.wait += 1
        if is_improvement(current, self.best, self.mode, self.spec.min_delta):
            self.best, self.best_epoch, self._new_best = current, epoch, True
            # Only restart the wait if we beat both the baseline and the previous best.
            if self.spec.baseline is None or is_improvement(
                current, self.spec.baseline, self.mode, self.spec.min_delta
            ):
                self.wait = 0
            return False
        if self.wait >= self.spec.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    def is_new_best_this_epoch(self) -> bool:
        """True right after an epoch that set a new best: snapshot the weights now."""
        return self._new_best

    @property
    def should_restore(self) -> bool:
        """Restore the best snapshot at the end of training (Keras ``on_train_end``)."""
        return self.spec.restore_best_weights and self.best_epoch is not None

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite floats as strings); the weights are not in it."""
        return {
            "best": encode_float(self.best),
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "wait": self.wait,
            "new_best": self._new_best,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = decode_float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        self.wait = int(state["wait"])
        self._new_best = bool(state["new_best"])
