"""sweep submit [--follow], sweep show, sweep ls, sweep cancel (issue 13).

A sweep file is YAML or JSON: the body of ``POST /v1/sweeps`` (``name``, ``spec``,
``parameters``, ``algorithm``, ``objective``, ``max_trials``, ``max_concurrent_trials``,
``early_termination``); see docs/sweeps.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trainforge.client import sse
from trainforge.client.errors import EXIT_INVALID, EXIT_JOB_FAILED, EXIT_OK, CliError
from trainforge.client.http import Api
from trainforge.client.output import connect, fmt_value, print_json, stdout

JSON_OPT = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]
SWEEP_ARG = Annotated[str, typer.Argument(metavar="SWEEP", help="A sweep id.")]
RECONNECT_SECONDS = 1.0

sweep_app = typer.Typer(
    name="sweep",
    help="Hyper-parameter sweeps: trials are jobs, searched by grid, random or TPE.",
    no_args_is_help=True,
)


def load_sweep_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CliError(EXIT_INVALID, f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CliError(EXIT_INVALID, f"{path} is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict) or "spec" not in data or "parameters" not in data:
        raise CliError(
            EXIT_INVALID,
            f"{path}: a sweep file is a mapping with at least `spec` and `parameters` "
            "(see docs/sweeps.md)",
        )
    return data


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={fmt_value(v)}" for k, v in params.items())


def leaderboard(sweep: dict[str, Any], trials: list[dict[str, Any]]) -> Group:
    objective = sweep["objective"]
    title = Text(
        f"sweep {sweep['id']} ({sweep.get('name') or '-'}): {sweep['status']}"
        f"{' (' + sweep['status_reason'] + ')' if sweep.get('status_reason') else ''} — "
        f"{sweep['trials_ended']}/{sweep['max_trials']} trials ended, "
        f"{sweep['epochs_trained']} epochs trained; {objective['metric']} ({objective['mode']})",
        style="bold",
    )
    table = Table(
        "rank",
        "trial",
        "status",
        objective["metric"],
        "epochs",
        "params",
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    for t in trials:
        status = t["status"] + (f" ({t['status_reason']})" if t.get("status_reason") else "")
        table.add_row(
            fmt_value(t.get("rank")),
            str(t["trial_number"]),
            status,
            fmt_value(t.get("objective")),
            str(t["epochs"]),
            _params(t["params"]),
        )
    parts: list[Any] = [title, table]
    best = sweep.get("best")
    if best:
        parts.append(
            Text(
                f"best: trial {best['trial_number']} (job {best['job_id']}) "
                f"{objective['metric']}={fmt_value(best['objective'])} {_params(best['params'])}"
            )
        )
    return Group(*parts)


def _snapshot(api: Api, sweep_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sweep = api.get_json(f"/v1/sweeps/{sweep_id}")
    trials = api.get_json(f"/v1/sweeps/{sweep_id}/trials")["items"]
    return sweep, trials


def follow_sweep(api: Api, sweep_id: str) -> dict[str, Any]:
    """A live leaderboard until the sweep ends (redrawn at each event); the final sweep."""
    sweep, trials = _snapshot(api, sweep_id)
    last: int | None = None
    with Live(leaderboard(sweep, trials), console=stdout(), auto_refresh=False) as live:
        while sweep["status"] == "running":
            headers = {"Last-Event-ID": str(last)} if last is not None else None
            try:
                with api.stream(f"/v1/sweeps/{sweep_id}/events", headers, timeout=60) as r:
                    for event in sse.parse(r.iter_lines()):
                        last = event.id if event.id is not None else last
                        sweep, trials = _snapshot(api, sweep_id)
                        live.update(leaderboard(sweep, trials), refresh=True)
                        if event.kind == "end":
                            break
            except httpx.HTTPError:  # dropped: reconnect where we left off
                time.sleep(RECONNECT_SECONDS)
            sweep, trials = _snapshot(api, sweep_id)
            live.update(leaderboard(sweep, trials), refresh=True)
    return sweep


@sweep_app.command()
def submit(
    sweep_file: Annotated[Path, typer.Argument(help="YAML or JSON: the sweep (docs/sweeps.md).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show a live leaderboard until it ends.")
    ] = False,
    as_json: JSON_OPT = False,
) -> int:
    """Validate the whole search space on the server and start the sweep."""
    body = load_sweep_file(sweep_file)
    api = connect()
    try:
        sweep = api.post_json("/v1/sweeps", json_body=body)
        if as_json and not follow:
            print_json(sweep)
            return EXIT_OK
        out = stdout()
        out.print(f"sweep {sweep['id']} started: {sweep['trials_created']} trial(s) queued")
        for warning in sweep.get("warnings", []):
            out.print(f"warning: {warning['loc']}: {warning['msg']}", style="yellow")
        if not follow:
            return EXIT_OK
        final = follow_sweep(api, sweep["id"])
        if as_json:
            print_json(final)
        return EXIT_OK if final["status"] == "succeeded" else EXIT_JOB_FAILED
    finally:
        api.close()


@sweep_app.command()
def show(sweep_id: SWEEP_ARG, as_json: JSON_OPT = False) -> None:
    """A sweep: its status, counts, best trial and the leaderboard."""
    api = connect()
    try:
        sweep, trials = _snapshot(api, sweep_id)
    finally:
        api.close()
    if as_json:
        print_json(sweep | {"trials": trials})
        return
    stdout().print(leaderboard(sweep, trials))


@sweep_app.command("ls")
def list_sweeps(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20, as_json: JSON_OPT = False
) -> None:
    """The team's sweeps, newest first."""
    api = connect()
    try:
        page = api.get_json("/v1/sweeps", params={"limit": limit})
    finally:
        api.close()
    if as_json:
        print_json(page)
        return
    table = Table(
        "id", "name", "status", "trials", "best", box=None, pad_edge=False, header_style="bold"
    )
    for s in page["items"]:
        best = s.get("best") or {}
        table.add_row(
            s["id"],
            s.get("name") or "-",
            s["status"],
            f"{s['trials_ended']}/{s['max_trials']}",
            fmt_value(best.get("objective")),
        )
    stdout().print(table)


@sweep_app.command()
def follow(sweep_id: SWEEP_ARG, as_json: JSON_OPT = False) -> int:
    """A live leaderboard until the sweep ends (exit 0 when it succeeded)."""
    api = connect()
    try:
        final = follow_sweep(api, sweep_id)
    finally:
        api.close()
    if as_json:
        print_json(final)
    return EXIT_OK if final["status"] == "succeeded" else EXIT_JOB_FAILED


@sweep_app.command()
def cancel(sweep_id: SWEEP_ARG, as_json: JSON_OPT = False) -> None:
    """Cancel queued trials at once and stop running ones; the sweep ends `canceled`."""
    api = connect()
    try:
        sweep = api.post_json(f"/v1/sweeps/{sweep_id}/cancel")
    finally:
        api.close()
    if as_json:
        print_json(sweep)
    else:
        stdout().print(f"sweep {sweep['id']} canceled")


def register(app: typer.Typer) -> None:
    app.add_typer(sweep_app, name="sweeps")
    app.add_typer(sweep_app, name="sweep", hidden=True)  # the first spelling (issue 13)
