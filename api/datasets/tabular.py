"""CSV uploads: numeric features and a label (``csv``), or a text and a label (``text_csv``).

- UTF-8 (a byte-order mark is skipped), a header row naming the columns,
  RFC 4180 quoting. Blank lines are skipped; a row with another number of
  fields than the header is an error.
- Missing values are empty cells or ``NA``, ``N/A``, ``NaN``, ``null``,
  ``None`` (any case). In features they are an error unless ``impute=mean``:
  then they are stored as NaN and each job fills them with its training
  split's column means (ml.data.prepare); infinities are always an error.
  A missing label is always an error.
- ``text_csv`` keeps the raw text: the job's ``preprocessing.text_cleaning``
  and its training split decide cleaning and vocabulary, at training time.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from api.datasets import labels as labels_mod
from api.datasets.codec import ParsedDataset
from api.datasets.errors import MAX_LISTED, Collector, DatasetRejected, Issue, reject
from api.schemas import DatasetOptions, ImputeOption

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
MAX_COLUMNS = 100_000
MAX_FIELD_CHARS = 1_000_000
_BATCH = 4096


def _text(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise reject(
            "file",
            f"the file is not UTF-8 text (byte {exc.start} is {data[exc.start : exc.start + 1]!r});"
            " save it as UTF-8 CSV",
            "not_utf8",
        ) from exc
    if "\x00" in text:
        raise reject("file", "the file holds NUL bytes: it is not a CSV text file", "binary_file")
    return text


def _rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row."""
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield reader.line_num, row
    except csv.Error as exc:
        raise reject(
            "file", f"line {reader.line_num}: not valid CSV ({exc})", "malformed_csv"
        ) from exc


def _header(rows: Iterator[tuple[int, list[str]]]) -> list[str]:
    first = next(rows, None)
    if first is None:
        raise reject("file", "the file has no rows: send a header row and data rows", "empty_file")
    names = [c.strip() for c in first[1]]
    if len(names) > MAX_COLUMNS:
        raise reject("file", f"{len(names)} columns; at most {MAX_COLUMNS}", "too_many_columns")
    issues = []
    if any(not n for n in names):
        issues.append(Issue("file", "the header row has an empty column name", "bad_header"))
    counts = Counter(names)  # linear: a 100,000-column header must not cost seconds
    dupes = sorted(n for n, k in counts.items() if n and k > 1)
    if dupes:
        issues.append(
            Issue("file", f"the header repeats column names: {', '.join(dupes)}", "bad_header")
        )
    if issues:
        raise DatasetRejected(issues)
    return names


def _column(
    names: list[str], wanted: str, option: str, position: dict[str, int] | None = None
) -> int:
    """The column's index; pass ``position`` (name -> index) when looking up many."""
    position = position if position is not None else {n: i for i, n in enumerate(names)}
    if wanted not in position:
        shown = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
        raise reject(
            option,
            f"no column {wanted!r} in the header; the columns are {shown}: set {option}",
            "missing_column",
        )
    return position[wanted]


def _to_floats(
    batch: list[list[str]], lines: list[int], names: list[str], bad: Collector
) -> NDArray[np.float64]:
    """A (rows, columns) float block; missing cells become NaN, bad ones are collected."""
    try:
        return np.array(batch, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty((len(batch), len(names)), dtype=np.float64)
    for r, row in enumerate(batch):
        for c, cell in enumerate(row):
            s = cell.strip()
            if s.lower() in MISSING:
                out[r, c] = np.nan
                continue
            try:
                out[r, c] = float(s)
            except ValueError:
                out[r, c] = np.nan
                bad.add(f"line {lines[r]}, column {names[c]!r}: {s[:40]!r} is not a number")
    return out


def parse_csv(data: bytes, opts: DatasetOptions) -> ParsedDataset:
    assert opts.label_column is not None and opts.delimiter is not None
    rows = _rows(_text(data), opts.delimiter)
    names = _header(rows)
    label_idx = _column(names, opts.label_column, "label_column")
    if opts.feature_columns is not None:
        position = {n: i for i, n in enumerate(names)}  # one index, not a scan per column
        feat_idx = [_column(names, c, "feature_columns", position) for c in opts.feature_columns]
        if label_idx in feat_idx:
            raise reject(
                "feature_columns",
                f"the label column {opts.label_column!r} cannot also be a feature",
                "label_is_feature",
            )
    else:
        feat_idx = [i for i in range(len(names)) if i != label_idx]
    if not feat_idx:
        raise reject("file", "there is no feature column besides the label", "no_features")
    feat_names = [names[i] for i in feat_idx]
    width = len(names)
    shape_errors = Collector("file", "ragged_row")
    bad_cells = Collector("file", "feature_not_numeric")
    blocks: list[NDArray[np.float64]] = []
    raw_labels: list[str] = []
    lines: list[int] = []
    batch: list[list[str]] = []
    batch_lines: list[int] = []

    def flush() -> None:
        if batch:
            blocks.append(_to_floats(batch, batch_lines, feat_names, bad_cells))
            batch.clear()
            batch_lines.clear()

    for line, row in rows:
        if len(row) != width:
            shape_errors.add(f"line {line} has {len(row)} fields and the header has {width}")
            continue
        raw_labels.append(row[label_idx].strip())
        lines.append(line)
        batch.append([row[i] for i in feat_idx])
        batch_lines.append(line)
        if len(batch) >= _BATCH:
            flush()
    flush()
    shape_errors.raise_if_any("some rows do not match the header")
    if not raw_labels:
        raise reject("file", "the file has a header but no data rows", "no_rows")
    bad_cells.raise_if_any(
        "some feature cells are not numbers: features must be numeric (encode categories "
        "as numbers, or leave them out with feature_columns)"
    )
    x = np.concatenate(blocks) if blocks else np.empty((0, len(feat_idx)))
    notes: list[str] = []
    x = _finite_features(x, feat_names, lines, opts.impute or ImputeOption.none, notes)
    labels = labels_mod.from_strings(raw_labels, opts.task.value, where=lines)
    if labels.note:
        notes.insert(0, labels.note)
    return ParsedDataset(
        modality="tabular",
        labels=labels,
        x=x.astype(np.float32),
        feature_names=feat_names,
        notes=notes,
    )


def _finite_features(
    x: NDArray[np.float64],
    names: list[str],
    lines: list[int],
    impute: ImputeOption,
    notes: list[str],
) -> NDArray[np.float64]:
    with np.errstate(over="ignore"):
        too_big = np.isfinite(x) & ~np.isfinite(x.astype(np.float32))
    inf = np.isinf(x) | too_big
    if inf.any():
        bad = Collector("file", "feature_not_finite")
        for r, c in zip(*np.nonzero(inf), strict=True):
            bad.add(f"line {lines[r]}, column {names[c]!r}: {x[r, c]} is not a finite float32")
            if bad.count >= MAX_LISTED:
                break
        bad.raise_if_any("some features are infinite or too large")
    missing = np.isnan(x)
    if not missing.any():
        return x
    per_col = missing.sum(axis=0)
    cols = np.flatnonzero(per_col)
    if impute == ImputeOption.none:
        issues = []
        for c in cols[:MAX_LISTED]:
            rows = np.flatnonzero(missing[:, c])
            at = ", ".join(str(lines[r]) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
            issues.append(
                Issue(
                    "file",
                    f"column {names[c]!r} has {per_col[c]} missing values (lines {at})",
                    "missing_value",
                )
            )
        raise DatasetRejected(
            issues,
            detail=f"{int(per_col.sum())} feature values are missing (NaN or empty): fill them, "
            "or send impute=mean to replace them with the column means",
        )
    empty = [names[c] for c in cols if per_col[c] == len(x)]
    if empty:
        raise reject(
            "file",
            f"columns with no value at all cannot be imputed: {', '.join(empty[:MAX_LISTED])}",
            "empty_column",
        )
    # Kept as NaN: each job fills them with its own training split's column means
    # (ml.data.prepare), so no validation row leaks into what training sees.
    shown = ", ".join(f"{names[c]} ({per_col[c]})" for c in cols[:MAX_LISTED])
    notes.append(
        f"{int(per_col.sum())} missing values will be imputed with the column means of "
        f"each job's training split: {shown}"
    )
    return x


def parse_text_csv(data: bytes, opts: DatasetOptions) -> ParsedDataset:
    assert opts.label_column and opts.text_column and opts.delimiter
    rows = _rows(_text(data), opts.delimiter)
    names = _header(rows)
    label_idx = _column(names, opts.label_column, "label_column")
    text_idx = _column(names, opts.text_column, "text_column")
    if label_idx == text_idx:
        raise reject("text_column", "the text and label columns must differ", "same_column")
    width = len(names)
    shape_errors = Collector("file", "ragged_row")
    empty = Collector("file", "empty_text")
    texts: list[str] = []
    raw_labels: list[str] = []
    lines: list[int] = []
    for line, row in rows:
        if len(row) != width:
            shape_errors.add(f"line {line} has {len(row)} fields and the header has {width}")
            continue
        text = row[text_idx]
        if not text.strip():
            empty.add(f"line {line}: the text is empty")
        texts.append(text)
        raw_labels.append(row[label_idx].strip())
        lines.append(line)
    shape_errors.raise_if_any("some rows do not match the header")
    if not texts:
        raise reject("file", "the file has a header but no data rows", "no_rows")
    empty.raise_if_any("some texts are empty: remove those rows")
    labels = labels_mod.from_strings(raw_labels, opts.task.value, where=lines)
    notes = [labels.note] if labels.note else []
    ignored = [n for i, n in enumerate(names) if i not in (label_idx, text_idx)]
    if ignored:
        notes.append(f"ignored columns: {', '.join(ignored[:MAX_LISTED])}")
    return ParsedDataset(modality="text", labels=labels, texts=texts, notes=notes)
