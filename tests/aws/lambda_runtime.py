"""The SQS event source mapping of a Lambda worker, played over moto for the reliability suite.

Like the real one it receives batches from the queue (with the queue's own
visibility timeout), invokes a free container with each batch, and deletes
the messages the response does not list in ``batchItemFailures``; a container
that dies answers nothing, so nothing of its batch is deleted and SQS
redelivers it after the visibility timeout; a new container replaces it.

Every response is checked as it arrives: a message the handler let Lambda
delete must belong to a notification that is finished (DONE or FAILED),
else the deletion could lose it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws.motoserver import sqs_lambda_event

CONTAINER = Path(__file__).with_name("lambda_container.py")
TERMINAL = {"DONE", "FAILED"}


class Container:
    """One worker function container: a process serving invocations one at a time."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CONTAINER)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        assert ready == b"ready\n", f"container did not start: {ready!r}; see {log.name}"
        self.batch: list[str] = []  # the notification ids of the invocation in progress
        self.started = 0.0
        self.frozen = False

    def invoke(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Run one invocation; its response, or None if the container died during it."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(event).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        line = self.proc.stdout.readline()
        if not line:
            return None
        response: dict[str, Any] = json.loads(line)
        return response

    def kill(self) -> None:
        """SIGKILL: the function crashed (out of memory, timeout, runtime killed)."""
        self.proc.send_signal(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the function stalls (frozen container, pause, starved CPU)."""
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: the stalled function goes on where it was."""
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """End the container (its stdin closes; SIGKILL if it does not go)."""
        if self.frozen:
            self.thaw()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Invocation:
    """One batch handed to a container, and what came of it."""

    container: int
    ids: list[str]
    message_ids: dict[str, str]  # messageId -> notification id
    receipts: dict[str, str]  # messageId -> receipt handle
    failures: list[str] | None = None  # notification ids in batchItemFailures; None: died


@dataclass
class LambdaRuntime:
    """Event source mapping + containers of one worker function, on one SQS queue."""

    sqs: Any  # a boto3 SQS client
    dynamodb: Any  # a boto3 DynamoDB client, to check responses against the table
    queue_url: str
    table: str
    env: dict[str, str]
    workdir: Path
    containers: int = 2
    batch_size: int = 10
    invocations: list[Invocation] = field(default_factory=list)
    crashes: int = 0
    violations: list[str] = field(default_factory=list)
    pool: list[Container] = field(default_factory=list)
    _busy: dict[int, tuple[Future[dict[str, Any] | None], Invocation]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=self.containers)
        self.pool = [self._start(i) for i in range(self.containers)]

    def _start(self, index: int) -> Container:
        return Container(self.env, self.workdir / f"container-{index}.log")

    def busy(self, index: int) -> bool:
        """Whether container ``index`` is inside an invocation (not yet answered)."""
        return index in self._busy and not self._busy[index][0].done()

    def status(self, notification_id: str) -> str:
        """The stored status of a notification, read consistently."""
        found = self.dynamodb.get_item(
            TableName=self.table,
            Key={"PK": {"S": f"N#{notification_id}"}, "SK": {"S": "N"}},
            ConsistentRead=True,
        )
        return str(found["Item"]["status"]["S"])

    def _event(self) -> dict[str, Any]:
        return sqs_lambda_event(self.sqs, self.queue_url, max_messages=self.batch_size)

    def _settle(self, index: int) -> None:
        future, inv = self._busy.pop(index)
        response = future.result()
        container = self.pool[index]
        container.batch = []
        if response is None:  # died: Lambda deletes nothing, SQS redelivers the batch
            self.crashes += 1
            container.stop()
            self.pool[index] = self._start(index)
            self.invocations.append(inv)
            return
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        inv.failures = [inv.message_ids[m] for m in failed]
        self.invocations.append(inv)
        for message_id, nid in inv.message_ids.items():
            if message_id in failed:
                continue
            if (status := self.status(nid)) not in TERMINAL:
                self.violations.append(f"{nid}: deleted by Lambda while {status}")
        # What the event source mapping does with a partial batch response.
        deletes = [
            {"Id": str(i), "ReceiptHandle": inv.receipts[m]}
            for i, m in enumerate(inv.message_ids)
            if m not in failed
        ]
        if deletes:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=deletes)

    def _invoke(self, index: int, event: dict[str, Any]) -> None:
        records = event["Records"]
        inv = Invocation(
            index,
            [r["body"] for r in records],
            {r["messageId"]: r["body"] for r in records},
            {r["messageId"]: r["receiptHandle"] for r in records},
        )
        container = self.pool[index]
        container.batch, container.started = inv.ids, time.monotonic()
        self._busy[index] = (self._executor.submit(container.invoke, event), inv)

    def _empty(self) -> bool:
        found = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return all(int(v) == 0 for v in found.values())

    def close(self) -> None:
        """Stop every container."""
        for container in self.pool:
            container.stop()
        self._executor.shutdown(wait=True)

    def drain(
        self, *, within: float = 120.0, on_poll: Callable[[LambdaRuntime], None] | None = None
    ) -> None:
        """Invoke containers until the queue is empty and none is busy (or ``within`` ends)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for index in [i for i, (f, _) in self._busy.items() if f.done()]:
                self._settle(index)
            if on_poll is not None:
                on_poll(self)
            idle = [i for i in range(len(self.pool)) if i not in self._busy]
            for index in idle:
                event = self._event()
                if not event["Records"]:
                    break
                self._invoke(index, event)
            if not self._busy and self._empty():
                return
            time.sleep(0.05)
        raise AssertionError(f"not drained within {within}s; {len(self.invocations)} invocations")
