"""A local HTTP proxy in front of moto that throttles a share of DynamoDB calls.

moto never throttles. This proxy forwards every request to moto unchanged,
except that a chosen fraction of the DynamoDB operations it is told to
throttle are answered the way DynamoDB answers them when it throttles: HTTP
400 with the JSON error body of ``ProvisionedThroughputExceededException``,
``ThrottlingException`` or ``RequestLimitExceeded``; a ``TransactWriteItems``
may instead be cancelled with a ``ThrottlingError`` cancellation reason per
item (what DynamoDB does when a transaction's items are throttled). The
hub's botocore client parses these for real, over HTTP, and its own retries
(standard mode) run as they would against AWS. SQS requests pass through.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DYNAMODB = "DynamoDB_20120810."
ERROR_TYPE = "com.amazonaws.dynamodb.v20120810#"
THROTTLE_CODES = (
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
)
# Never the dropped hop-by-hop headers, and the length is ours to set.
SKIPPED_HEADERS = frozenset({"connection", "transfer-encoding", "content-length", "keep-alive"})


@dataclass
class Throttle:
    """What to throttle: ``rate`` of the calls of ``operations`` (all DynamoDB when empty)."""

    rate: float = 0.0
    operations: frozenset[str] = frozenset()
    codes: tuple[str, ...] = THROTTLE_CODES  # refusals drawn from these
    cancel_share: float = 0.5  # of the throttled TransactWriteItems: cancelled, not refused
    seed: int = 13
    injected: Counter[str] = field(default_factory=Counter)  # "<Operation> <code>" -> count
    passed: Counter[str] = field(default_factory=Counter)  # "<Operation>" -> forwarded
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def verdict(self, operation: str) -> str | None:
        """The error code to answer ``operation`` with this time, or None to forward it."""
        with self._lock:
            chosen = not self.operations or operation in self.operations
            if not chosen or self._rng.random() >= self.rate:
                self.passed[operation] += 1
                return None
            if operation == "TransactWriteItems" and self._rng.random() < self.cancel_share:
                code = "TransactionCanceledException"
            else:
                code = self._rng.choice(self.codes)
            self.injected[f"{operation} {code}"] += 1
            return code

    def total(self) -> int:
        """How many calls were answered with a throttling error."""
        return sum(self.injected.values())


def error_body(code: str, request: dict[str, Any]) -> bytes:
    """DynamoDB's JSON error body for ``code`` (a cancelled transaction names every item)."""
    body: dict[str, Any] = {"__type": ERROR_TYPE + code}
    if code == "TransactionCanceledException":
        reasons = [
            {"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity."}
            for _ in request.get("TransactItems", [])
        ]
        body["Message"] = (
            "Transaction cancelled, please refer cancellation reasons for specific reasons ["
            + ", ".join("ThrottlingError" for _ in reasons)
            + "]"
        )
        body["CancellationReasons"] = reasons
    else:
        body["message"] = "Rate of requests exceeds the allowed throughput."
    return json.dumps(body).encode()


def _handler(upstream: str, throttle: Throttle) -> type[BaseHTTPRequestHandler]:
    target = urllib.parse.urlsplit(upstream)
    if target.hostname is None:
        raise ValueError(f"upstream {upstream!r} names no host")
    host: str = target.hostname

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests print their own summary."""

        def _forward(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else b""
            amz_target = self.headers.get("X-Amz-Target", "")
            if amz_target.startswith(DYNAMODB):
                operation = amz_target.removeprefix(DYNAMODB)
                code = throttle.verdict(operation)
                if code is not None:
                    self._answer(400, error_body(code, json.loads(body or b"{}")))
                    return
            conn = http.client.HTTPConnection(host, target.port, timeout=60)
            try:
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in SKIPPED_HEADERS
                }
                conn.request(self.command, self.path, body=body, headers=headers)
                got = conn.getresponse()
                data = got.read()
                self.send_response(got.status)
                for name, value in got.getheaders():
                    if name.lower() not in SKIPPED_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                conn.close()

        def _answer(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("x-amzn-RequestId", "throttled-by-the-test-proxy")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    return Forward


@contextmanager
def throttling_proxy(upstream: str, throttle: Throttle) -> Iterator[str]:
    """Serve the proxy on a free local port for the block; its endpoint URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, throttle))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
