"""Wide tables type their number columns a block at a time (`columns.number_columns`), and
that gives exactly what typing each column alone (`columns.typed_column`) gives: the same
type, counts, categories and issues, and the same float32 values, for numbers with gaps,
infinities, signed zeros, values past float32, 0/1 columns (boolean) and small integer
ranges (categorical). A whole upload parses to the same dataset either way."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from api.datasets import columns as cols
from api.datasets import table
from api.datasets.schemas import DatasetOptions
from api.datasets.table import parse_csv


def _block(rng: np.random.Generator, rows: int) -> list[pa.Array]:
    """Columns of every kind the rules tell apart, each with and without gaps."""
    n = rows
    out = [
        pa.array(rng.normal(size=n)),
        pa.array(rng.integers(0, 2, n)),  # 0/1: boolean
        pa.array(rng.integers(0, 2, n).astype(float)),
        pa.array(rng.integers(1, 5, n)),  # a few integers: categorical at 10 per value
        pa.array(rng.integers(1, 50, n)),  # too many distinct integers: number
        pa.array(np.where(rng.random(n) < 0.5, -0.0, 0.0)),  # one value, two zeros
        pa.array(np.where(rng.random(n) < 0.3, np.inf, 1.0)),
        pa.array(np.full(n, 1e39)),  # past float32: an infinity once stored
        pa.array(np.full(n, 7.0)),
        pa.array([None] * n, type=pa.float64()),  # no value at all
        pa.array(np.round(rng.normal(size=n), 1)),
    ]
    gaps = rng.random(n) < 0.2
    for arr in list(out):
        values = arr.to_numpy(zero_copy_only=False).astype(float)
        masked = pa.array(np.where(gaps, np.nan, values), from_pandas=True)
        out.append(masked)  # NaN read as null: what pyarrow's CSV reader gives
        if pa.types.is_integer(arr.type):
            out.append(pa.array([None if g else int(v) for g, v in zip(gaps, values, strict=True)]))
    return out


def _same(block: cols.Column, alone: cols.Column) -> None:
    assert block.describe() == alone.describe()
    assert [i.msg for i in block.issues] == [i.msg for i in alone.issues]
    assert (block.values is None) == (alone.values is None)
    if alone.values is not None and block.values is not None:
        with np.errstate(over="ignore"):
            want = alone.values.astype(np.float32)
        got = block.values.astype(np.float32, copy=False)
        assert np.array_equal(got, want, equal_nan=True), alone.name
        assert np.array_equal(np.signbit(got), np.signbit(want)), alone.name


@pytest.mark.parametrize("rows", [1, 2, 5, 40, 200])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_block_types_each_column_as_it_alone_is_typed(rows: int, seed: int) -> None:
    arrays = [  # what table._typed hands a block: integer and float columns (an all-null
        # column reads as type null and is typed alone)
        a
        for a in _block(np.random.default_rng(seed), rows)
        if pa.types.is_integer(a.type) or pa.types.is_floating(a.type)
    ]
    names = [f"c{i}" for i in range(len(arrays))]
    block = cols.number_columns(names, arrays)
    alone = [cols.typed_column(n, a, None) for n, a in zip(names, arrays, strict=True)]
    assert [c.type for c in block] == [c.type for c in alone]
    for b, a in zip(block, alone, strict=True):
        _same(b, a)
    if rows >= 40:  # enough rows for the integer and 0/1 rules to pick them
        assert {"number", "boolean", "categorical"} <= {c.type for c in alone}


def _wide_csv(rng: np.random.Generator, rows: int, columns: int) -> bytes:
    kinds = [
        lambda: f"{rng.normal():.4f}",
        lambda: str(int(rng.integers(0, 2))),
        lambda: str(int(rng.integers(1, 4))),
        lambda: "" if rng.random() < 0.3 else "2.5",
        lambda: "red" if rng.random() < 0.5 else "blue",  # a string column between runs
    ]
    header = [f"f{j}" for j in range(columns)] + ["label"]
    lines = [",".join(header)]
    for i in range(rows):
        cells = [kinds[j % len(kinds)]() for j in range(columns)]
        lines.append(",".join([*cells, str(i % 3)]))
    return "\n".join(lines).encode()


@pytest.mark.parametrize("impute", ["none", "mean"])
def test_a_wide_upload_parses_the_same_in_blocks_and_column_by_column(
    impute: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _wide_csv(np.random.default_rng(7), rows=60, columns=300)
    opts = DatasetOptions(task="classification", label_column="label", delimiter=",", impute=impute)
    outcomes = []
    for cells in (cols.BLOCK_CELLS, 0):  # 0: no block holds two rows, each column alone
        monkeypatch.setattr(cols, "BLOCK_CELLS", cells)
        try:
            parsed = parse_csv(data, opts)
        except table.DatasetRejected as exc:
            outcomes.append(("rejected", [i.msg for i in exc.issues]))
            continue
        outcomes.append(
            ("parsed", parsed.feature_names, parsed.notes, parsed.columns, parsed.x.tobytes())
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ("parsed" if impute == "mean" else "rejected")
