"""submit, validate, jobs, show, cancel, retry."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from trainforge.client import specfile
from trainforge.client.errors import EXIT_OK
from trainforge.client.follow_cmd import follow_job
from trainforge.client.output import JOB_ARG, connect, epoch_label, print_json, stdout, table, when

JSON_OPT = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]
SET_OPT = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="Override a spec field by its dotted path; the value is YAML "
        "(--set optimizer.lr=3e-4 --set model.hidden_units=[64,32]). Repeatable.",
    ),
]
SPEC_ARG = Annotated[
    Path, typer.Argument(help="YAML or JSON: a bare spec, or {spec, name, priority}.")
]


def _load(spec_file: Path, sets: list[str] | None) -> specfile.Submission:
    sub = specfile.load(spec_file)
    specfile.apply_overrides(sub, sets or [])
    return sub


def _print_plan(result: dict[str, Any]) -> None:
    out = stdout()
    out.print(specfile.to_yaml({"spec": result["spec"]}).rstrip())
    plan = result.get("plan") or {}
    lrs = plan.get("lr_per_epoch") or []
    shown = ", ".join(f"{lr:.4g}" for lr in lrs[:10]) + (" ..." if len(lrs) > 10 else "")
    out.print(f"# spec_version {result.get('spec_version')}")
    out.print(f"# parameters:      {plan.get('parameter_count')}")
    out.print(
        f"# samples:         {plan.get('train_samples')} train, "
        f"{plan.get('validation_samples')} validation"
    )
    out.print(f"# steps per epoch: {plan.get('steps_per_epoch')} ({plan.get('total_steps')} total)")
    out.print(f"# lr per epoch:    {shown}")
    layers = plan.get("layers") or []
    if layers:
        out.print("# layers (index, id, op, output shape, parameters):")
        for la in layers:
            shape = "x".join(str(d) for d in la.get("output_shape", []))
            out.print(
                f"#   {la.get('index'):>3} {la.get('id') or '':<10} {la.get('op'):<22} "
                f"{shape:<12} {la.get('parameter_count'):>10,}"
            )


def validate(spec_file: SPEC_ARG, set_: SET_OPT = None, as_json: JSON_OPT = False) -> None:
    """Validate a spec on the server: the resolved spec and its plan; nothing is queued."""
    sub = _load(spec_file, set_)
    result = connect().post_json("/v1/specs/validate", json_body={"spec": sub.spec})
    if as_json:
        print_json(result)
    else:
        _print_plan(result)


def submit(
    spec_file: SPEC_ARG,
    set_: SET_OPT = None,
    name: Annotated[str | None, typer.Option(help="A label for the job.")] = None,
    priority: Annotated[
        int | None, typer.Option(min=0, max=9, help="0-9; higher runs first in your team.")
    ] = None,
    follow: Annotated[
        bool | None,
        typer.Option(
            "--follow/--detach",
            help="Follow the job live until it ends (default when stdout is a terminal).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Validate and print the resolved spec and plan; queue nothing."
        ),
    ] = False,
    again: Annotated[
        bool,
        typer.Option(
            "--again", help="Submit a new job even if this file and these overrides were sent."
        ),
    ] = False,
    as_json: JSON_OPT = False,
) -> int:
    """Submit a job spec; by default on a terminal, follow it (exit code = the job's outcome)."""
    sub = _load(spec_file, set_)
    if name is not None:
        sub.name = name
    if priority is not None:
        sub.priority = priority
    api = connect()
    if dry_run:
        result = api.post_json("/v1/specs/validate", json_body={"spec": sub.spec})
        print_json(result) if as_json else _print_plan(result)
        return EXIT_OK
    key = sub.idempotency_key(secrets.token_hex(8) if again else "")
    response = api.request(
        "POST", "/v1/jobs", json_body=sub.body(), headers={"Idempotency-Key": key}
    )
    job = response.json()
    if as_json:
        print_json(job)
    elif response.status_code == 200:
        print(
            f"job {job['id']} was already submitted from this file with these overrides "
            f"({job['status']}); `--again` submits another",
            flush=True,
        )
    else:
        print(f"submitted job {job['id']} ({job['status']})", flush=True)
    if follow is None:
        follow = sys.stdout.isatty() and not as_json
    if not follow:
        if not as_json:
            print(f"follow it: trainforge follow {job['id']}", flush=True)
        return EXIT_OK
    return follow_job(api, job["id"], as_json=as_json)


def jobs(
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or canceled.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many (newest first).")] = 20,
    name: Annotated[
        str | None, typer.Option(help="Only jobs whose name contains this (any case).")
    ] = None,
    sweep: Annotated[
        str | None, typer.Option("--sweep", metavar="SWEEP", help="Only this sweep's trials.")
    ] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Your team's jobs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if name:
        params["name"] = name
    if sweep:
        params["sweep_id"] = sweep
    page = connect().get_json("/v1/jobs", params=params)
    if as_json:
        print_json(page)
        return
    rows = []
    for job in page.get("items", []):
        progress = job.get("progress") or {}
        done = progress.get("epoch")
        epochs = progress.get("epochs")
        rows.append(
            [
                str(job.get("id")),
                str(job.get("name") or ""),
                str(job.get("status")),
                str(job.get("status_reason") or ""),
                f"{done}/{epochs}" if done is not None and epochs is not None else "",
                _when(job.get("created_at")),
            ]
        )
    table(["ID", "NAME", "STATUS", "REASON", "EPOCHS", "CREATED"], rows)


def _when(value: Any) -> str:
    return when(value)


def show(job_id: JOB_ARG, as_json: JSON_OPT = False) -> None:
    """One job: status, progress, error, transitions and its resolved spec."""
    job = connect().get_json(f"/v1/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    out = stdout()
    progress = job.get("progress") or {}
    status = job["status"] + (f" ({job['status_reason']})" if job.get("status_reason") else "")
    out.print(f"job       {job['id']}" + (f"  {job['name']}" if job.get("name") else ""))
    out.print(f"status    {status}")
    if job.get("queue_reason"):
        out.print(f"waiting   {job['queue_reason']}")
    if job.get("error"):
        out.print(f"error     {job['error']}")
    if export := job.get("export"):  # the ONNX export: a job can succeed without one
        ready = export.get("status") == "ready"
        out.print(
            f"model     exported (ONNX, {export.get('onnx_bytes')} bytes)"
            if ready
            else f"model     not exported: {export.get('error')}"
        )
    out.print(
        f"progress  epoch {progress.get('epoch')}/{progress.get('epochs')}, "
        f"step {progress.get('step')}, attempt {job.get('attempt')}"
    )
    out.print(f"priority  {job.get('priority')}")
    for field in ("created_at", "started_at", "finished_at"):
        if job.get(field):
            out.print(f"{field.removesuffix('_at'):<9} {_when(job[field])}")
    for t in job.get("transitions", []):
        reason = f" ({t['reason']})" if t.get("reason") else ""
        out.print(
            f"  {_when(t.get('at'))}  {t.get('from_status') or '-'} -> {t['to_status']}"
            f"{reason}  attempt {t.get('attempt')}"
        )
    out.print(specfile.to_yaml({"spec": job.get("spec")}).rstrip())
    if job.get("stopped_epoch") is not None:
        out.print(f"# early stopped at epoch {epoch_label(job['stopped_epoch'])}")


def cancel(job_id: JOB_ARG, as_json: JSON_OPT = False) -> None:
    """Cancel a job: a queued one at once, a running one within about a second."""
    job = connect().post_json(f"/v1/jobs/{job_id}/cancel")
    if as_json:
        print_json(job)
    else:
        print(
            f"job {job['id']}: {job['status']}"
            + (" (cancel requested)" if job["status"] == "running" else "")
        )


def retry(
    job_id: JOB_ARG,
    follow: Annotated[bool, typer.Option("--follow", help="Follow it until it ends.")] = False,
    as_json: JSON_OPT = False,
) -> int:
    """Run a failed or canceled job again, from its latest checkpoint."""
    api = connect()
    job = api.post_json(f"/v1/jobs/{job_id}/retry")
    if as_json:
        print_json(job)
    else:
        print(f"job {job['id']}: {job['status']} again (resumes from its latest checkpoint)")
    return follow_job(api, job["id"], as_json=as_json) if follow else EXIT_OK


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(validate)
    app.command()(jobs)
    app.command()(show)
    app.command()(cancel)
    app.command()(retry)
