"""The hub's webhook delivery loop, run until the outbox is delivered; its timings.

``Hub.webhook_deliverer()`` from the composition root, as ``ihub worker`` and
``ihub webhooks-worker`` build it (the real store, envelope-sealed secrets
opened per delivery, Standard Webhooks signatures, the aiohttp sender behind
the outbound rule), driven by ``WebhookDeliverer.run`` as those commands drive
it, and stopped once the store's webhook stats (what ``/metrics`` reads) show
nothing pending and nothing left to fan out. Prints one JSON line.

Not ``WebhookDeliverer.drain``: it returns as soon as a step starts nothing
while nothing is in flight, which happens when the endpoint's in-flight
requests all finish during the step that found it full (seen with one fast
endpoint: 8 of 2,000 delivered).

The database, master key and ``IHUB_WEBHOOKS_*`` settings come from the
environment. Run as ``python -m bench.webhook_loop [--deadline SECONDS]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings

POLL_SECONDS = 0.05


async def deliver(deadline: float) -> dict[str, float]:
    """Run the loop until the outbox is delivered; timings of the loop alone."""
    hub = await build_hub(Settings())
    try:
        deliverer = hub.webhook_deliverer()
        stop = asyncio.Event()
        start = time.perf_counter()
        start_epoch = time.time()
        loop = asyncio.create_task(deliverer.run(stop))
        try:
            while time.perf_counter() - start < deadline:
                stats = await hub.webhook_store.webhook_stats()
                if stats.pending == 0 and stats.unfanned_events == 0:
                    break
                if loop.done():
                    break
                await asyncio.sleep(POLL_SECONDS)
            else:
                raise TimeoutError(f"not delivered after {deadline:.0f} s: {stats}")
        finally:
            stop.set()
            await loop
            await deliverer.close()
        end = time.perf_counter()
    finally:
        await hub.close()
    return {"loop_seconds": end - start, "start_epoch": start_epoch, "end_epoch": time.time()}


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(deliver(args.deadline))) + "\n")


if __name__ == "__main__":
    main()
