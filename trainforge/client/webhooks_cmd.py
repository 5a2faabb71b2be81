"""webhooks ls | add | rm | test: your team's webhook endpoints (docs/operations.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from trainforge.client.output import JSON_OPT, confirm, connect, print_json, stdout, table, when

webhooks = typer.Typer(
    help="Webhooks: an HTTPS endpoint told when jobs start and end (Standard Webhooks).",
    no_args_is_help=True,
)
EVENTS = "job.started, job.succeeded, job.failed, job.canceled, sweep.ended"


@webhooks.command("ls")
def list_webhooks(as_json: JSON_OPT = False) -> None:
    """Your team's webhooks."""
    page = connect().get_json("/v1/webhooks")
    if as_json:
        print_json(page)
        return
    rows = [[w["id"], w["url"], ",".join(w.get("events") or []), when(w.get("created_at"))]
            for w in page.get("items", [])]  # fmt: skip
    table(["ID", "URL", "EVENTS", "CREATED"], rows)


@webhooks.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where the events are POSTed.")],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", help=f"Repeatable: {EVENTS} (default: all)."),
    ] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Add a webhook; prints its signing secret, shown only this once."""
    body: dict[str, object] = {"url": url}
    if event:
        body["events"] = event
    hook = connect().post_json("/v1/webhooks", json_body=body)
    if as_json:
        print_json(hook)
        return
    out = stdout()
    out.print(f"webhook {hook['id']}: {hook['url']} ({', '.join(hook.get('events') or [])})")
    out.print(f"secret {hook['secret']}  (shown once: verify the signatures with it)")


@webhooks.command("rm")
def remove(
    webhook_id: Annotated[str, typer.Argument(metavar="WEBHOOK")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JSON_OPT = False,
) -> None:
    """Delete a webhook (its pending deliveries are dropped)."""
    confirm(f"delete webhook {webhook_id}?", yes)
    connect().request("DELETE", f"/v1/webhooks/{webhook_id}")
    if as_json:
        print_json({"id": webhook_id, "deleted": True})
    else:
        print(f"webhook {webhook_id} deleted")


@webhooks.command("test")
def test(
    webhook_id: Annotated[str, typer.Argument(metavar="WEBHOOK")], as_json: JSON_OPT = False
) -> None:
    """Queue a test delivery (`webhook.test`) to the webhook; prints the delivery."""
    delivery = connect().post_json(f"/v1/webhooks/{webhook_id}/test")
    if as_json:
        print_json(delivery)
        return
    print(f"delivery {delivery['id']} {delivery['status']} (event {delivery['event_type']})")


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks, name="webhooks")
    app.add_typer(webhooks, name="webhook", hidden=True)
