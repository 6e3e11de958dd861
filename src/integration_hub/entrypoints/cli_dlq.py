"""``ihub dlq``: the store's dead letters, and the queue service's own DLQ.

Two different things end up "dead". The hub's dead letters are notifications
that ended FAILED (budget spent, permanent error); they live in the store.
On AWS, SQS also moves a message to the DLQ of its redrive policy once it
was received ``maxReceiveCount`` times without being deleted: the worker
never finished it. ``--queue`` works on the latter; without it, ``list``
shows both (labelled) and ``redrive`` the store's.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from integration_hub.bootstrap import Hub
from integration_hub.domain.errors import Unavailable
from integration_hub.entrypoints.api.schemas import PoisonView
from integration_hub.entrypoints.cli_common import Database, console, err, settings_for, with_hub
from integration_hub.ports import DeadLetter, QueueDeadLetters
from integration_hub.service import redrive as redrive_service

dlq_app = typer.Typer(
    help="Inspect and redrive dead letters (the store's, or the SQS DLQ's with --queue).",
    no_args_is_help=True,
)

QueueOption = Annotated[
    bool,
    typer.Option(
        "--queue",
        help="the queue service's own DLQ (SQS: messages received maxReceiveCount times)",
    ),
]
NO_QUEUE_DLQ = "this backend's queue has no dead-letter queue of its own (only SQS has)"


def _queue_dlq(hub: Hub) -> QueueDeadLetters:
    if hub.queue_dead_letters is None:
        err.print(NO_QUEUE_DLQ)
        raise typer.Exit(2)
    return hub.queue_dead_letters


async def _poison(hub: Hub, tenant: str | None) -> list[tuple[PoisonView, str]]:
    """The SQS DLQ's messages with the status of their notification in the store."""
    dlq = _queue_dlq(hub)
    now = hub.clock.now()
    out = []
    for m in await dlq.list_poison(tenant, limit=1000):
        try:
            n = await hub.store.get_notification(None, m.notification_id)
        except Unavailable:
            raise  # the store is down, not the row broken: exit 1 with the reason
        except Exception as exc:
            # A row the worker could not read is a classic cause of poison messages.
            status = f"unreadable ({type(exc).__name__})"
        else:
            status = "missing" if n is None else str(n.status)
        out.append((PoisonView.of(m, now), status))
    return out


def _id_column(table: Table) -> None:
    # Operators copy ids into `ihub status` and `redrive`: never wrap or cut one.
    table.add_column("notification", no_wrap=True, min_width=36)


def _letters_table(letters: list[DeadLetter]) -> Table:
    table = Table(title="Dead letters in the store (notifications that ended FAILED)")
    _id_column(table)
    for name in ("tenant", "dead-lettered", "reason"):
        table.add_column(name)
    for d in letters:
        when = d.dead_lettered_at.isoformat(timespec="seconds")
        table.add_row(d.notification_id, d.tenant, when, d.reason)
    return table


def _poison_table(poison: list[tuple[PoisonView, str]]) -> Table:
    table = Table(title="Poison messages in the SQS dead-letter queue (maxReceiveCount reached)")
    _id_column(table)
    for name in ("tenant", "receives", "age", "status in store"):
        table.add_column(name)
    for view, status in poison:
        table.add_row(
            view.id, view.tenant, str(view.receive_count), f"{view.age_seconds:.0f} s", status
        )
    return table


@dlq_app.command("list")
def dlq_list(
    database: Database = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    queue: QueueOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """Dead letters, newest first; on SQS also the DLQ's poison messages (never consumed)."""

    async def run(hub: Hub) -> tuple[list[DeadLetter], list[tuple[PoisonView, str]] | None]:
        letters = [] if queue else await hub.store.list_dead_letters(tenant, limit=1000)
        wants_poison = queue or (hub.queue_dead_letters is not None and not as_json)
        return letters, (await _poison(hub, tenant) if wants_poison else None)

    letters, poison = with_hub(settings_for(database), run)
    if as_json:
        if poison is not None:
            rows = [view.model_dump(mode="json") | {"status": s} for view, s in poison]
            typer.echo(json.dumps(rows))
            return
        typer.echo(
            json.dumps(
                [
                    {
                        "id": d.notification_id,
                        "tenant": d.tenant,
                        "reason": d.reason,
                        "dead_lettered_at": d.dead_lettered_at.isoformat(),
                    }
                    for d in letters
                ]
            )
        )
        return
    if not queue:
        console.print(_letters_table(letters))
    if poison is not None:
        console.print(_poison_table(poison))
        if poison:
            console.print("move them back to the queue: ihub dlq redrive --queue --all")


@dlq_app.command("redrive")
def dlq_redrive(
    notification_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    redrive_all: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    queue: QueueOption = False,
    database: Database = None,
) -> None:
    """Put dead letters back in the queue: the store's with a fresh budget, or --queue's."""
    if bool(notification_id) == redrive_all:
        err.print("give either an ID or --all")
        raise typer.Exit(2)

    async def run(hub: Hub) -> list[str]:
        if queue:
            # Sent back as they were; the worker's claim skips a finished notification.
            ids = None if redrive_all else [notification_id or ""]
            return await _queue_dlq(hub).redrive_poison(tenant, ids)
        if notification_id:
            done = await redrive_service.redrive(hub.store, hub.queue, tenant, notification_id)
            return [notification_id] if done else []
        return await redrive_service.redrive_all(hub.store, hub.queue, tenant)

    done = with_hub(settings_for(database), run)
    if notification_id and not done:
        if queue:
            err.print(f"no message for {notification_id} in the queue's dead-letter queue")
        else:
            err.print(f"no dead letter {notification_id}")
        raise typer.Exit(1)
    console.print(f"redriven: {len(done)}")
    for nid in done:
        console.print(f"  {nid}")
