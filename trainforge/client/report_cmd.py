"""report: a classification job's confusion matrix and per-class scores (issue 24)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from trainforge.client.output import connect, print_json, stdout, table


def _matrix(report: dict[str, Any]) -> None:
    """Rows: true class; columns: predicted class, numbered as in the per-class table."""
    classes: list[str] = report["classes"]
    columns = ["true \\ predicted", *(str(i) for i in range(len(classes)))]
    rows = [
        [f"{i} {name}", *(str(n) for n in row)]
        for i, (name, row) in enumerate(zip(classes, report["confusion_matrix"], strict=True))
    ]
    table(columns, rows)


def report(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's report as JSON.")] = False,
) -> None:
    """A succeeded classification job's report on its validation split, from its best
    checkpoint: the confusion matrix (rows: true class, columns: predicted) and each
    class's precision, recall, F1 and support."""
    api = connect()
    try:
        data: dict[str, Any] = api.get_json(f"/v1/jobs/{job_id}/report")
    finally:
        api.close()
    if as_json:
        print_json(data)
        return
    ckpt = data["checkpoint"]
    which = "best" if ckpt["is_best"] else "latest"
    out = stdout()
    out.print(
        f"job {data['job_id']}: {which} checkpoint (epoch {ckpt['epoch'] + 1}, step "
        f"{ckpt['step']}), {data['n_samples']} validation samples, accuracy "
        f"{data['accuracy']:.4f}",
        markup=False,
    )
    out.print()
    table(
        ["class", "precision", "recall", "f1", "support"],
        [
            [f"{i} {c['class']}", f"{c['precision']:.4f}", f"{c['recall']:.4f}",
             f"{c['f1']:.4f}", str(c["support"])]
            for i, c in enumerate(data["per_class"])
        ],
    )  # fmt: skip
    out.print()
    _matrix(data)


def register(app: typer.Typer) -> None:
    app.command()(report)
