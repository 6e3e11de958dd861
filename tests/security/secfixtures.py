"""Helpers shared by the security tests: problem checks, raw HTTP, a ledger of accepted ids."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from hubs import HubProcesses

PROBLEM = "application/problem+json"
TYPE_PREFIX = "urn:integration-hub:problem:"
SUPPORTED = ("ES", "FR", "IT", "GR", "MX", "AR", "CO", "US", "CA", "GB", "UK")

# Tenants of the security hub: each suite gets its own, so that what one stores
# cannot change what another one counts.
HOSTILE = "hostile"  # every hostile request; its notifications are counted at the end
FUZZ = "fuzz"  # schemathesis
BYSTANDER = "bystander"  # another tenant, for isolation checks
POISONED = "poisoned"  # deeply nested metadata once left a tenant unreadable
ADMIN_TARGET = "admin-target"  # the only tenant the admin API fuzzing may change
TENANTS = (HOSTILE, FUZZ, BYSTANDER, POISONED, ADMIN_TARGET)
ADMIN_TOKEN = "security-tests-admin-token"

HeaderValue = str | bytes


def wire_headers(headers: Mapping[str, HeaderValue]) -> dict[bytes, bytes]:
    """Headers whose values mix str and raw bytes, encoded as httpx encodes them.

    httpx accepts such a mix at run time but its annotations take one kind per
    mapping; a str becomes ASCII (anything else raises, as in httpx), bytes go as is.
    """
    return {
        name.encode("ascii"): value if isinstance(value, bytes) else value.encode("ascii")
        for name, value in headers.items()
    }


# One connection per request: see the `client` fixture.
CLOSE = {"Connection": "close"}


def any_channel_body(**extra: Any) -> dict[str, Any]:
    """A valid body for every country: the recipient has both an email and a phone."""
    body: dict[str, Any] = {
        "recipient": {"email": "ana@example.com", "phone": "+34600111222"},
        "subject": "Hello",
        "body": "hello",
    }
    body.update(extra)
    return body


def assert_problem(
    resp: httpx.Response,
    status: int | tuple[int, ...],
    field: str | None = None,
    slug: str | None = None,
) -> dict[str, Any]:
    """``resp`` is an RFC 9457 problem with that status (or one of them), field and slug."""
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, (resp.status_code, resp.text[:500])
    assert resp.headers.get("content-type") == PROBLEM, resp.headers
    problem: dict[str, Any] = resp.json()
    assert isinstance(problem, dict), problem
    assert {"type", "title", "status", "detail"} <= problem.keys(), problem
    assert problem["status"] == resp.status_code, problem
    assert isinstance(problem["type"], str), problem
    assert problem["type"].startswith(TYPE_PREFIX), problem
    assert isinstance(problem["title"], str), problem
    assert problem["title"], problem
    assert isinstance(problem["detail"], str), problem
    assert problem["detail"], problem
    if field is not None:
        assert problem.get("field") == field, problem
    if slug is not None:
        assert problem["type"] == TYPE_PREFIX + slug, problem
    return problem


def assert_clear_answer(resp: httpx.Response, allowed: tuple[int, ...]) -> None:
    """Never a 5xx; a 4xx is always a well-formed problem."""
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert resp.status_code in allowed, (resp.status_code, resp.text[:500])
    if resp.status_code >= 400:
        assert_problem(resp, resp.status_code)


@dataclass
class Ledger:
    """Ids the API answered 202 for, per tenant: what each tenant must hold at the end."""

    accepted: dict[str, set[str]] = field(default_factory=dict)

    def record(self, tenant: str, resp: httpx.Response | RawResponse) -> None:
        """Remember the notification of a 202 (a replay names the same id)."""
        if resp.status_code == 202:
            self.accepted.setdefault(tenant, set()).add(resp.json()["id"])

    def of(self, tenant: str) -> set[str]:
        """What ``tenant`` was answered 202 for."""
        return set(self.accepted.get(tenant, set()))


@dataclass
class Submitter:
    """POST /v1/notifications as one tenant, recording every 202 in the ledger."""

    hub: HubProcesses
    client: httpx.Client
    ledger: Ledger
    tenant: str = HOSTILE

    def headers(
        self, *, country: HeaderValue | None = "ES", key: HeaderValue | None = None
    ) -> dict[str, HeaderValue]:
        """Valid headers: auth, X-Country, a fresh Idempotency-Key, JSON content."""
        h: dict[str, HeaderValue] = {
            **self.hub.headers(self.tenant),
            "Content-Type": "application/json",
            "Idempotency-Key": key if key is not None else str(uuid.uuid4()),
        }
        if country is not None:
            h["X-Country"] = country
        return h

    def post(
        self,
        body: Any = None,
        *,
        content: bytes | None = None,
        country: HeaderValue | None = "ES",
        key: HeaderValue | None = None,
        headers: Mapping[str, HeaderValue] | None = None,
        drop: tuple[str, ...] = (),
    ) -> httpx.Response:
        """Submit; ``content`` is sent as is, else ``body`` as JSON (a valid one by default)."""
        h = self.headers(country=country, key=key)
        h.update(headers or {})
        for name in drop:
            h.pop(name, None)
        if content is None:
            payload = any_channel_body() if body is None else body
            content = json.dumps(payload, ensure_ascii=False).encode()
        resp = self.client.post("/v1/notifications", content=content, headers=wire_headers(h))
        self.ledger.record(self.tenant, resp)
        return resp

    def get(self, path: str, **params: Any) -> httpx.Response:
        """GET as this tenant."""
        return self.client.get(path, params=params, headers=self.hub.headers(self.tenant))


def list_all(client: httpx.Client, headers: Mapping[str, str], page: int = 100) -> list[str]:
    """Every notification id a tenant can list, following next_cursor to the end."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(10_000):
        params: dict[str, Any] = {"limit": page}
        if cursor:
            params["cursor"] = cursor
        resp = client.get("/v1/notifications", params=params, headers=dict(headers))
        assert resp.status_code == 200, resp.text[:500]
        data = resp.json()
        ids.extend(item["id"] for item in data["items"])
        cursor = data["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("pagination never ended")


@dataclass
class RawResponse:
    """What came back on a raw socket."""

    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def raw_request(
    port: int, head: bytes, body: bytes = b"", *, framing: bool = True, timeout: float = 10
) -> RawResponse:
    """Send bytes exactly as given (httpx refuses NUL, CR, LF and friends) and read the answer.

    ``head`` is the request line and header lines, each ending in CRLF, without the
    blank line; ``Connection: close`` is added, and ``Content-Length`` unless not ``framing``.
    """
    length = b"Content-Length: %d\r\n" % len(body) if framing else b""
    request = head + b"Connection: close\r\n" + length + b"\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b"".join(_recv_all(sock))
    header_block, _, payload = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, payload)


def _recv_all(sock: socket.socket) -> Iterator[bytes]:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        yield chunk
