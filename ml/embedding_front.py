"""Learned (entity) embeddings of high-cardinality categorical columns, before the first layer.

``ml.encoding`` turns such a column into one index per row (0 = a category unseen in
training, 1..K the training categories, K+1 missing). :class:`EmbeddingFront` looks each
index up in its own ``nn.Embedding`` and puts the vectors after the other inputs; the
model the spec describes is then built for that wider input.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from ml.checks import DatasetInfo
from ml.models import build_model
from ml.spec import JobSpec


class EmbeddingFront(nn.Module):
    def __init__(self, width: int, embeddings: list[tuple[int, int, int]]) -> None:
        super().__init__()
        cols = {c for c, _, _ in embeddings}
        self.keep: Tensor
        self.register_buffer("keep", torch.tensor([i for i in range(width) if i not in cols]))
        self.columns = [c for c, _, _ in embeddings]
        self.sizes = [(slots, dim) for _, slots, dim in embeddings]
        self.tables = nn.ModuleList(nn.Embedding(slots, dim) for _, slots, dim in embeddings)

    @property
    def out_features(self) -> int:
        return int(self.keep.numel()) + sum(dim for _, dim in self.sizes)

    def forward(self, x: Tensor) -> Tensor:
        parts = [x.index_select(1, self.keep)]
        for col, (slots, _), table in zip(self.columns, self.sizes, self.tables, strict=True):
            idx = x[:, col].round().long().clamp(0, slots - 1)
            parts.append(table(idx).to(x.dtype))
        return torch.cat(parts, dim=1)


def build_table_model(
    spec: JobSpec, info: DatasetInfo, embeddings: list[tuple[int, int, int]]
) -> nn.Module:
    """The spec's model, behind an :class:`EmbeddingFront` when columns are embedded."""
    if not embeddings:
        return build_model(spec, info)
    front = EmbeddingFront(info.n_features, embeddings)
    return nn.Sequential(front, build_model(spec, replace(info, n_features=front.out_features)))
