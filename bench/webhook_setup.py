"""Set-up steps of the webhooks scenario that the ``ihub`` command has no verb for yet.

- ``endpoint --tenant T --url U``: a webhook endpoint for ``T`` at ``U``, its
  new secret sealed as the service seals it (the tenant's data key, bound to
  the endpoint); prints the endpoint id;
- ``bodies --out FILE``: the request body of every event in the outbox, one
  JSON document a line, byte for byte what the delivery loop sends (the bare
  loop posts the same bodies).

The database and master key come from the environment (``IHUB_*``), as for
every hub process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path

from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings
from integration_hub.domain import webhooks
from integration_hub.domain.webhooks import Endpoint, EventType, SigningSecrets


async def add_endpoint(tenant: str, url: str) -> str:
    """Create the endpoint; its id."""
    hub = await build_hub(Settings())
    try:
        now = hub.clock.now()
        endpoint_id = webhooks.new_endpoint_id()
        sealed = await hub.credentials.seal(
            tenant,
            webhooks.sealing_purpose(endpoint_id),
            SigningSecrets(webhooks.new_secret()).as_dict(),
        )
        await hub.webhook_store.create_endpoint(
            Endpoint(endpoint_id, tenant, url, now, now, sealed)
        )
        return endpoint_id
    finally:
        await hub.close()


def dump_bodies(database: Path, out: Path) -> int:
    """Write every event's body to ``out``; how many."""
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute("SELECT type, occurred_at, data FROM webhook_events ORDER BY seq")
        with out.open("wb") as f:
            n = 0
            for type_, occurred_at, data in rows:
                f.write(webhooks.encode_body(EventType(type_), occurred_at, json.loads(data)))
                f.write(b"\n")
                n += 1
    finally:
        conn.close()
    return n


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ep = sub.add_parser("endpoint")
    ep.add_argument("--tenant", required=True)
    ep.add_argument("--url", required=True)
    bodies = sub.add_parser("bodies")
    bodies.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "endpoint":
        sys.stdout.write(asyncio.run(add_endpoint(args.tenant, args.url)) + "\n")
        return
    url = Settings().database_url
    if not url.startswith("sqlite:///"):
        raise SystemExit("bodies: SQLite only")
    sys.stdout.write(f"{dump_bodies(Path(url.removeprefix('sqlite:///')), args.out)}\n")


if __name__ == "__main__":
    main()
