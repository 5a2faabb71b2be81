"""A pack's batches: the solo run's batches of every member, in the solo run's order.

Members of one seed share their split, scaling and permutation (``ml.data``): the pack
reads one batch ``(B, ...)`` for all of them. Members of several seeds each read their own:
their splits are stacked ``(M, N, ...)`` and a batch is ``(M, B, ...)``, gathered with each
member's permutation of the epoch (derived from (seed, epoch), as ``ml.data.train_batches``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ml.data import DeviceData, epoch_seed


class PackData:
    def __init__(
        self, datas: Sequence[DeviceData], seeds: Sequence[int], batch_size: int, shuffle: bool
    ) -> None:
        self.seeds, self.bs, self.shuffle = list(seeds), batch_size, shuffle
        self.shared = len(set(seeds)) == 1
        first = datas[0]
        self.n = first.n_train
        self.device = first.x_train.device
        self.x_val: Tensor | None
        self.y_val: Tensor | None
        if self.shared:
            self.x, self.y = first.x_train, first.y_train
            self.x_val, self.y_val = first.x_val, first.y_val
        else:
            self.x = torch.stack([d.x_train for d in datas])
            self.y = torch.stack([d.y_train for d in datas])
            vals = [d.x_val for d in datas]
            labels = [d.y_val for d in datas]
            self.x_val = (
                torch.stack([v for v in vals if v is not None]) if vals[0] is not None else None
            )
            self.y_val = (
                torch.stack([v for v in labels if v is not None]) if labels[0] is not None else None
            )
            self.rows = torch.arange(len(datas), device=self.device).unsqueeze(1)
        self._epoch: int | None = None
        self._order: Tensor | None = None

    def order(self, epoch: int) -> Tensor | None:
        """The epoch's permutation: ``(N,)`` shared or ``(M, N)``; None without shuffling."""
        if not self.shuffle:
            return None
        if self._epoch != epoch:
            perms: dict[int, Tensor] = {}
            for seed in dict.fromkeys(self.seeds):
                gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
                perms[seed] = torch.randperm(self.n, generator=gen).to(self.device)
            self._order = (
                perms[self.seeds[0]] if self.shared else torch.stack([perms[s] for s in self.seeds])
            )
            self._epoch = epoch
        return self._order

    def batch(self, epoch: int, b: int) -> tuple[Tensor, Tensor]:
        lo, hi = b * self.bs, min(self.n, (b + 1) * self.bs)
        order = self.order(epoch)
        if self.shared:
            if order is None:
                return self.x[lo:hi], self.y[lo:hi]
            idx = order[lo:hi]
            return self.x.index_select(0, idx), self.y.index_select(0, idx)
        if order is None:
            return self.x[:, lo:hi], self.y[:, lo:hi]
        idx = order[:, lo:hi]
        return self.x[self.rows, idx], self.y[self.rows, idx]
