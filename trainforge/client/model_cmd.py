"""predict, export: use a job's exported model (ONNX) over HTTP.

``trainforge predict JOB FILE`` sends FILE's instances to ``POST /v1/jobs/{id}/predict``
in batches: a CSV (a header row; feature columns by name, empty/NA cells missing; a
single-column CSV holds texts), JSON lines (one instance per line, as the API takes
it), or a folder of PNG/JPEG images. ``trainforge export JOB -o DIR`` writes
``model.onnx`` and ``model.json`` into DIR, the bundle checked against its SHA-256.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from trainforge.client.errors import EXIT_INVALID, EXIT_JOB_FAILED, CliError
from trainforge.client.http import unreachable
from trainforge.client.output import JOB_ARG, connect, print_json, stdout, table

BATCH = 256
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _cell(text: str) -> float | str | None:
    if text.strip().lower() in MISSING:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _from_csv(path: Path) -> tuple[list[str], list[Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(EXIT_INVALID, f"{path} is not UTF-8 text: save it as UTF-8 CSV") from exc
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    if len(rows) < 2:
        raise CliError(EXIT_INVALID, f"{path} needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise CliError(
                EXIT_INVALID,
                f"{path}, line {line}: {len(row)} fields, the header has {len(header)}",
            )
    names = [f"line {i}" for i in range(2, len(body) + 2)]
    if len(header) == 1:  # texts
        return names, [row[0] for row in body]
    return names, [{h: _cell(v) for h, v in zip(header, row, strict=True)} for row in body]


def _from_jsonl(path: Path) -> tuple[list[str], list[Any]]:
    names, instances = [], []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            instances.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise CliError(EXIT_INVALID, f"{path}, line {line}: not JSON ({exc.msg})") from None
        names.append(f"line {line}")
    if not instances:
        raise CliError(EXIT_INVALID, f"{path} holds no instance")
    return names, instances


def _from_folder(path: Path) -> tuple[list[str], list[Any]]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CliError(EXIT_INVALID, f"{path} holds no .png, .jpg or .jpeg file")
    return [p.name for p in files], [base64.b64encode(p.read_bytes()).decode() for p in files]


def read_instances(path: Path) -> tuple[list[str], list[Any]]:
    """(a name per instance, the instances) from a CSV, JSON lines or an image folder."""
    if not path.exists():
        raise CliError(EXIT_INVALID, f"{path} does not exist")
    if path.is_dir():
        return _from_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _from_csv(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _from_jsonl(path)
    raise CliError(
        EXIT_INVALID, f"{path}: send a .csv, a .jsonl (JSON lines) or a folder of images"
    )


def _shift(message: str, offset: int) -> str:
    """The API's ``instances.<i>`` locations, renumbered for the whole file."""
    out = []
    for line in message.splitlines():
        head, sep, rest = line.partition(":")
        parts = head.split(".")
        if sep and len(parts) >= 2 and parts[0] == "instances" and parts[1].isdigit():
            parts[1] = str(int(parts[1]) + offset)
            line = ".".join(parts) + sep + rest
        out.append(line)
    return "\n".join(out)


def predict(
    job_id: JOB_ARG,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV, JSON lines or image folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="The predictions as JSON.")] = False,
) -> None:
    """Predict with a job's exported model: one line per instance of FILE."""
    names, instances = read_instances(file)
    api = connect()
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(instances), BATCH):
        try:
            body = api.post_json(
                f"/v1/jobs/{job_id}/predict",
                json_body={"instances": instances[start : start + BATCH]},
            )
        except CliError as exc:
            raise CliError(
                exc.code, _shift(exc.message, start), http_status=exc.http_status
            ) from None
        predictions.extend(body["predictions"])
    if as_json:
        print_json({"predictions": predictions})
        return
    rows = []
    for name, p in zip(names, predictions, strict=True):
        if "label" in p:
            rows.append([name, str(p["label"]), f"{max(p['probabilities'].values()):.4f}"])
        else:
            rows.append([name, f"{p['value']:.6g}", ""])
    table(["INSTANCE", "PREDICTION", "PROBABILITY"], rows)


def export(
    job_id: JOB_ARG,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for model.onnx and model.json.")
    ] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="The files written, as JSON.")] = False,
) -> int:
    """Download a job's exported model (model.onnx + model.json), checking its SHA-256."""
    api = connect()
    digest, buf = hashlib.sha256(), io.BytesIO()
    try:
        with api.stream(f"/v1/jobs/{job_id}/model", timeout=300) as response:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                buf.write(chunk)
            header = response.headers.get("X-Checksum-Sha256")
    except httpx.HTTPError as exc:
        raise unreachable(api.config, exc) from None
    if header != digest.hexdigest():
        raise CliError(
            EXIT_JOB_FAILED,
            f"checksum mismatch: got {digest.hexdigest()}, the API says {header}; nothing written",
        )
    try:
        output.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(buf) as bundle:
            names = set(bundle.namelist())
            # model_raw.onnx: a typed table's string-input graph (docs/datasets.md)
            for member in ("model.onnx", "model.json", "model_raw.onnx"):
                if member in names or member != "model_raw.onnx":
                    (output / member).write_bytes(bundle.read(member))
    except OSError as exc:
        raise CliError(EXIT_INVALID, f"cannot write to {output}: {exc.strerror or exc}") from None
    if as_json:
        files = [str(output / "model.onnx"), str(output / "model.json")]
        print_json({"files": files, "sha256": header})
        return 0
    stdout().print(f"{output / 'model.onnx'}  {output / 'model.json'}  sha256 {header}")
    return 0


def register(app: typer.Typer) -> None:
    app.command()(predict)
    app.command()(export)
