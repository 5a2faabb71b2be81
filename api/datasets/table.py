"""A ``csv`` upload read by pyarrow's columnar CSV reader (issue 28, finding 8).

The bytes are checked (NUL, UTF-8; UTF-16 with a byte-order mark is converted),
the header is read and checked by ``api.datasets.tabular``, then pyarrow reads
only the label and feature columns, in blocks, multi-threaded. Each feature
column is typed (``api.datasets.columns``) and stored as one float32 per row.
Every problem of every kind is gathered and answered in one 422.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from api.datasets import columns as cols
from api.datasets import labels as labels_mod
from api.datasets import source
from api.datasets.codec import ParsedDataset
from api.datasets.errors import MAX_LISTED, Collector, DatasetRejected, Issue, reject
from api.datasets.schemas import DatasetOptions
from api.datasets.source import Source
from api.datasets.tabular import MAX_FIELD_CHARS, _column, _header, checked_bytes

BLOCK_BYTES = 2 * 2**20  # a row must fit in one block: a longer row is a clear 422
# The system allocator hands freed blocks back at once: with mimalloc (pyarrow's default) the
# read of a 20 MiB CSV peaked about 1.6x higher (bench/csv_upload.py).
pa.set_memory_pool(pa.system_memory_pool())
TRIM_BYTES = 4 * 2**20  # columns let go between two malloc_trim calls (each walks the heap)


def _case_variants(word: str) -> list[str]:
    pools = [(c.lower(), c.upper()) if c.isalpha() else (c,) for c in word]
    return sorted({"".join(p) for p in itertools.product(*pools)})


NULL_VALUES = sorted({v for w in cols.MISSING for v in _case_variants(w)})


def _first_line(data: Source) -> bytes:
    """The header line (without its newline), read in chunks from a file."""
    if isinstance(data, bytes):
        end = data.find(b"\n")
        return data[: end if end >= 0 else len(data)]
    parts: list[bytes] = []
    for part in source.iter_chunks(data, 2**16):
        end = part.find(b"\n")
        if end >= 0:
            parts.append(part[:end])
            break
        parts.append(part)
    data.seek(0)
    return b"".join(parts)


def _header_names(data: Source, delimiter: str) -> list[str]:
    first = _first_line(data)
    if first.startswith(codecs.BOM_UTF8):
        first = first[3:]
    rows = (
        (i + 1, r)
        for i, r in enumerate(csv.reader(io.StringIO(first.decode("utf-8")), delimiter=delimiter))
        if r and not (len(r) == 1 and not r[0].strip())
    )
    return _header(rows)


def _read(
    data: Source, names: list[str], wanted: list[str], delimiter: str
) -> tuple[pa.Table, Collector]:
    """The wanted columns, read block by block (pyarrow's streaming reader: a table's worth
    of memory, about half of what ``read_csv`` peaks at). The streaming reader keeps the
    types it infers from the first block; when a later block does not fit them (a column
    empty at first, or numbers that turn into words) the file is read again by
    ``read_csv``, which widens the types."""
    try:
        return _read_with(data, names, wanted, delimiter, stream=True)
    except _TypesChanged:
        return _read_with(data, names, wanted, delimiter, stream=False)


class _TypesChanged(Exception):
    pass


def _read_with(
    data: Source, names: list[str], wanted: list[str], delimiter: str, *, stream: bool
) -> tuple[pa.Table, Collector]:
    ragged = Collector("file", "ragged_row")

    def on_bad_row(row: Any) -> str:
        at = f"line {row.number}" if row.number is not None else f"the row {row.text[:40]!r}"
        ragged.add(f"{at} has {row.actual_columns} fields and the header has {len(names)}")
        return "skip"

    src = (
        pa.py_buffer(data)
        if isinstance(data, bytes)
        else pa.PythonFile(source.as_file(data), mode="r")
    )
    options: dict[str, Any] = {
        "read_options": pacsv.ReadOptions(
            column_names=names, skip_rows=1, block_size=BLOCK_BYTES, use_threads=False
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_bad_row, newlines_in_values=True
        ),
        "convert_options": pacsv.ConvertOptions(
            include_columns=wanted,
            null_values=NULL_VALUES,
            strings_can_be_null=True,
            true_values=[],
            false_values=[],
            quoted_strings_can_be_null=True,
        ),
    }
    try:
        if not stream:
            return pacsv.read_csv(src, **options), ragged
        reader = pacsv.open_csv(src, **options)
        try:
            batches = list(reader)
        except pa.ArrowInvalid as exc:
            if "conversion error" in str(exc):
                raise _TypesChanged from exc
            raise
        return pa.Table.from_batches(batches, schema=reader.schema), ragged
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        msg = str(exc).split("\n")[0][:300]
        if "straddling" in msg or "block" in msg:
            msg = f"a row is longer than {BLOCK_BYTES // 2**20} MiB"
        raise reject("file", f"not valid CSV ({msg})", "malformed_csv") from exc


def _labels(arr: pa.ChunkedArray, task: str) -> labels_mod.Labels:
    """The labels, column-wise: numbers go to ``from_numbers``, strings are sorted classes."""
    a = arr.combine_chunks()
    text = not (pa.types.is_integer(a.type) or pa.types.is_floating(a.type))
    if text:
        a = pc.utf8_trim_whitespace(pc.cast(a, pa.string()))
    absent = pc.is_null(a)
    if text:
        absent = pc.or_kleene(absent, pc.equal(a, ""))
    absent_np = np.asarray(pc.fill_null(absent, True).to_numpy(zero_copy_only=False), dtype=bool)
    if absent_np.any():
        missing = Collector("file", "missing_label")
        for i in np.flatnonzero(absent_np)[:MAX_LISTED]:
            missing.add(f"row {int(i) + 1}: the label is missing")
        missing.count = int(absent_np.sum())
        missing.raise_if_any("some samples have no label")
    if pa.types.is_string(a.type):
        if not pc.all(pc.match_substring_regex(pc.utf8_lower(a), cols.NUMBER_RE)).as_py():
            if task == "regression":
                return labels_mod.from_strings([str(s) for s in a.to_pylist()], task)
            codes, names = cols.categorical_codes(a, pc.is_valid(a))
            note = "task inferred as classification: the labels are not all numbers"
            return labels_mod.from_class_names(
                codes.astype(np.int64), names, inferred=task == "auto", note=note
            )
        a = pc.cast(a, pa.float64())
    return labels_mod.from_numbers(a.to_numpy(zero_copy_only=False), task)


def _finite(col: cols.Column) -> Issue | None:
    x = col.values
    if x is None or col.type != "number":
        return None
    bad = np.isinf(x)  # float32 already: a number beyond its range became an infinity
    if not bad.any():
        return None
    rows = np.flatnonzero(bad)
    shown = ", ".join(str(int(r) + 1) for r in rows[:5])
    return Issue(
        "file",
        f"column {col.name!r}: {len(rows)} values are infinite or beyond float32 (rows {shown})",
        "feature_not_finite",
    )


def _long_cells(table: pa.Table) -> list[Issue]:
    out = []
    for name, arr in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(arr.type) and len(arr):
            longest = pc.max(pc.utf8_length(arr)).as_py() or 0
            if longest > MAX_FIELD_CHARS:
                out.append(
                    Issue(
                        "file",
                        f"column {name!r} holds a cell of {longest} "
                        f"characters; at most {MAX_FIELD_CHARS}",
                        "cell_too_long",
                    )
                )
    return out


def parse_table(data: Source, opts: DatasetOptions) -> ParsedDataset:
    assert opts.label_column is not None and opts.delimiter is not None
    data = checked_bytes(data)
    names = _header_names(data, opts.delimiter)
    position = {n: i for i, n in enumerate(names)}
    label = names[_column(names, opts.label_column, "label_column", position)]
    overrides = dict(opts.columns or {})
    issues: list[Issue] = []
    for name in sorted(set(overrides) - set(names)):
        issues.append(Issue("columns", f"no column {name!r} in the header", "missing_column"))
    if label in overrides:
        issues.append(
            Issue("columns", f"{label!r} is the label, not a feature", "label_is_feature")
        )
    if opts.feature_columns is not None:
        features = list(  # a column named twice is one feature
            dict.fromkeys(
                names[_column(names, c, "feature_columns", position)] for c in opts.feature_columns
            )
        )
        if label in features:
            raise reject(
                "feature_columns",
                f"the label column {label!r} cannot also be a feature",
                "label_is_feature",
            )
    else:
        features = [n for n in names if n != label]
    if not features:
        raise reject("file", "there is no feature column besides the label", "no_features")
    table, ragged = _read(data, names, [label, *features], opts.delimiter)
    issues += ragged.issues + (
        [
            Issue(
                "file", f"... and {ragged.count - len(ragged.issues)} more like these", "ragged_row"
            )
        ]
        if ragged.count > len(ragged.issues)
        else []
    )
    if table.num_rows == 0:
        raise DatasetRejected(
            [*issues, Issue("file", "the file has a header but no data rows", "no_rows")]
        )
    issues += _long_cells(table)
    # Each column is let go once typed: the table is never alongside all the typed floats.
    columns = dict(zip(table.column_names, table.columns, strict=True))
    rows = table.num_rows
    del table
    source.release_freed_memory()  # the reader's blocks
    if issues:
        raise DatasetRejected(issues)
    labels: labels_mod.Labels | None = None
    try:
        labels = _labels(columns.pop(label), opts.task.value)
    except DatasetRejected as exc:
        issues += exc.issues
    typed = []
    freed = 0  # bytes of columns let go since the last trim (a trim walks the whole heap)
    for col, nbytes in _typed(features, columns, overrides, rows):
        freed += nbytes
        if col.values is not None:  # float32 now: half the memory until x is assembled
            with np.errstate(over="ignore"):
                col.values = col.values.astype(np.float32, copy=False)
        bad = _finite(col)
        issues += col.issues + ([bad] if bad else [])
        typed.append(col)
        if freed >= TRIM_BYTES:  # the columns' strings and float64 temporaries
            source.release_freed_memory()
            freed = 0
    issues += cols.missing_numbers(typed, str(opts.impute or "none"))
    issues += cols.check_category_budget(typed)
    used = [c for c in typed if c.type in cols.USED and c.values is not None]
    if not used and not issues:
        issues.append(
            Issue(
                "file",
                "no column is usable as a feature: "
                + "; ".join(f"{c.name}: {c.note}" for c in typed[:MAX_LISTED]),
                "no_features",
            )
        )
    if issues:
        raise DatasetRejected(issues, detail=_summary(issues))
    assert labels is not None
    x = np.empty((len(labels.y), len(used)), dtype=np.float32)
    for j, c in enumerate(used):
        x[:, j] = c.values
        c.values = None
    return ParsedDataset(
        modality="tabular",
        labels=labels,
        x=x,
        feature_names=[c.name for c in used],
        notes=_notes(labels, typed, opts),
        columns=[c.describe() for c in typed],
    )


def _plain_number(arr: pa.ChunkedArray, override: str | None) -> bool:
    return override is None and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type))


def _typed(
    features: list[str],
    columns: dict[str, pa.ChunkedArray],
    overrides: Mapping[str, str],
    rows: int,
) -> Iterator[tuple[cols.Column, int]]:
    """Each feature typed, in order, with the bytes of its column let go. Where a block of
    ``cols.BLOCK_CELLS`` holds two or more rows' worth of columns (a wide table), runs of
    integer and float columns without an override are typed a block at a time."""
    width = cols.BLOCK_CELLS // max(rows, 1)
    i = 0
    while i < len(features):
        end = i  # plain number columns from i, at most `width`: no slice of the rest each time
        while (
            width >= 2
            and end < len(features)
            and end - i < width
            and _plain_number(columns[features[end]], overrides.get(features[end]))
        ):
            end += 1
        if end - i >= 2:
            run = features[i:end]
            arrays = [columns.pop(n).combine_chunks() for n in run]
            nbytes = sum(a.nbytes for a in arrays)
            block = cols.number_columns(run, arrays)
            del arrays
            yield from ((col, nbytes if j == 0 else 0) for j, col in enumerate(block))
            i += len(run)
            continue
        name = features[i]
        arr = columns.pop(name)
        nbytes = arr.nbytes
        col = cols.typed_column(name, arr, overrides.get(name))
        del arr
        yield col, nbytes
        i += 1


def _summary(issues: list[Issue]) -> str:
    kinds = sorted({i.type for i in issues})
    head = "; ".join(i.msg for i in issues[:3])
    return f"{len(issues)} problems ({', '.join(kinds)}): {head}"


def _notes(labels: labels_mod.Labels, typed: list[cols.Column], opts: DatasetOptions) -> list[str]:
    notes = [labels.note] if labels.note else []
    kinds: dict[str, list[str]] = {}
    for c in typed:
        kinds.setdefault(c.type, []).append(c.name)
    notes.append(
        "column types: "
        + "; ".join(
            f"{k} {', '.join(v[:MAX_LISTED])}{' ...' if len(v) > MAX_LISTED else ''}"
            for k, v in kinds.items()
        )
    )
    notes += [f"column {c.name!r} {c.note}" for c in typed if c.note][:MAX_LISTED]
    holes = [c for c in typed if c.type in ("number", "date") and c.missing]
    if holes:
        total = sum(c.missing for c in holes)
        shown = ", ".join(f"{c.name} ({c.missing})" for c in holes[:MAX_LISTED])
        notes.append(
            f"{total} missing values will be imputed ({opts.impute}) with statistics of each "
            f"job's training split: {shown}"
        )
    return notes


def parse_csv(data: Source, opts: DatasetOptions) -> ParsedDataset:
    """A ``csv`` upload: every column typed (``api.datasets.columns``), every problem at once.
    Callers import this module lazily: pyarrow is only loaded when a CSV arrives."""
    return parse_table(data, opts)
