"""``ihub demo``: a hub on a temporary SQLite file, traffic to every channel, live."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.live import Live
from rich.table import Table

from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings
from integration_hub.domain.webhooks import EventType
from integration_hub.entrypoints.runner import api_server, bind, deliver_webhooks
from integration_hub.entrypoints.worker import Worker
from integration_hub.service.tenants import create_tenant

COUNTRIES = {
    "ES": "email",
    "FR": "email",
    "IT": "email",
    "GR": "email",
    "MX": "whatsapp",
    "AR": "whatsapp",
    "CO": "whatsapp",
    "US": "sms",
    "CA": "sms",
    "UK": "sms",
}
PHONES = {
    "MX": "+5215512345678",
    "AR": "+5491123456789",
    "CO": "+573001234567",
    "US": "+12025550123",
    "CA": "+14165550123",
    "UK": "+447700900123",
}
TIMEOUT_SECONDS = 60.0
STATUS_STYLE = {"RECEIVED": "yellow", "PROCESSING": "cyan", "DONE": "green", "FAILED": "red"}
DELIVERY_STYLE = {"sent": "cyan", "delivered": "green", "read": "bold green", "bounced": "red"}
# What the sandbox reports for a message it accepted, as a real provider would.
DELIVERED = {"email": "delivered", "sms": "delivered", "whatsapp": "read"}


class DemoReceiver:
    """A tenant's webhook receiver on loopback, verifying every request with the official
    ``standardwebhooks`` package as a client would."""

    def __init__(self) -> None:
        self.secret = ""
        self.verified: list[dict[str, Any]] = []
        self.rejected = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Listen on a free loopback port; the endpoint URL."""
        app = web.Application()
        app.router.add_post("/hooks", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hooks"
        return self.url

    async def _receive(self, request: web.Request) -> web.Response:
        from standardwebhooks import Webhook
        from standardwebhooks.webhooks import WebhookVerificationError

        body = await request.read()
        try:
            event: dict[str, Any] = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.rejected += 1
            return web.Response(status=400, text="bad signature")
        self.verified.append(event)
        return web.json_response({"ok": True})

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Case:
    """One notification the demo sends, and what must become of it."""

    tenant: str
    country: str
    channel: str
    note: str
    expect_status: str
    expect_attempts: int
    metadata: dict[str, Any] | None = None
    expect_delivery: str | None = None
    id: str | None = None
    status: str = "-"
    attempts: int = 0
    provider: str = "-"
    delivery: str | None = None

    @property
    def settled(self) -> bool:
        """Whether nothing more is to come: processed, and the expected receipt is in."""
        done = self.status in ("DONE", "FAILED")
        return done and (self.expect_delivery is None or self.delivery == self.expect_delivery)

    @property
    def ok(self) -> bool:
        """Whether the outcome is the expected one."""
        return (
            self.status == self.expect_status
            and self.attempts == self.expect_attempts
            and self.delivery == self.expect_delivery
        )

    def address(self) -> str:
        """The recipient's address on the case's channel."""
        if self.channel == "email":
            return f"{self.tenant}.{self.country.lower()}@example.com"
        return PHONES[self.country]

    def payload(self) -> dict[str, Any]:
        """The request body."""
        key = "email" if self.channel == "email" else "phone"
        recipient = {key: self.address()}
        body: dict[str, Any] = {
            "recipient": recipient,
            "body": f"Hola from {self.tenant} to {self.country} ({self.note})",
        }
        if self.channel == "email":
            body["subject"] = f"Integration Hub demo for {self.country}"
        if self.metadata:
            body["metadata"] = self.metadata
        return body


def cases(tenants: list[str]) -> list[Case]:
    """Every country for every tenant, a transient and a permanent failure, and a bounce."""
    found = [
        Case(t, c, ch, "normal", "DONE", 1, expect_delivery=DELIVERED[ch])
        for t in tenants
        for c, ch in COUNTRIES.items()
    ]
    found.append(
        Case(
            tenants[0],
            "FR",
            "email",
            "fails twice, then succeeds",
            "DONE",
            3,
            {"sandbox": {"fail": "transient", "times": 2}},
            expect_delivery="delivered",
        )
    )
    found.append(
        Case(
            tenants[1],
            "IT",
            "email",
            "bounces: the address is suppressed",
            "DONE",
            1,
            {"sandbox": {"receipts": ["bounced"]}},
            expect_delivery="bounced",
        )
    )
    found.append(
        Case(
            tenants[1],
            "US",
            "sms",
            "fails permanently",
            "FAILED",
            1,
            {"sandbox": {"fail": "permanent"}},
        )
    )
    return found


def render(all_cases: list[Case], elapsed: float) -> Table:
    """The live table."""
    table = Table(title=f"Integration Hub demo: {elapsed:4.1f}s", expand=False)
    # Short headers and unwrapped values: the table fits an 80-column terminal
    # with the delivery state whole (the case note wraps instead).
    columns = ("tenant", "cc", "channel", "provider", "status", "tries", "delivery")
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("case", ratio=1)
    for c in all_cases:
        style = STATUS_STYLE.get(c.status, "white")
        delivery = c.delivery or "-"
        delivery_style = DELIVERY_STYLE.get(delivery, "white")
        table.add_row(
            c.tenant,
            c.country,
            c.channel,
            c.provider,
            f"[{style}]{c.status}[/{style}]",
            str(c.attempts),
            f"[{delivery_style}]{delivery}[/{delivery_style}]",
            c.note,
        )
    return table


async def run_demo(console: Console, *, keep: bool = False) -> bool:
    """Run the demo; True if every notification ended as expected."""
    workdir = Path(tempfile.mkdtemp(prefix="ihub-demo-"))
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'ihub.db'}",
        host="127.0.0.1",
        port=0,
        backoff_base_seconds=0.3,
        backoff_cap_seconds=1.0,
        poll_interval_seconds=0.1,
        log_level="warning",
        # The demo's receiver listens on loopback over plain http.
        webhooks_allow_http=True,
        webhooks_allowed_networks="127.0.0.0/8",
        webhooks_poll_interval_seconds=0.1,
    )
    console.print(f"[bold]Integration Hub demo[/bold]: embedded SQLite at {workdir / 'ihub.db'}")
    hub = await build_hub(settings)
    stop = asyncio.Event()
    sock = bind(settings.host, 0)
    port = sock.getsockname()[1]
    server = api_server(hub, access_log=False)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    working = asyncio.create_task(Worker(hub).run(stop))
    receiver = DemoReceiver()
    delivering = asyncio.create_task(deliver_webhooks(hub, stop))
    try:
        await receiver.start()
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        keys = {}
        for tenant in ("acme", "globex"):
            created = await create_tenant(hub.store, hub.clock, tenant, tenant.title())
            keys[tenant] = created.api_key
            console.print(
                f"tenant [bold]{tenant}[/bold] created (API key shown once, kept in memory)"
            )
        all_cases = cases(list(keys))
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base) as http:
            await _subscribe(console, http, receiver, keys["acme"])
            for i, case in enumerate(all_cases):
                headers = {
                    "Authorization": f"Bearer {keys[case.tenant]}",
                    "X-Tenant": case.tenant,
                    "X-Country": case.country,
                    "Idempotency-Key": f"demo-{i}",
                }
                async with http.post(
                    "/v1/notifications", json=case.payload(), headers=headers
                ) as resp:
                    body = await resp.json()
                    if resp.status != 202:
                        console.print(f"[red]unexpected {resp.status}[/red]: {body}")
                        return False
                    case.id, case.status = body["id"], body["status"]
            ok = await _watch(console, http, all_cases, keys)
            suppressed_ok = await _suppressed(console, http, all_cases, keys)
        outbox = await hub.outbox.list_outbox(limit=1000)
        letters = await hub.store.list_dead_letters(None)
        expected_deliveries = sum(1 for c in all_cases if c.expect_status == "DONE")
        delivered_ok = len(outbox) == expected_deliveries
        dlq_ok = [d.notification_id for d in letters] == [
            c.id for c in all_cases if c.expect_status == "FAILED"
        ]
        _summary(console, all_cases, len(outbox), expected_deliveries, len(letters))
        webhooks_ok = await _webhooks(
            console, receiver, [c for c in all_cases if c.tenant == "acme"]
        )
        return ok and delivered_ok and dlq_ok and suppressed_ok and webhooks_ok
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.gather(serving, working, delivering, return_exceptions=True)
        await receiver.stop()
        await hub.close()
        if keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def _watch(
    console: Console, http: aiohttp.ClientSession, all_cases: list[Case], keys: dict[str, str]
) -> bool:
    started = time.monotonic()
    with Live(render(all_cases, 0.0), console=console, refresh_per_second=8) as live:
        while True:
            for case in all_cases:
                if case.settled:
                    continue
                headers = {"Authorization": f"Bearer {keys[case.tenant]}", "X-Tenant": case.tenant}
                async with http.get(f"/v1/notifications/{case.id}", headers=headers) as resp:
                    view = await resp.json()
                case.status = view["status"]
                case.attempts = len(view["attempts"])
                case.provider = view["provider"]
                delivery = view.get("delivery")
                case.delivery = delivery["state"] if isinstance(delivery, dict) else None
            elapsed = time.monotonic() - started
            live.update(render(all_cases, elapsed))
            if all(c.settled for c in all_cases):
                return all(c.ok for c in all_cases)
            if elapsed > TIMEOUT_SECONDS:
                return False
            await asyncio.sleep(0.1)


async def _suppressed(
    console: Console, http: aiohttp.ClientSession, all_cases: list[Case], keys: dict[str, str]
) -> bool:
    """Send again to each bounced address: the hub must refuse it (422 suppressed)."""
    ok = True
    for i, case in enumerate(c for c in all_cases if c.expect_delivery == "bounced"):
        headers = {
            "Authorization": f"Bearer {keys[case.tenant]}",
            "X-Tenant": case.tenant,
            "X-Country": case.country,
            "Idempotency-Key": f"demo-again-{i}",
        }
        async with http.post("/v1/notifications", json=case.payload(), headers=headers) as resp:
            body = await resp.json(content_type=None)
        refused = resp.status == 422 and str(body.get("type", "")).endswith(":suppressed")
        shown = "[green]422 suppressed[/green]" if refused else f"[red]HTTP {resp.status}[/red]"
        console.print(
            f"sending again to the bounced {case.address()} ({case.tenant}): {shown}"
            f" (reason {body.get('reason')})"
        )
        ok = ok and refused
    return ok


def _summary(
    console: Console, all_cases: list[Case], delivered: int, expected: int, dead: int
) -> None:
    done = sum(1 for c in all_cases if c.status == "DONE")
    failed = sum(1 for c in all_cases if c.status == "FAILED")
    wrong = [c for c in all_cases if not c.ok]
    by_channel: dict[str, int] = {}
    for c in all_cases:
        if c.status == "DONE":
            by_channel[c.channel] = by_channel.get(c.channel, 0) + 1
    console.print(
        f"\n[bold]Summary[/bold]: {len(all_cases)} sent, {done} DONE, {failed} FAILED;"
        f" delivered per channel {by_channel}; sandbox outbox holds {delivered}"
        f" (expected {expected}); dead letters: {dead}"
    )
    for c in wrong:
        console.print(
            f"[red]unexpected[/red]: {c.tenant}/{c.country} ({c.note}) ended {c.status} after"
            f" {c.attempts} attempts; expected {c.expect_status} after {c.expect_attempts}"
        )
    if not wrong and delivered == expected:
        console.print("[green]every outcome is the expected one[/green]")
    console.print("Try it yourself: [bold]ihub serve[/bold], then see the README's curl examples.")


async def _subscribe(
    console: Console, http: aiohttp.ClientSession, receiver: DemoReceiver, key: str
) -> None:
    """Register the receiver as acme's webhook endpoint through the API."""
    headers = {"Authorization": f"Bearer {key}", "X-Tenant": "acme"}
    async with http.post("/v1/webhooks", json={"url": receiver.url}, headers=headers) as resp:
        body = await resp.json()
    if resp.status != 201:
        raise RuntimeError(f"creating the demo's webhook endpoint answered {resp.status}: {body}")
    receiver.secret = body["secret"]
    console.print(
        f"webhook endpoint {body['id']} for [bold]acme[/bold] at {receiver.url}"
        " (signing secret shown once, kept in memory)"
    )


def _life(case: Case) -> list[str]:
    """The events one of acme's cases must send, in order."""
    life = [EventType.ACCEPTED]
    life += [EventType.RETRYING] * (case.expect_attempts - 1)
    life.append(EventType.DONE if case.expect_status == "DONE" else EventType.FAILED)
    if case.expect_delivery == "read":
        life += [EventType.DELIVERED, EventType.READ]
    elif case.expect_delivery is not None:
        life.append(EventType(f"notification.{case.expect_delivery}"))
    return [str(t) for t in life]


async def _webhooks(console: Console, receiver: DemoReceiver, acme: list[Case]) -> bool:
    """Wait for acme's events, then show what arrived, signed and verified."""
    wanted = {c.id: _life(c) for c in acme}
    seen: dict[str, list[str]] = {}
    for _ in range(int(TIMEOUT_SECONDS / 0.1)):
        seen = {}
        for event in receiver.verified:
            seen.setdefault(event["data"]["id"], []).append(event["type"])
        if seen == wanted:
            break
        await asyncio.sleep(0.1)
    table = Table(title="webhooks received by acme's endpoint (each verified by standardwebhooks)")
    table.add_column("notification", no_wrap=True)
    table.add_column("cc", no_wrap=True)
    table.add_column("events, in the order they arrived")
    for c in acme:
        table.add_row((c.id or "")[-12:], c.country, ", ".join(seen.get(c.id or "", [])))
    console.print(table)
    ok = seen == wanted and receiver.rejected == 0
    count = sum(len(v) for v in seen.values())
    if ok:
        console.print(f"[green]{count} webhooks arrived, every one signed and verified[/green]")
    else:
        console.print(
            f"[red]webhooks: {count} verified, {receiver.rejected} refused; expected"
            f" {sum(len(v) for v in wanted.values())}[/red]"
        )
    return ok
