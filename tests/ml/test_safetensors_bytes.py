"""`ml.safetensors_bytes.to_safetensors` writes what `safetensors.torch.save` writes, byte for
byte (the reference), and what the library's parser reads back."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save
from torch import Tensor

from ml.safetensors_bytes import _DTYPES, to_safetensors


def _random(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> Tensor:
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, generator=gen).to(dtype)
    return torch.randint(0, 100, shape, generator=gen).to(dtype)


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8))
        for k in a
    )  # fmt: skip


def test_every_dtype_and_shape_is_the_librarys_bytes() -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = [(), (0,), (3,), (2, 0, 4), (5, 7), (2, 3, 4)]
    tensors = {
        f"{name}.{i}": _random(shape, dtype, gen)
        for dtype, name in _DTYPES.items()
        for i, shape in enumerate(shapes)
    }
    ours = to_safetensors(tensors, {"format": "pt"})
    assert ours == save(tensors, metadata={"format": "pt"})
    assert _same(load(ours), tensors)


@pytest.mark.parametrize(
    "metadata",
    [None, {"format": "pt"}, {"trainforge": '{"a": [1, 2.5, "x\\"y\\\\z"], "b": null}'},
     {"k": 'quote " backslash \\ newline \n tab \t bell \x07 é 中'}],
)  # fmt: skip
def test_names_in_their_order_and_any_metadata_are_the_librarys_bytes(
    metadata: dict[str, str] | None,
) -> None:
    gen = torch.Generator().manual_seed(1)
    # Names whose byte order differs from their insertion and from a numeric order.
    names = ["b", "a", "a.10", "a.2", "A", "layer.0.weight", "optim.1.exp_avg", "rng.cpu", "é"]
    tensors = {n: _random((3, 2), torch.float32, gen) for n in names}
    tensors["counter"] = torch.tensor(7, dtype=torch.int64)
    tensors["state"] = torch.zeros(5, dtype=torch.uint8)
    assert to_safetensors(tensors, metadata) == save(tensors, metadata=metadata)


def test_views_and_shared_storage_are_written_as_their_values() -> None:
    stacked = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {"row": stacked[1], "transposed": stacked.T, "column": stacked[:, 2]}
    with pytest.raises(RuntimeError):  # the library refuses tensors that share memory
        save(tensors)
    ours = to_safetensors(tensors)
    copies = {k: v.contiguous().clone() for k, v in tensors.items()}
    assert ours == save(copies)
    assert _same(load(ours), copies)


def test_a_dtype_outside_the_table_goes_to_the_library() -> None:
    tensors = {"w": torch.randn(4, 4).to(torch.float8_e4m3fn), "b": torch.ones(4)}
    assert torch.float8_e4m3fn not in _DTYPES
    assert to_safetensors(tensors, {"format": "pt"}) == save(tensors, metadata={"format": "pt"})
