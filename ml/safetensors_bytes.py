"""The bytes of ``safetensors.torch.save``, written without its per-tensor Python cost.

``safetensors.torch.save`` spends ~25 µs of Python per tensor before its Rust writer runs
(a NumPy view through ctypes, a shared-storage scan); a checkpoint of a small model holds
~25 tensors and is written every epoch, and a pack writes one per member
(bench/RESULTS.md, issue 26 on the thirteenth session's host). The format is small: an
8-byte little-endian header length, a compact JSON header padded with spaces to a multiple
of 8, then the tensors' bytes. This module writes it in the reference's exact layout
(tensors ordered by dtype, widest first, then by name; the header in that order after
``__metadata__``), so the output is byte-for-byte ``safetensors.torch.save``'s
(tests/ml/test_safetensors_bytes.py checks it against the library) and reads back with the
library's own parser.

Tensors may share storage (a pack's per-member views): each one's bytes are copied once.
A dtype outside the table, a non-strided tensor or a big-endian host goes to the library.
"""

from __future__ import annotations

import json
import struct
import sys

import torch
from safetensors.torch import save as st_save
from torch import Tensor

# The library's dtype names, in the order of its Rust enum; tensors are laid out from the
# last (widest) to the first.
_DTYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.uint16: "U16",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int32: "I32",
    torch.uint32: "U32",
    torch.float32: "F32",
    torch.complex64: "C64",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.uint64: "U64",
}
_RANK = {dtype: i for i, dtype in enumerate(_DTYPES)}


def _writable(tensors: dict[str, Tensor]) -> bool:
    return sys.byteorder == "little" and all(
        t.dtype in _RANK and t.layout == torch.strided for t in tensors.values()
    )


def to_safetensors(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save(tensors, metadata)``'s bytes, from tensors on any device."""
    if not _writable(tensors):
        return st_save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
                       metadata=metadata)  # fmt: skip
    ordered = sorted(tensors.items(), key=lambda kv: (-_RANK[kv[1].dtype], kv[0]))
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    parts: list[tuple[Tensor, int, int]] = []
    offset = 0
    for name, tensor in ordered:
        t = tensor.detach().to("cpu").contiguous()
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        parts.append((t, offset, size))
        offset += size
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    head += b" " * (-len(head) % 8)
    out = bytearray(8 + len(head) + offset)
    out[:8] = struct.pack("<Q", len(head))
    out[8 : 8 + len(head)] = head
    view, start = memoryview(out), 8 + len(head)
    for t, at, size in parts:
        if size:
            view[start + at : start + at + size] = t.reshape(-1).view(torch.uint8).numpy().data
    return bytes(out)
