"""metrics, checkpoints, download: what a job produced."""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from trainforge.client.errors import EXIT_INVALID, EXIT_JOB_FAILED, CliError
from trainforge.client.http import Api, unreachable
from trainforge.client.output import (
    JOB_ARG,
    connect,
    epoch_label,
    fmt_value,
    print_json,
    stdout,
    table,
)

JSON_OPT = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]


def metrics(
    job_id: JOB_ARG,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Only this series (repeatable).")
    ] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV: step, epoch, one column a series.")
    ] = False,
    as_json: JSON_OPT = False,
) -> None:
    """A job's metric series, one row per step (epochs counted from 1)."""
    params = [("name", n) for n in name or []]
    data = connect().get_json(f"/v1/jobs/{job_id}/metrics", params=params)
    if as_json:
        print_json(data)
        return
    names = [s["name"] for s in data.get("series", [])]
    rows: dict[int, dict[str, Any]] = {}
    for series in data.get("series", []):
        for p in series.get("points", []):
            row = rows.setdefault(p["step"], {"step": p["step"], "epoch": p["epoch"]})
            row[series["name"]] = p["value"]
    ordered = [rows[step] for step in sorted(rows)]
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["step", "epoch", *names])
        for row in ordered:
            writer.writerow([row["step"], row["epoch"] + 1, *(row.get(n, "") for n in names)])
        return
    table(
        ["STEP", "EPOCH", *[n.upper() for n in names]],
        [
            [str(r["step"]), epoch_label(r["epoch"]), *(fmt_value(r.get(n)) for n in names)]
            for r in ordered
        ],
    )


def list_all_checkpoints(api: Api, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = api.get_json(f"/v1/jobs/{job_id}/checkpoints", params=params)
        items.extend(page.get("items", []))
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def checkpoints(job_id: JOB_ARG, as_json: JSON_OPT = False) -> None:
    """A job's kept checkpoints, oldest first (the last is the latest)."""
    api = connect()
    if as_json:
        print_json(api.get_json(f"/v1/jobs/{job_id}/checkpoints", params={"limit": 1000}))
        return
    rows = [
        [
            str(c["id"]),
            epoch_label(c.get("epoch")),
            str(c.get("step")),
            "best" if c.get("is_best") else "",
            "  ".join(
                f"{k} {fmt_value(v)}"
                for k, v in (c.get("metrics") or {}).items()
                if k in ("loss", "val_loss", "accuracy", "val_accuracy")
            ),
            f"{c.get('size_bytes', 0)}",
            str(c.get("sha256", ""))[:12],
        ]
        for c in list_all_checkpoints(api, job_id)
    ]
    table(["ID", "EPOCH", "STEP", "BEST", "METRICS", "BYTES", "SHA256"], rows)


def resolve_checkpoint(items: list[dict[str, Any]], which: str) -> dict[str, Any]:
    """``best`` (is_best), ``latest`` (highest step) or a checkpoint id."""
    if not items:
        raise CliError(EXIT_INVALID, "the job has no checkpoint (yet)")
    if which == "latest":
        return max(items, key=lambda c: (c["step"], c["id"]))
    if which == "best":
        best = [c for c in items if c.get("is_best")]
        if not best:
            raise CliError(EXIT_INVALID, "no checkpoint is marked best; try --checkpoint latest")
        return max(best, key=lambda c: (c["step"], c["id"]))
    if not which.isdigit():
        raise CliError(EXIT_INVALID, f"--checkpoint {which!r}: expected an id, best or latest")
    for c in items:
        if c["id"] == int(which):
            return c
    ids = ", ".join(str(c["id"]) for c in items)
    raise CliError(EXIT_INVALID, f"no checkpoint {which} (kept: {ids})")


def download(
    job_id: JOB_ARG,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", "-c", help="A checkpoint id, best or latest.")
    ] = "best",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="File or directory (default: <job>-step<N>.safetensors)."
        ),
    ] = None,
    as_json: JSON_OPT = False,
) -> int:
    """Download a checkpoint's weights (safetensors), checking its SHA-256."""
    api = connect()
    ckpt = resolve_checkpoint(list_all_checkpoints(api, job_id), checkpoint)
    filename = f"{job_id}-step{ckpt['step']}.safetensors"
    target = output if output is not None else Path(filename)
    if target.is_dir():
        target = target / filename
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with api.stream(f"/v1/jobs/{job_id}/checkpoints/{ckpt['id']}/download") as response:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
            header = response.headers.get("X-Checksum-Sha256")
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise unreachable(api.config, exc) from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CliError(EXIT_INVALID, f"cannot write {target}: {exc.strerror or exc}") from None
    got = digest.hexdigest()
    expected = {ckpt["sha256"], header or ckpt["sha256"]}
    if expected != {got}:
        partial.unlink(missing_ok=True)
        raise CliError(
            EXIT_JOB_FAILED,
            f"checksum mismatch for checkpoint {ckpt['id']}: got {got}, the API says "
            f"{ckpt['sha256']}; nothing written",
        )
    os.replace(partial, target)
    if as_json:
        print_json({"path": str(target), "checkpoint": ckpt, "sha256": got})
        return 0
    stdout().print(f"{target}  checkpoint {ckpt['id']} (epoch {epoch_label(ckpt['epoch'])}, "
                   f"step {ckpt['step']})  sha256 {got}")  # fmt: skip
    return 0


def register(app: typer.Typer) -> None:
    app.command()(metrics)
    app.command()(checkpoints)
    app.command()(download)
