"""What the end-to-end receipt tests share: a loop thread for the fakes, CLI configuration.

The hub's processes call the provider fakes, and the fakes call the hub back;
the fakes run on an event loop in a thread of the test process so that a
synchronous test can drive them (``loop.run(fake.flush())``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hubs import HubProcesses

T = TypeVar("T")


class LoopThread:
    """An event loop in a thread, for the HTTP fakes the hub's processes call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def configure(hub: HubProcesses, tenant: str, provider: str, config: dict[str, Any]) -> None:
    """Store a tenant's provider settings with ``ihub tenants set-credentials``."""
    path = hub.workdir / f"{tenant}-{provider}.json"
    path.write_text(json.dumps(config))
    done = hub.cli("tenants", "set-credentials", tenant, provider, "--from-file", str(path))
    assert done.returncode == 0, done.stderr
    path.unlink()
