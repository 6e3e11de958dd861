"""The webhook fan-out limit: a bare aiohttp loop posting the same bodies to the receiver.

The same JSON bodies the delivery loop sends (``bench.webhook_setup bodies``),
with ``content-type: application/json``, at the same concurrency, reading at
most 64 KiB of each answer as the hub's sender does, and nothing else: no
store, no claims, no signing. Prints one JSON line with its timings.

Run as ``python -m bench.webhook_bare --url URL --bodies FILE --concurrency C``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

MAX_RESPONSE_BYTES = 64 * 1024


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> dict[str, float | int]:
    """POST every body with ``concurrency`` in flight; timings and failures."""
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=15.0)
    pending = list(reversed(bodies))
    failures = 0
    first_done: float | None = None

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def sender() -> None:
            nonlocal failures, first_done
            while pending:
                body = pending.pop()
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.content.read(MAX_RESPONSE_BYTES)
                    if not 200 <= response.status < 300:
                        failures += 1
                if first_done is None:
                    first_done = time.perf_counter()

        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        end = time.perf_counter()
    return {
        "n": len(bodies),
        "failures": failures,
        "loop_seconds": end - start,
        "steady_seconds": end - (first_done or start),
        "end_epoch": time.time(),
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the receiver's /hooks URL")
    parser.add_argument("--bodies", type=Path, required=True, help="one body a line")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bodies = args.bodies.read_bytes().splitlines()
    result = asyncio.run(post_all(args.url, bodies, args.concurrency))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
