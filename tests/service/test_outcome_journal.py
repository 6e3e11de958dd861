"""The outcome journal on a real directory: durable, taken over from dead workers only."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from integration_hub.adapters.journal import FileJournal
from integration_hub.domain.models import Attempt, Outcome
from integration_hub.domain.status import Status
from integration_hub.ports import PendingOutcome, QueueMessage


def outcome(nid: str = "n1", receipt: str = "r1") -> PendingOutcome:
    return PendingOutcome(
        QueueMessage(nid, "acme", receipt, 2),
        Attempt(
            number=2,
            provider="twilio",
            started_at=datetime(2026, 12, 2, 10, 0, tzinfo=UTC),
            outcome=Outcome.DELIVERED,
            latency_ms=12.5,
            provider_message_id="SM123",
        ),
        Status.DONE,
    )


async def durable(journal: FileJournal, value: PendingOutcome) -> int:
    """Journal ``value`` and wait until it is on disk."""
    seq, synced = journal.write(value)
    await synced
    return seq


def files(directory: Path, pattern: str = "outcomes-*.jsonl") -> list[Path]:
    return list(directory.glob(pattern))


def killed_worker(directory: Path, *, writes: int, forgets: int = 0) -> None:
    """A process that journals ``writes`` outcomes, forgets some, then is SIGKILLed."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_outcome_journal import outcome
        from integration_hub.adapters.journal import FileJournal

        async def main():
            journal = FileJournal.open(__import__("pathlib").Path({str(directory)!r}))
            seqs = []
            for i in range({writes}):
                seq, synced = journal.write(outcome(f"n{{i}}", f"r{{i}}"))
                await synced
                seqs.append(seq)
            for seq in seqs[:{forgets}]:
                journal.forget(seq)
            _, synced = journal.write(outcome("last", "r-last"))  # forgets go with it
            await synced
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -signal.SIGKILL


def test_what_a_killed_worker_journaled_is_taken_over_by_the_next_one(tmp_path: Path) -> None:
    killed_worker(tmp_path, writes=3, forgets=1)
    journal = FileJournal.open(tmp_path)
    try:
        pending = [o for _, o in journal.pending()]
    finally:
        asyncio.run(journal.close())
    assert sorted(o.message.notification_id for o in pending) == ["last", "n1", "n2"]
    assert pending[0] == outcome(pending[0].message.notification_id, pending[0].message.receipt)
    # The dead worker's file was merged into the new one, then removed.
    assert len(files(tmp_path)) == 1


async def test_a_live_workers_journal_is_never_taken(tmp_path: Path) -> None:
    live = FileJournal.open(tmp_path)
    await durable(live, outcome())
    other = FileJournal.open(tmp_path)
    try:
        assert other.pending() == []
    finally:
        await other.close()
        await live.close()
    # Stopped with an unrecorded outcome: the next worker takes it.
    after = FileJournal.open(tmp_path)
    assert [o for _, o in after.pending()] == [outcome()]
    await after.close()


async def test_forgotten_outcomes_are_not_replayed_and_an_empty_journal_is_removed(
    tmp_path: Path,
) -> None:
    journal = FileJournal.open(tmp_path)
    seq = await durable(journal, outcome())
    journal.forget(seq)
    await journal.close()
    assert files(tmp_path, "*") == []
    again = FileJournal.open(tmp_path)
    assert again.pending() == []
    await again.close()


def test_a_line_torn_by_a_crash_is_ignored(tmp_path: Path) -> None:
    async def leave_one() -> None:
        journal = FileJournal.open(tmp_path)
        await durable(journal, outcome("whole"))
        await journal.close()

    asyncio.run(leave_one())
    [path] = files(tmp_path)
    with path.open("ab") as f:
        f.write(b'{"seq": 9, "outcome": {"message": {"notifi')  # no newline: torn
    after = FileJournal.open(tmp_path)
    assert [o.message.notification_id for _, o in after.pending()] == ["whole"]
    asyncio.run(after.close())


async def test_the_journal_is_compacted_and_keeps_what_is_not_recorded(tmp_path: Path) -> None:
    journal = FileJournal.open(tmp_path, compact_bytes=4096)
    kept = await durable(journal, outcome("kept"))
    for i in range(200):
        journal.forget(await durable(journal, outcome(f"n{i}")))
    await durable(journal, outcome("sync"))  # the last forgets are written with it
    [path] = files(tmp_path)
    assert path.stat().st_size < 8192, "never compacted"
    journal.forget(kept)
    await journal.close()
    after = FileJournal.open(tmp_path)
    assert [o.message.notification_id for _, o in after.pending()] == ["sync"]
    await after.close()
