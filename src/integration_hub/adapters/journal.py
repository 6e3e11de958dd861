"""The outcome journal on local disk: JSON lines, fsynced in groups by one thread.

Layout: a directory (``IHUB_WORKER_JOURNAL_DIR``) holds one file per live
worker, ``outcomes-<id>.jsonl``, each held with an exclusive ``flock`` for
the life of its worker. A line is an outcome (``{"seq": 3, "outcome": {...}}``)
or its forgetting (``{"seq": 3, "done": true}``); only lines that end with a
newline count, so a line torn by a crash is ignored (its ``write`` never
returned, so its worker never went on as if it were durable).

A starting worker creates its file under a temporary name, locks it, then
takes every file no live worker holds (a killed worker's lock went with its
process): it copies their outcomes that were never forgotten into its own
file, fsyncs, renames its file into place and only then deletes theirs. Two
workers starting at once never take the same file (the lock), and a replayed
outcome replayed twice records nothing the second time (its claim receipt no
longer matches).

Writes go through one thread that batches what is waiting into one
``write`` and one ``fdatasync`` (group commit); forgetting is not synced (a
forgotten outcome replayed after a crash finds its claim gone and changes
nothing). The dispatcher records an outcome while it is being journaled,
not after: an outcome recorded (and forgotten) before the thread wrote it is
dropped from the batch unwritten, so the journal costs a sync only when the
store is slower than the disk, which is when it is needed. The file is
rewritten with only the live outcomes when it grows past ``compact_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from integration_hub.domain.models import Attempt, Outcome
from integration_hub.domain.status import Status
from integration_hub.ports import PendingOutcome, QueueMessage

log = logging.getLogger(__name__)

PREFIX = "outcomes-"
SUFFIX = ".jsonl"
TEMPORARY = ".tmp"


def encode(outcome: PendingOutcome) -> dict[str, Any]:
    """An outcome as JSON-ready data."""
    m, a = outcome.message, outcome.attempt
    return {
        "message": {
            "notification_id": m.notification_id,
            "tenant": m.tenant,
            "receipt": m.receipt,
            "receive_count": m.receive_count,
        },
        "attempt": {
            "number": a.number,
            "provider": a.provider,
            "started_at": a.started_at.isoformat(),
            "outcome": str(a.outcome),
            "latency_ms": a.latency_ms,
            "error_class": a.error_class,
            "error_code": a.error_code,
            "message": a.message,
            "provider_message_id": a.provider_message_id,
        },
        "status": str(outcome.status),
        "dead_letter_reason": outcome.dead_letter_reason,
        "release_delay": outcome.release_delay,
    }


def decode(data: dict[str, Any]) -> PendingOutcome:
    """The outcome ``encode`` wrote; KeyError, TypeError or ValueError if it is not one."""
    m, a = data["message"], data["attempt"]
    return PendingOutcome(
        message=QueueMessage(
            notification_id=str(m["notification_id"]),
            tenant=str(m["tenant"]),
            receipt=str(m["receipt"]),
            receive_count=int(m["receive_count"]),
        ),
        attempt=Attempt(
            number=int(a["number"]),
            provider=str(a["provider"]),
            started_at=datetime.fromisoformat(a["started_at"]),
            outcome=Outcome(a["outcome"]),
            latency_ms=float(a["latency_ms"]),
            error_class=a.get("error_class"),
            error_code=a.get("error_code"),
            message=a.get("message"),
            provider_message_id=a.get("provider_message_id"),
        ),
        status=Status(data["status"]),
        dead_letter_reason=data.get("dead_letter_reason"),
        release_delay=data.get("release_delay"),
    )


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def read_lines(data: bytes) -> dict[int, dict[str, Any]]:
    """The outcomes a journal file holds that were never forgotten, by sequence number."""
    live: dict[int, dict[str, Any]] = {}
    for raw in data.split(b"\n")[:-1]:  # the last piece has no newline: torn or empty
        try:
            entry = json.loads(raw)
            seq = int(entry["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("outcome journal: skipping an unreadable line")
            continue
        if entry.get("done"):
            live.pop(seq, None)
        elif isinstance(entry.get("outcome"), dict):
            live[seq] = entry["outcome"]
    return live


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _take(path: Path) -> int | None:
    """An open, locked descriptor of ``path`` if no live worker holds it, else None."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # taken and removed by another worker between our open and our lock
        os.close(fd)
        return None
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(slots=True)
class _Write:
    line: bytes
    seq: int
    outcome: bool  # False: a forget line
    future: asyncio.Future[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None


class FileJournal:
    """The OutcomeJournal port on a local directory (see the module docstring)."""

    def __init__(self, directory: Path, *, compact_bytes: int = 1 << 20) -> None:
        self.directory = directory
        self.compact_bytes = compact_bytes
        self.path = directory / f"{PREFIX}{uuid.uuid4().hex}{SUFFIX}"
        self._fd = -1
        self._size = 0
        self._seq = 0
        self._live: dict[int, bytes] = {}  # seq -> outcome line, owned by the thread
        self._pending: list[tuple[int, PendingOutcome]] = []
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, directory: Path, *, compact_bytes: int = 1 << 20) -> FileJournal:
        """Create this worker's journal and take over what dead workers left there."""
        journal = cls(directory, compact_bytes=compact_bytes)
        journal._open()
        return journal

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_name(self.path.name + TEMPORARY)
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        taken: list[tuple[Path, int]] = []
        found: list[dict[str, Any]] = []
        try:
            for path in sorted(self.directory.iterdir()):
                if not path.name.startswith(PREFIX) or path == temporary:
                    continue
                other = _take(path)
                if other is None:
                    continue
                taken.append((path, other))
                if path.name.endswith(SUFFIX):
                    found.extend(read_lines(_read_all(other)).values())
                # A temporary file no one holds is a start that died before its
                # rename: the files it copied from are still there.
            lines = []
            for data in found:
                try:
                    outcome = decode(data)
                except (KeyError, TypeError, ValueError):
                    log.warning("outcome journal: skipping an outcome this release cannot read")
                    continue
                self._seq += 1
                self._pending.append((self._seq, outcome))
                line = _line({"seq": self._seq, "outcome": data})
                self._live[self._seq] = line
                lines.append(line)
            if lines:
                os.write(fd, b"".join(lines))
                os.fsync(fd)
            os.rename(temporary, self.path)
            _fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temporary.unlink()
            for _, other in taken:
                os.close(other)
            raise
        for path, other in taken:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            os.close(other)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        if self._pending:
            log.info(
                "outcome journal: %d unrecorded outcomes left by stopped workers",
                len(self._pending),
            )
        self._thread = threading.Thread(target=self._run, name="ihub-journal", daemon=True)
        self._thread.start()

    def pending(self) -> list[tuple[int, PendingOutcome]]:
        """Outcomes that stopped workers left unrecorded."""
        return list(self._pending)

    def write(self, outcome: PendingOutcome) -> tuple[int, asyncio.Future[None]]:
        """Queue ``outcome``: its sequence number, and a future done once it is on disk."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._seq += 1
        seq = self._seq
        line = _line({"seq": seq, "outcome": encode(outcome)})
        self._queue.put(_Write(line, seq, True, future, loop))
        return seq, future

    def forget(self, seq: int) -> None:
        """Mark ``seq`` recorded (written with the next batch, not synced on its own)."""
        self._queue.put(_Write(_line({"seq": seq, "done": True}), seq, False))

    async def close(self) -> None:
        """Write what is queued, stop the thread, release the file (and remove it if empty)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)
        if not self._live:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = -1

    # -- the writer thread ----------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            writes = [w for w in batch if w is not None]
            self._flush(writes)
            if stop:
                return

    def _flush(self, writes: list[_Write]) -> None:
        # An outcome recorded before the thread got to it is forgotten in the
        # same batch: neither line is written, and nothing is synced.
        forgotten = {w.seq for w in writes if not w.outcome}
        settled = {w.seq for w in writes if w.outcome and w.seq in forgotten}
        lines = [w for w in writes if w.seq not in settled]
        try:
            data = b"".join(w.line for w in lines)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if any(w.outcome for w in lines):
                os.fdatasync(self._fd)
        except OSError as exc:
            for w in writes:
                if w.future is not None and w.loop is not None:
                    w.loop.call_soon_threadsafe(_fail, w.future, exc)
            return
        self._size += len(data)
        for w in lines:
            if w.outcome:
                self._live[w.seq] = w.line
            else:
                self._live.pop(w.seq, None)
        for w in writes:
            if w.future is not None and w.loop is not None:
                w.loop.call_soon_threadsafe(_resolve, w.future)
        if self._size > self.compact_bytes:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the file with the live outcomes only; on failure keep appending."""
        temporary = self.path.with_name(self.path.name + TEMPORARY)
        try:
            fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_RDWR | os.O_APPEND, 0o600)
        except OSError as exc:
            log.warning("outcome journal: cannot compact (%s)", exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = b"".join(self._live.values())
            if data:
                os.write(fd, data)
            os.fsync(fd)
            os.rename(temporary, self.path)
            _fsync_directory(self.directory)
        except OSError as exc:
            log.warning("outcome journal: cannot compact (%s)", exc)
            os.close(fd)
            with contextlib.suppress(OSError):
                temporary.unlink()
            return
        os.close(self._fd)
        self._fd = fd
        self._size = len(data)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
