"""A local webhook receiver for the webhooks scenario: an aiohttp app that counts.

- ``POST /hooks`` reads the body and answers ``200`` at once (no signature
  check: the tests verify signatures; here only throughput counts);
- ``POST /hang`` never answers (it sleeps an hour), a dead tenant endpoint
  that holds every request until the sender's own timeout;
- ``GET /stats`` answers ``{"posts": n, "hanging": h, "hung": t}``: requests
  answered, requests hanging now (a client that gives up cancels its handler),
  requests that ever hung.

Run as ``python -m bench.webhook_receiver [--port P]``; it prints ``ready <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

HANG_SECONDS = 3600.0


def make_app() -> web.Application:
    """The receiver's routes and its counters."""
    counts = {"posts": 0, "hanging": 0, "hung": 0}

    async def hooks(request: web.Request) -> web.Response:
        await request.read()
        counts["posts"] += 1
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        await request.read()
        counts["hanging"] += 1
        counts["hung"] += 1
        try:
            await asyncio.sleep(HANG_SECONDS)
        finally:
            counts["hanging"] -= 1
        return web.Response(text="late")

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(counts)

    app = web.Application()
    app.router.add_post("/hooks", hooks)
    app.router.add_post("/hang", hang)
    app.router.add_get("/stats", stats)
    return app


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    runner = web.AppRunner(
        make_app(), access_log=None, handle_signals=False, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    await site.start()
    bound = runner.addresses[0][1]
    sys.stdout.write(f"ready {bound}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
