"""The hub as bootstrap wires it: the sandbox's receipts go through the receipt service
into the store, and closing the hub leaves none of their tasks running."""

from __future__ import annotations

import asyncio
from pathlib import Path

from integration_hub.adapters.providers.registry import ProviderRegistry
from integration_hub.adapters.providers.sandbox import SandboxProvider
from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings
from integration_hub.domain.routing import Channel
from providers.messages import sms


async def test_closing_the_hub_cancels_the_sandbox_receipts_still_to_come(
    tmp_path: Path,
) -> None:
    hub = await build_hub(Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    try:
        assert isinstance(hub.providers, ProviderRegistry)
        sandbox = hub.providers.sandbox[Channel.SMS]
        assert isinstance(sandbox, SandboxProvider)
        await sandbox.send(sms(metadata={"sandbox": {"receipt_delay": 30}}))
        [task] = sandbox._tasks
    finally:
        await hub.close()

    assert task.cancelled()
    assert sandbox._tasks == set()
    pending = [t for t in asyncio.all_tasks() if t.get_name().startswith("sandbox-receipts-")]
    assert pending == []


async def test_the_sandbox_reports_to_the_hubs_receipt_service(tmp_path: Path) -> None:
    hub = await build_hub(Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    try:
        assert isinstance(hub.providers, ProviderRegistry)
        sandbox = hub.providers.sandbox[Channel.WHATSAPP]
        assert isinstance(sandbox, SandboxProvider)
        assert sandbox._sink == hub.receipts.record
    finally:
        await hub.close()
