"""An HTTP load generator in its own process (aiohttp), for what wrk cannot do.

Two modes, each printing one JSON line on stdout when done:

- closed loop (``--concurrency N``): N clients, each sending its next request
  when the previous one is answered, for ``--duration`` seconds after
  ``--warmup`` seconds whose requests are not counted. Used for the ingest
  benchmark when wrk is not installed.
- open loop (``--rate R``): requests are started on a fixed schedule of R per
  second, however long the answers take; latency is measured from the
  scheduled time, so a slow server cannot hide its queueing (no coordinated
  omission). Used for the end-to-end benchmark.

``POST`` requests carry a unique ``Idempotency-Key`` each (``--prefix`` + a
counter); with ``--ids FILE`` the generator instead ``GET``s ``--path`` + a
random id from the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Generator:
    """Shared state of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = args.url.rstrip("/") + args.path
        self.headers = dict(h.split(":", 1) for h in args.header)
        self.headers = {k.strip(): v.strip() for k, v in self.headers.items()}
        self.body = args.body.encode() if args.body else None
        self.ids = [line.strip() for line in open(args.ids)] if args.ids else []  # noqa: SIM115
        self.counter = 0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.keys: list[tuple[str, float, int]] = []
        self.measure_from = 0.0
        self.measure_to = 0.0

    async def one(self, session: aiohttp.ClientSession, scheduled: float) -> None:
        self.counter += 1
        if self.ids:
            method, url, headers = "GET", self.url + random.choice(self.ids), self.headers
        else:
            key = f"{self.args.prefix}-{self.counter}"
            method, url = "POST", self.url
            headers = {**self.headers, "Idempotency-Key": key}
        try:
            async with session.request(method, url, headers=headers, data=self.body) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        finished = time.perf_counter()
        if self.measure_from <= scheduled < self.measure_to:
            self.latencies.append(finished - scheduled)
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if status == 0:
                self.errors += 1

    async def closed(self, session: aiohttp.ClientSession) -> None:
        async def client() -> None:
            while True:
                now = time.perf_counter()
                if now >= self.measure_to:
                    return
                await self.one(session, now)

        await asyncio.gather(*(client() for _ in range(self.args.concurrency)))

    async def open(self, session: aiohttp.ClientSession) -> None:
        start = time.perf_counter()
        interval = 1.0 / self.args.rate
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while True:
            scheduled = start + i * interval
            if scheduled >= self.measure_to:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(session, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    async def exact(self, session: aiohttp.ClientSession) -> dict[str, object]:
        """Exactly ``--count`` accepted POSTs; a refused one is retried with its key."""
        remaining = list(range(self.args.count))
        accepted = 0
        retries = 0

        async def client() -> None:
            nonlocal accepted, retries
            while remaining:
                key = f"{self.args.prefix}-{remaining.pop()}"
                headers = {**self.headers, "Idempotency-Key": key}
                for _ in range(20):
                    try:
                        async with session.post(
                            self.url, headers=headers, data=self.body
                        ) as response:
                            await response.read()
                            if response.status == 202:
                                accepted += 1
                                break
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    retries += 1
                    await asyncio.sleep(0.05)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(self.args.concurrency)))
        elapsed = time.perf_counter() - start
        return {"accepted": accepted, "retries": retries, "seconds": elapsed}

    async def run(self) -> dict[str, object]:
        args = self.args
        if args.count is not None:
            connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                return await self.exact(session)
        limit = args.concurrency if args.rate is None else args.max_connections
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = time.perf_counter()
            self.measure_from = start + args.warmup
            self.measure_to = self.measure_from + args.duration
            wall_from = time.time() + args.warmup
            if args.rate is None:
                await self.closed(session)
            else:
                await self.open(session)
        lat = sorted(self.latencies)
        measured = len(lat)
        return {
            "mode": "closed" if args.rate is None else "open",
            "concurrency": args.concurrency,
            "rate": args.rate,
            "requests": measured,
            "duration_s": args.duration,
            "rps": measured / args.duration,
            "statuses": self.statuses,
            "errors": self.errors,
            "measure_from_epoch": wall_from,
            "measure_to_epoch": wall_from + args.duration,
            "p50_ms": percentile(lat, 50) * 1000,
            "p90_ms": percentile(lat, 90) * 1000,
            "p99_ms": percentile(lat, 99) * 1000,
            "p999_ms": percentile(lat, 99.9) * 1000,
            "max_ms": (lat[-1] * 1000) if lat else float("nan"),
        }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--path", default="/v1/notifications")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--body", default=None)
    parser.add_argument("--ids", default=None, help="file of ids to GET at random")
    parser.add_argument("--prefix", default="lg", help="Idempotency-Key prefix")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--count", type=int, default=None, help="exactly this many POSTs")
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests/s")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(Generator(args).run())
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
