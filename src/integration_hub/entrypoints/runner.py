"""Running the API (uvicorn) and/or a worker in this process until a stop signal."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from integration_hub.bootstrap import Hub, build_hub
from integration_hub.config import Settings
from integration_hub.entrypoints import connection_limits, metrics
from integration_hub.entrypoints.api import create_app
from integration_hub.entrypoints.worker import Worker, install_stop_signals

log = logging.getLogger(__name__)


def api_server(hub: Hub, *, access_log: bool | None = None) -> uvicorn.Server:
    """A uvicorn server for the hub's API (not started); access log per IHUB_ACCESS_LOG."""
    settings = hub.settings
    limits = connection_limits.ConnectionLimits(
        head_timeout=settings.request_head_timeout_seconds,
        body_timeout=settings.request_body_timeout_seconds,
        max_connections=settings.max_connections,
    )
    config = uvicorn.Config(
        create_app(hub=hub),
        host=hub.settings.host,
        port=hub.settings.port,
        log_level=hub.settings.log_level.lower(),
        access_log=hub.settings.access_log if access_log is None else access_log,
        # No logging config of its own: its lines go through ours (entrypoints/logs.py).
        log_config=None,
        lifespan="on",
        # h11, pinned: the slow-client deadlines live in its protocol class.
        http=connection_limits.protocol_class(limits),
    )
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that port 0 can be resolved before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off on
    # accepted connections only for sockets that say they are TCP. Without it
    # every keep-alive response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def deliver_webhooks(hub: Hub, stop: asyncio.Event) -> None:
    """The webhook delivery loop until ``stop``, then what it has in flight finishes."""
    deliverer = hub.webhook_deliverer()
    try:
        await deliverer.run(stop)
    finally:
        await deliverer.close()


async def serve(settings: Settings, *, api: bool, worker: bool, webhooks: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; the API stops accepting, then the worker drains.

    ``webhooks``: the webhook delivery loop runs here, as it does beside a
    worker unless IHUB_WEBHOOKS_IN_WORKER is off (its own concurrency budget).
    """
    hub = await build_hub(settings)
    stop = asyncio.Event()
    install_stop_signals(stop)
    tasks: list[asyncio.Task[None]] = []
    listener = None
    try:
        if settings.metrics_port:
            listener = await metrics.start_listener(hub)
        if worker:
            tasks.append(asyncio.create_task(Worker(hub).run(stop)))
        if webhooks or (worker and settings.webhooks_in_worker):
            tasks.append(asyncio.create_task(deliver_webhooks(hub, stop)))
        if api:
            server = api_server(hub)
            sock = bind(settings.host, settings.port)
            log.info("API listening on http://%s:%d", *sock.getsockname()[:2])

            async def run_api() -> None:
                # uvicorn takes the signals while it runs and re-raises them
                # after its graceful shutdown, which reaches our handler: stop.
                await server.serve(sockets=[sock])
                stop.set()

            tasks.append(asyncio.create_task(run_api()))
        await asyncio.gather(*tasks)
    finally:
        if listener is not None:
            await listener.cleanup()
        await hub.close()
