"""The drain limit: a bare asyncio + aiohttp loop sending N messages to the sink.

It sends what the hub's Twilio adapter sends (the same form fields, headers
and basic auth, with a pooled ``aiohttp`` session like the adapter's) at the
same concurrency, reads and parses each answer, and does nothing else: no
database, no queue, no state. Prints one JSON line with its timings.

Run as ``python -m bench.bare_loop --url URL -n N --concurrency C``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time

import aiohttp


async def drain(url: str, n: int, concurrency: int) -> dict[str, float | int]:
    """Send ``n`` POSTs with ``concurrency`` in flight; timings and failures."""
    auth = "Basic " + base64.b64encode(b"AC00000000000000000000000000000000:x").decode()
    headers = {"Accept": "application/json", "Authorization": auth}
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=15.0, sock_connect=5.0)
    remaining = n
    failures = 0
    first_done: float | None = None

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def sender() -> None:
            nonlocal remaining, failures, first_done
            while remaining > 0:
                remaining -= 1
                form = {"To": "+12025550123", "Body": f"bench {remaining}", "From": "+15005550006"}
                async with session.post(
                    url, data=form, headers=headers, allow_redirects=False
                ) as response:
                    body = await response.read()
                    sid = json.loads(body).get("sid") if response.status == 201 else None
                if not sid:
                    failures += 1
                if first_done is None:
                    first_done = time.perf_counter()

        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        end = time.perf_counter()
    return {
        "n": n,
        "failures": failures,
        "loop_seconds": end - start,
        "steady_seconds": end - (first_done or start),
        "end_epoch": time.time(),
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the sink's Messages.json URL")
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    result = asyncio.run(drain(args.url, args.n, args.concurrency))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
