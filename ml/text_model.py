"""The ``text`` model: token embeddings, then mean pooling or a small Transformer encoder.

Input: token ids (B, L) from :mod:`ml.text` (0 = padding). They may arrive as a
float tensor (the data module keeps one dtype for every modality); ids below
2**24 are exact in float32 and are cast back to int64 here.

- ``encoder="pooling"``: embedding (``vocab_size`` x ``embedding_dim``,
  padding row kept at zero) -> mean over the non-padding positions ->
  dropout -> linear head. A text with no known token pools to zeros.
- ``encoder="transformer"``: embedding + learned positions ->
  ``num_layers`` pre-LayerNorm encoder layers (``num_heads`` heads,
  feed-forward 4·d, GELU, dropout = ``regularization.dropout``) -> final
  LayerNorm -> masked mean pooling -> head.

``ml.text.text_parameter_count`` mirrors this module; keep the two in step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ml.architecture import TrainError, output_units
from ml.checks import DatasetInfo
from ml.spec import TextModel
from ml.text import PAD


class TextClassifier(nn.Module):
    def __init__(self, spec: TextModel, n_out: int, dropout: float) -> None:
        super().__init__()
        d = spec.embedding_dim
        self.embedding = nn.Embedding(spec.vocab_size, d, padding_idx=PAD)
        self.transformer = spec.encoder == "transformer"
        if self.transformer:
            if d % spec.num_heads:
                raise TrainError(
                    f"model.embedding_dim {d} must be a multiple of model.num_heads "
                    f"{spec.num_heads}"
                )
            self.position = nn.Embedding(spec.max_length, d)
            layer = nn.TransformerEncoderLayer(
                d, spec.num_heads, dim_feedforward=4 * d, dropout=dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )  # fmt: skip
            self.encoder = nn.TransformerEncoder(layer, spec.num_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(d, n_out)

    def forward(self, x: Tensor) -> Tensor:
        ids = x.long()
        mask = ids != PAD  # (B, L)
        h = self.embedding(ids)
        if self.transformer:
            positions = torch.arange(ids.shape[1], device=ids.device)
            h = h + self.position(positions)[None]
            # A row of padding only would attend to nothing (NaN): let it see position 0.
            padding = ~mask
            padding[:, 0] = padding[:, 0] & mask.any(dim=1)
            h = self.norm(self.encoder(h, src_key_padding_mask=padding))
        weights = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        out: Tensor = self.head(self.dropout(pooled))
        return out


def build_text_model(spec: TextModel, info: DatasetInfo, dropout: float) -> TextClassifier:
    if info.modality != "text":
        raise TrainError(f"model.kind 'text' needs text data and this dataset is {info.modality}")
    return TextClassifier(spec, output_units(info), dropout)
