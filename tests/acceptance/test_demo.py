"""`ihub demo` ends, and every outcome is the expected one, delivery states included."""

from __future__ import annotations

import io

from rich.console import Console

from integration_hub.entrypoints.demo import run_demo


async def test_the_demo_ends_with_delivered_read_and_a_suppressed_bounce() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)

    ok = await run_demo(console)

    text = out.getvalue()
    assert ok, text
    assert "every outcome is the expected one" in text
    # The last frame of the table: the delivery column moved on.
    last = text[text.rindex("Integration Hub demo:") :]
    assert "│ read" in last
    assert "│ delivered" in last
    assert "│ bounced" in last
    assert "422 suppressed (reason hard_bounce)" in text
    # acme's endpoint got every event of its notifications, verified by standardwebhooks.
    assert "38 webhooks arrived, every one signed and verified" in text
