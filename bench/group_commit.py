"""``python -m bench.group_commit``: what group commit on the SQLite writer buys.

A focused micro-measurement, not part of ``make bench``: ``SqliteQueue.enqueue``
(one small write transaction, the shape of most hub writes) called by
``clients`` concurrent coroutines on one event loop, against a fresh file,
with the writer grouping up to 100 queued writes per COMMIT and with grouping
off (``max_group=1``, one transaction per write: the writer before grouping).
Prints writes/s, the mean group size and the ratio; repeat it, the machine is
noisy. Same pragmas as the hub (WAL, synchronous=NORMAL).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteQueue


async def measure(path: Path, *, clients: int, writes: int, max_group: int) -> tuple[float, float]:
    """Writes per second and the mean number of writes per COMMIT."""
    db = SqliteDatabase(path)
    await db.migrate()
    db.writer.max_group = max_group
    queue = SqliteQueue(db)
    per_client = writes // clients
    groups0, jobs0 = db.writer.groups, db.writer.jobs

    async def client() -> None:
        for _ in range(per_client):
            await queue.enqueue(str(uuid.uuid4()), "bench")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    groups, jobs = db.writer.groups - groups0, db.writer.jobs - jobs0
    db.close()
    return per_client * clients / elapsed, jobs / max(1, groups)


async def main(clients: list[int], writes: int, repeats: int) -> None:
    """Both variants side by side, alternating, per concurrency."""
    print("clients | grouped writes/s | writes/COMMIT | ungrouped writes/s | ratio (median)")
    with tempfile.TemporaryDirectory() as tmp:
        for c in clients:
            grouped, ungrouped, sizes, ratios = [], [], [], []
            for r in range(repeats):
                g, size = await measure(
                    Path(tmp) / f"g{c}-{r}.db", clients=c, writes=writes, max_group=100
                )
                u, _ = await measure(
                    Path(tmp) / f"u{c}-{r}.db", clients=c, writes=writes, max_group=1
                )
                grouped.append(g)
                ungrouped.append(u)
                sizes.append(size)
                ratios.append(g / u)
            print(
                f"{c:7d} | {statistics.median(grouped):16,.0f} | {statistics.median(sizes):13.1f}"
                f" | {statistics.median(ungrouped):18,.0f} | {statistics.median(ratios):.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.writes, args.repeats))
