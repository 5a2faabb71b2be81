"""datasets upload / ls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from trainforge.client.errors import EXIT_INVALID, CliError
from trainforge.client.output import confirm, connect, print_json, stdout, table, when

datasets = typer.Typer(help="Upload and list your team's datasets.", no_args_is_help=True)
JSON_OPT = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]


def _opt(help_text: str) -> Any:
    return typer.Option(help=help_text)


@datasets.command()
def upload(
    file: Annotated[Path, typer.Argument(help="The dataset file.")],
    format: Annotated[
        str | None, _opt("csv, text_csv, npz or image_zip; default: inferred from the file.")
    ] = None,
    name: Annotated[str | None, _opt("Default: the file's name.")] = None,
    task: Annotated[str | None, _opt("auto (default), classification or regression.")] = None,
    label_column: Annotated[str | None, _opt("csv, text_csv: the label column.")] = None,
    text_column: Annotated[str | None, _opt("text_csv: the text column.")] = None,
    feature_columns: Annotated[str | None, _opt("csv: comma-separated features.")] = None,
    delimiter: Annotated[str | None, _opt("csv, text_csv: , ; | or tab.")] = None,
    impute: Annotated[
        str | None, _opt("csv: none, mean, median or constant; npz: none or mean.")
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option("--column", help="csv: NAME=TYPE overriding an inferred type (repeatable)."),
    ] = None,
    image_size: Annotated[str | None, _opt("image_zip: H,W (or one number).")] = None,
    color_mode: Annotated[str | None, _opt("image_zip: rgb or greyscale.")] = None,
    layout: Annotated[str | None, _opt("npz: channels_last or channels_first.")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Upload a dataset (checked in full by the server); prints its id for the spec."""
    fields = {
        "format": format, "name": name, "task": task, "label_column": label_column,
        "text_column": text_column, "feature_columns": feature_columns, "delimiter": delimiter,
        "impute": impute, "image_size": image_size, "color_mode": color_mode, "layout": layout,
        "columns": ",".join(column) if column else None,
    }  # fmt: skip
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise CliError(EXIT_INVALID, f"cannot read {file}: {exc.strerror or exc}") from None
    with handle:
        response = connect().request(
            "POST",
            "/v1/datasets",
            data={k: v for k, v in fields.items() if v is not None},
            files={"file": (file.name, handle, "application/octet-stream")},
        )
    ds = response.json()
    if as_json:
        print_json(ds)
        return
    again = " (already uploaded)" if response.status_code == 200 else ""
    out = stdout()
    out.print(f"dataset {ds['id']}{again}: {ds.get('name')}, {ds.get('n_samples')} samples, "
              f"task {ds.get('task')}, {ds.get('n_classes')} classes")  # fmt: skip
    columns = ds.get("columns") or []
    if columns:
        table(
            ["COLUMN", "TYPE", "MISSING", "DISTINCT"],
            [[str(c["name"]), str(c["type"]), str(c["missing"]), str(c["distinct"])]
             for c in columns],
        )  # fmt: skip
    for note in ds.get("notes") or []:
        out.print(f"  note: {note}")
    out.print(f"use it: --set dataset.source='{{kind: uploaded, dataset_id: \"{ds['id']}\"}}'")


@datasets.command("ls")
def list_datasets(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20, as_json: JSON_OPT = False
) -> None:
    """Your team's datasets, newest first."""
    page = connect().get_json("/v1/datasets", params={"limit": limit})
    if as_json:
        print_json(page)
        return
    rows = [
        [d["id"], str(d.get("name")), str(d.get("format")), str(d.get("task")),
         str(d.get("n_samples")), str(d.get("n_classes")), when(d.get("created_at"))]
        for d in page.get("items", [])
    ]  # fmt: skip
    table(["ID", "NAME", "FORMAT", "TASK", "SAMPLES", "CLASSES", "CREATED"], rows)


DATASET_ARG = Annotated[str, typer.Argument(metavar="DATASET", help="A dataset id.")]


@datasets.command()
def show(dataset_id: DATASET_ARG, as_json: JSON_OPT = False) -> None:
    """One dataset: its format, task, size, classes, features and notes."""
    ds = connect().get_json(f"/v1/datasets/{dataset_id}")
    if as_json:
        print_json(ds)
        return
    out = stdout()
    out.print(f"dataset   {ds['id']}  {ds.get('name')}")
    out.print(f"format    {ds.get('format')} ({ds.get('modality')}), task {ds.get('task')}")
    out.print(f"samples   {ds.get('n_samples')}, {ds.get('n_features')} features, "
              f"{ds.get('n_classes')} classes")  # fmt: skip
    if ds.get("classes"):
        out.print(f"classes   {', '.join(str(c) for c in ds['classes'][:20])}")
    if ds.get("feature_names"):
        out.print(f"features  {', '.join(ds['feature_names'][:20])}")
    out.print(f"size      {ds.get('size_bytes')} bytes, sha256 {ds.get('sha256')}")
    out.print(f"created   {when(ds.get('created_at'))}")
    for note in ds.get("notes") or []:
        out.print(f"note      {note}")


@datasets.command("rm")
def remove(
    dataset_id: DATASET_ARG,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (on a terminal).")] = False,
    as_json: JSON_OPT = False,
) -> None:
    """Delete a dataset (refused while a job uses it). Asks first on a terminal."""
    confirm(f"delete dataset {dataset_id}?", yes)
    connect().request("DELETE", f"/v1/datasets/{dataset_id}")
    if as_json:
        print_json({"id": dataset_id, "deleted": True})
    else:
        print(f"dataset {dataset_id} deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(datasets, name="datasets")
    app.add_typer(datasets, name="dataset", hidden=True)
