"""CSV uploads: typed feature columns and a label (``csv``), or a text and a label (``text_csv``).

- UTF-8 (a byte-order mark is skipped; UTF-16 with a byte-order mark is
  converted), a header row naming the columns, RFC 4180 quoting. Blank lines
  are skipped; a row with another number of fields than the header is an error.
- ``csv`` is read column by column with pyarrow (``api.datasets.table``): each
  feature column gets a type (``api.datasets.columns``); missing values are
  empty cells or ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` (any case).
- ``text_csv`` keeps the raw text: the job's ``preprocessing.text_cleaning``
  and its training split decide cleaning and vocabulary, at training time.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator

from api.datasets import labels as labels_mod
from api.datasets import source
from api.datasets.codec import ParsedDataset
from api.datasets.errors import MAX_LISTED, Collector, DatasetRejected, Issue, reject
from api.datasets.schemas import DatasetOptions
from api.datasets.source import Source

MAX_COLUMNS = 100_000
MAX_FIELD_CHARS = 1_000_000
CHECK_BYTES = 2**20


def checked_bytes(data: Source) -> Source:
    """The upload as UTF-8 (UTF-16 with a BOM converted, in memory), or a clear 422.

    A file is checked in chunks as it is read: never a copy of the whole text."""
    first = source.head(data, 2)
    if first in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            return source.read_all(data).decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise reject(
                "file", f"the file starts as UTF-16 but is not ({exc.reason})", "not_utf8"
            ) from exc
    decoder = codecs.getincrementaldecoder("utf-8")()
    at = 0
    for part in source.iter_chunks(data, CHECK_BYTES):  # no copy of the whole text
        try:
            decoder.decode(part)
        except UnicodeDecodeError as exc:
            pos = at + exc.start
            raise reject(
                "file",
                f"the file is not UTF-8 text (byte {pos} is {part[exc.start : exc.start + 1]!r});"
                " save it as UTF-8 CSV (UTF-16 with a byte-order mark is also read)",
                "not_utf8",
            ) from exc
        if b"\x00" in part:
            raise reject(
                "file", "the file holds NUL bytes: it is not a CSV text file", "binary_file"
            )
        at += len(part)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise reject(
            "file",
            f"the file is not UTF-8 text (it ends inside a character at byte {at + exc.start}); "
            "save it as UTF-8 CSV",
            "not_utf8",
        ) from exc
    return data


def _rows(lines: Iterable[str], delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row."""
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
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


def parse_text_csv(data: Source, opts: DatasetOptions) -> ParsedDataset:
    assert opts.label_column and opts.text_column and opts.delimiter
    # Read line by line from the upload's file (checked as UTF-8 first): never the whole
    # text at once (issue 28, finding 8).
    text = io.TextIOWrapper(source.as_file(checked_bytes(data)), encoding="utf-8-sig", newline="")
    try:
        return _parse_text_rows(_rows(text, opts.delimiter), opts)
    finally:
        text.detach()  # the upload's file stays open for its owner


def _parse_text_rows(rows: Iterator[tuple[int, list[str]]], opts: DatasetOptions) -> ParsedDataset:
    assert opts.label_column and opts.text_column
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
