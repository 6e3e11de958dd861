"""The single SQLite writer thread, with group commit.

Every write of the process goes through this one thread (SQLite allows one
writer at a time anyway; serialising here keeps the event loop off the lock).
A COMMIT is the expensive part of a small write, and under load several write
functions are queued by the time the thread is free: it runs all of them
(up to ``max_group``) inside one ``BEGIN IMMEDIATE`` ... ``COMMIT``, each in
its own SAVEPOINT, so a function that raises is rolled back alone and gets its
exception while the others commit. Nobody learns a result before the COMMIT
that makes it durable; if the COMMIT itself fails, every function of the group
gets that error, as it would have for its own transaction.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from integration_hub.domain.errors import Unavailable

log = logging.getLogger(__name__)

Connect = Callable[[], sqlite3.Connection]


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    transactional: bool
    future: Future[Any] = field(default_factory=Future)


@dataclass(slots=True)
class _Done:
    job: _Job
    result: Any = None
    error: BaseException | None = None


class GroupWriter:
    """Runs write functions on one thread, committing queued ones together."""

    def __init__(self, connect: Connect, *, max_group: int = 100) -> None:
        self._connect = connect
        self.max_group = max_group
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.groups = 0
        """Transactions committed (or attempted); with ``jobs``, how well writes group."""
        self.jobs = 0

    def submit(
        self, fn: Callable[[sqlite3.Connection], Any], *, transactional: bool = True
    ) -> Future[Any]:
        """Queue ``fn``; with ``transactional=False`` it runs alone, outside any transaction."""
        job = _Job(fn, transactional)
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the SQLite writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="ihub-sqlite-writer", daemon=True
                )
                self._thread.start()
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        """Finish every queued function, then stop the thread."""
        with self._start_lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                return
            taken = [first]
            # Whatever else is queued right now joins this round.
            while len(taken) < self.max_group:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                taken.append(more)
            group: list[_Job] = []
            for job in taken:
                if job.transactional:
                    group.append(job)
                    continue
                self._run_group(group)
                group = []
                self._run_alone(job)
            self._run_group(group)

    def _run_alone(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn(self._connect()))
        except BaseException as exc:
            job.future.set_exception(exc)

    def _run_group(self, jobs: list[_Job]) -> None:
        # Cancelled callers (their request went away) are skipped, as a
        # thread pool skips a cancelled future.
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.groups += 1
        self.jobs += len(live)
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            busy = Unavailable(f"database busy: {exc}", retry_after=1.0)
            for job in live:
                job.future.set_exception(busy)
            return
        single = len(live) == 1
        done: list[_Done] = []
        try:
            for job in live:
                done.append(self._run_one(conn, job, savepoint=not single))
            if single and done[0].error is not None:
                conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning("a group of %d writes failed to commit: %s", len(live), exc)
            for job in live:
                job.future.set_exception(exc)
            return
        for d in done:
            if d.error is not None:
                d.job.future.set_exception(d.error)
            else:
                d.job.future.set_result(d.result)

    @staticmethod
    def _run_one(conn: sqlite3.Connection, job: _Job, *, savepoint: bool) -> _Done:
        if not savepoint:
            try:
                return _Done(job, job.fn(conn))
            except Exception as exc:
                return _Done(job, error=exc)
        conn.execute("SAVEPOINT ihub_write")
        try:
            result = job.fn(conn)
        except Exception as exc:
            # Undo this function's writes only; the group goes on.
            conn.execute("ROLLBACK TO ihub_write")
            conn.execute("RELEASE ihub_write")
            return _Done(job, error=exc)
        conn.execute("RELEASE ihub_write")
        return _Done(job, result)
