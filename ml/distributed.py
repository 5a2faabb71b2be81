"""Data parallel, rank side: what one of ``resources.devices`` processes does differently.

The spec's meaning does not depend on the device count. Every rank walks the
single-process run's data order (the same seeded permutation, the same global
batches of ``dataset.batch_size`` rows) and takes its ``batch_size / N`` rows of
each; ``DistributedDataParallel`` averages the ranks' gradients, and each rank's
loss is weighted by its share of the global batch so that the average is the
single-process gradient, the last partial batch included (a rank may get fewer
rows there, or none). Penalties (l1/l2) are added whole on every rank: their
average is themselves. Clipping runs after the all-reduce, on the global gradient.

Random draws are made for the whole global batch on every rank (all ranks start
from the same seed and draw the same numbers) and sliced: augmentation
parameters and dropout masks (:class:`SlicedDropout`, which draws exactly what
``nn.Dropout`` draws on CPU) are those of the single-process run. Attention's
internal dropout is not sliced: it draws per replica (statistically, not
numerically, the single run's).

Batch norm: by default each replica normalizes with the statistics of its own
slice (as DDP does everywhere), which is *not* the single-process run: the
result depends on the device count. ``resources.sync_batch_norm`` normalizes with
the global batch's statistics (:class:`GlobalBatchNormMixin`, through the
differentiable ``torch.distributed.nn`` all-reduce, on CPU and GPU alike:
``torch.nn.SyncBatchNorm`` is GPU-only), which is the single-process arithmetic.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn import functional as dist_fn  # differentiable collectives
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass
class Shard:
    """This process's place among the ranks of one data-parallel run."""

    rank: int
    world: int
    control: Any = None  # a gloo process group for host-side agreement (stop, values)
    # The current global batch, set by the trainer before each forward.
    lo: int = 0
    hi: int = 0
    n_global: int = 0

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def local_rows(self, n_global: int, batch_size: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch of ``n_global`` rows: ``batch_size / N``
        of a full batch; the last partial batch leaves later ranks fewer rows, or none."""
        per = batch_size // self.world
        lo = min(self.rank * per, n_global)
        hi = min(lo + per, n_global)
        self.lo, self.hi, self.n_global = lo, hi, n_global
        return lo, hi

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true on every rank when it is true on any (one small host-side
        all-reduce): all ranks stop, or read their meters, at the same step."""
        t = torch.tensor([int(f) for f in flags], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return tuple(bool(v) for v in t.tolist())

    def sum(self, t: Tensor) -> Tensor:
        """Sum of ``t`` over the ranks (the reduced metric sums)."""
        dist.all_reduce(t, group=None if t.device.type != "cpu" else self.control)
        return t

    def from_lead(self, value: object) -> Any:
        """Rank 0's ``value`` on every rank (end-of-epoch metrics and decisions)."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather(self, value: object) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value, group=self.control)
        return out


class SlicedDropout(nn.Dropout):
    """Dropout whose mask is drawn for the whole global batch, then sliced to this rank's
    rows: ``empty_like(x).bernoulli_(1 - p) / (1 - p)``, exactly CPU ``nn.Dropout``'s draw.
    An ``nn.Dropout`` becomes one in place (its class changes: models that keep a list of
    their modules keep this one)."""

    shard: Shard

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        s = self.shard
        shape = (s.n_global, *x.shape[1:])
        layout = (
            torch.channels_last
            if x.ndim == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous()
            else torch.contiguous_format
        )
        mask = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
        mask.bernoulli_(1 - self.p).div_(1 - self.p)
        return x * mask[s.lo : s.hi]


class GlobalBatchNormMixin(_BatchNorm):
    """Training-mode batch norm over the global batch: per-channel sums of all ranks'
    slices (two differentiable all-reduces: the mean, then the squared deviations)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        with warnings.catch_warnings():  # "deprecated for _functional_collectives", whose
            warnings.simplefilter("ignore", FutureWarning)  # all_reduce has no autograd yet
            return self._global(x)

    def _global(self, x: Tensor) -> Tensor:
        dims = [0, *range(2, x.ndim)]
        count = torch.tensor([x.numel() // max(x.shape[1], 1)], dtype=x.dtype, device=x.device)
        total: Tensor = dist_fn.all_reduce(torch.cat([x.sum(dims), count]))  # type: ignore[no-untyped-call]
        n = total[-1]
        mean = total[:-1] / n
        view = (1, -1) + (1,) * (x.ndim - 2)
        centred = x - mean.view(view)
        squares: Tensor = dist_fn.all_reduce(centred.square().sum(dims))  # type: ignore[no-untyped-call]
        var = squares / n
        y = centred * torch.rsqrt(var + self.eps).view(view)
        if self.affine:
            y = y * self.weight.view(view) + self.bias.view(view)
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        return y


def _synced_class(cls: type[_BatchNorm]) -> type[_BatchNorm]:
    # After the layer's own class (SeqBatchNorm transposes, then calls super().forward),
    # before _BatchNorm's forward in the method resolution order.
    return type(f"Global{cls.__name__}", (cls, GlobalBatchNormMixin), {})


def prepare_model(model: nn.Module, shard: Shard, sync_batch_norm: bool) -> None:
    """Slice dropout masks; with ``sync_batch_norm``, batch norm over the global batch."""
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = SlicedDropout
            module.shard = shard  # type: ignore[assignment]
        elif sync_batch_norm and isinstance(module, _BatchNorm):
            module.__class__ = _synced_class(type(module))
