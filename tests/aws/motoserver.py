"""AWS APIs served by moto in server mode, over real HTTP, for the test suites.

One ``ThreadedMotoServer`` per test session on a free local port; every test
gets its own table and queue (unique names) and deletes them afterwards.
Credentials are fake and passed explicitly: nothing is read from the
environment, so a developer's real AWS credentials are never used.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from integration_hub.adapters.aws.session import AwsConfig, AwsSession
from support import Backend, ManualClock

REGION = "us-east-1"
FAKE_KEY = "testing"


@dataclass
class MotoAws:
    """The endpoint of the session's moto server, and what tests created on it."""

    endpoint: str
    _made: list[tuple[str, str]] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)

    def config(self) -> AwsConfig:
        """An AwsConfig pointing at moto with fake credentials."""
        return AwsConfig(
            region=REGION,
            endpoint_url=self.endpoint,
            access_key_id=FAKE_KEY,
            secret_access_key=FAKE_KEY,
            session_token=FAKE_KEY,
        )

    def boto3_client(self, service: str) -> Any:
        """A synchronous client, for setup and cleanup: one per service, closed with
        the server (a client left to the garbage collector leaks its sockets)."""
        if service in self._clients:
            return self._clients[service]
        import boto3  # type: ignore[import-untyped]

        self._clients[service] = client = boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=FAKE_KEY,
            aws_secret_access_key=FAKE_KEY,
            aws_session_token=FAKE_KEY,
        )
        return client

    async def backend(self, clock: ManualClock) -> Backend:
        """A fresh table and queue, wrapped as a Backend."""
        from integration_hub.adapters.aws import tables
        from integration_hub.adapters.aws.dynamodb import DynamoStore
        from integration_hub.adapters.aws.sqs import SqsQueue

        name = "ihub-test-" + secrets.token_hex(4)
        session = AwsSession(self.config())
        await tables.ensure_table(session, tables.table_name(name))
        sqs = await session.client("sqs")
        url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        self._made += [("dynamodb", tables.table_name(name)), ("sqs", url)]
        store = DynamoStore(session, tables.table_name(name), clock=clock)
        return Backend("aws", store, SqsQueue(session, url, clock=clock), store, clock)

    def queue_with_dlq(
        self, name: str, *, max_receive_count: int, **attributes: str
    ) -> tuple[str, str]:
        """A queue whose redrive policy moves a message to ``<name>-dlq`` after
        ``max_receive_count`` receives: (queue URL, DLQ URL). The caller deletes both."""
        sqs = self.boto3_client("sqs")
        dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)}
        queue = sqs.create_queue(
            QueueName=name, Attributes={**attributes, "RedrivePolicy": json.dumps(policy)}
        )["QueueUrl"]
        return str(queue), str(dlq)

    def cleanup(self) -> None:
        """Delete every table and queue made so far."""
        made, self._made = self._made, []
        for service, name in made:
            client = self.boto3_client(service)
            if service == "dynamodb":
                client.delete_table(TableName=name)
            else:
                client.delete_queue(QueueUrl=name)


def sqs_lambda_event(
    sqs: Any,
    queue_url: str,
    *,
    max_messages: int = 10,
    wait_seconds: int = 0,
    keep_attribute: Callable[[str], bool] = lambda name: True,
) -> dict[str, Any]:
    """What Lambda's SQS event source hands the worker: a real receive, each message as
    a record (attributes in the event's camelCase), message attributes ``keep_attribute``
    lets through."""
    got = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs",
                "messageAttributes": {
                    k: {"stringValue": v.get("StringValue"), "dataType": v.get("DataType")}
                    for k, v in m.get("MessageAttributes", {}).items()
                    if keep_attribute(k)
                },
            }
            for m in got.get("Messages", [])
        ]
    }


class Atomic:
    """WSGI middleware: one request at a time, except SQS long polls.

    moto checks a DynamoDB ConditionExpression and then writes, and picks SQS
    messages and then marks them in flight, with no lock in between, in
    whichever server thread handles the request; the real services make each
    of these atomic. Serialising requests gives the concurrency tests the
    services' semantics. A long poll (``WaitTimeSeconds`` > 0) stays
    concurrent: it must not hold up the send that ends it.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("HTTP_X_AMZ_TARGET", "").endswith("ReceiveMessage"):
            wait = json.loads(body or b"{}").get("WaitTimeSeconds", 0)
            if wait:
                return self.app(environ, start_response)
        with self.lock:
            # Drain the response inside the lock: moto works while it is produced.
            return list(self.app(environ, start_response))


def start_moto() -> Iterator[MotoAws]:
    """Run moto for the session; skipped without moto, failed instead when CI=true."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the dev extras
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"moto[server] is not installed: {exc}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    wsgi = server._server  # the documented class has no middleware hook
    assert wsgi is not None
    wsgi.app = Atomic(wsgi.app)
    host, port = server.get_host_and_port()
    moto = MotoAws(f"http://{host}:{port}")
    try:
        yield moto
    finally:
        for client in moto._clients.values():
            client.close()
        server.stop()
