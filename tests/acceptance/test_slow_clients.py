"""Slow clients are cut off: a request head or body that does not arrive in time is
answered 408 and closed, and one API process holds at most IHUB_MAX_CONNECTIONS.

Raw sockets against a real `ihub api` process, with deadlines of 1 and 2 s.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h11
import httpx
import pytest
from pydantic import ValidationError

from hubs import HubProcesses, make_hub
from integration_hub.config import Settings

pytestmark = pytest.mark.acceptance

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
BOUND = 10.0  # generous: a closed connection must be seen closed within this

HALF_HEAD = b"POST /v1/notifications HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
BODY_HEAD = (
    b"POST /v1/notifications HTTP/1.1\r\nHost: hub\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcesses]:
    """An API process with short head and body deadlines."""
    procs = make_hub(
        tmp_path_factory.mktemp("slow"),
        IHUB_REQUEST_HEAD_TIMEOUT_SECONDS=str(HEAD_TIMEOUT),
        IHUB_REQUEST_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    )
    procs.create_tenant("acme")
    procs.start_api()
    try:
        yield procs
    finally:
        procs.stop()


def connect(hub: HubProcesses) -> socket.socket:
    """A raw TCP connection to the API."""
    return socket.create_connection(("127.0.0.1", hub.port), timeout=BOUND)


@contextmanager
def slow_clients(hub: HubProcesses) -> Iterator[list[socket.socket]]:
    """Three connections stalled in their head, three in their body."""
    slow = [connect(hub) for _ in range(6)]
    try:
        for sock in slow[:3]:
            sock.sendall(HALF_HEAD)
        for sock in slow[3:]:
            sock.sendall(BODY_HEAD + b"{")
        yield slow
    finally:
        for sock in slow:
            sock.close()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it stays open."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {BOUND} s; received {received!r}") from None
    return received


def trickle(sock: socket.socket, total: int) -> tuple[bytes, int]:
    """Send one body byte every 0.5 s until the server answers or closes."""
    sent = 0
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.5)
        if readable:
            return read_until_closed(sock), sent
        if sent < total:
            sock.sendall(b" ")
            sent += 1
    raise AssertionError(f"still open after {BOUND} s, {sent} bytes sent")


def open_fds(pid: int) -> int:
    """File descriptors the process holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def hold(hub: HubProcesses) -> socket.socket:
    """A connection the server accepted (the health probes' may still be closing)."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        sock = connect(hub)
        readable, _, _ = select.select([sock], [], [], 0.3)
        if not readable:
            return sock
        sock.close()  # refused: the server has not yet seen an earlier close
        time.sleep(0.1)
    raise AssertionError("the server refused every connection")


def settled_fds(pid: int) -> int:
    """The process's descriptor count once it has not changed for half a second."""
    deadline = time.monotonic() + BOUND
    count = open_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        count, previous = open_fds(pid), count
        if count == previous:
            break
    return count


def exchange(conn: h11.Connection, sock: socket.socket, request: h11.Request, body: bytes) -> int:
    """One request and its response on a kept-alive raw connection; the status."""
    data = conn.send(request) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    sock.sendall(data)
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            conn.start_next_cycle()
            return status
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError("the server closed a kept-alive connection")


def test_a_half_sent_request_head_is_answered_408_and_closed(hub: HubProcesses) -> None:
    with connect(hub) as sock:
        started = time.monotonic()
        sock.sendall(HALF_HEAD)
        received = read_until_closed(sock)
        waited = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"application/problem+json" in received
    assert b"request-timeout" in received
    assert waited >= HEAD_TIMEOUT / 2  # cut by the deadline, not refused at once


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    hub: HubProcesses,
) -> None:
    with connect(hub) as sock:
        assert read_until_closed(sock) == b""


def test_a_body_trickling_one_byte_every_half_second_is_cut_off_with_408(
    hub: HubProcesses,
) -> None:
    with connect(hub) as sock:
        sock.sendall(BODY_HEAD)
        received, sent = trickle(sock, 100)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"request body was not received" in received
    assert sent < 100  # the body never completed: the deadline cut it


def test_a_body_still_trickling_after_an_early_answer_does_not_hold_the_connection(
    hub: HubProcesses,
) -> None:
    # A declared length over IHUB_MAX_BODY_BYTES is answered 413 before the
    # body is read: the rest of the body must not keep the connection open,
    # and must not be answered a second time (with a 408).
    with connect(hub) as sock:
        sock.sendall(BODY_HEAD.replace(b"Content-Length: 100", b"Content-Length: 70000"))
        received, sent = trickle(sock, 70000)
    assert received.startswith(b"HTTP/1.1 413 "), received
    assert b"HTTP/1.1 408" not in received  # one response only
    assert sent < 100


def test_a_pipelined_request_whose_body_stalls_is_cut_off_after_the_first_answer(
    hub: HubProcesses,
) -> None:
    # The second request is parsed from the buffer only once the first is
    # answered, which also stops uvicorn's keep-alive timer.
    with connect(hub) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n" + BODY_HEAD + b"{")
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 "), received
    assert b"HTTP/1.1 408 " in received
    assert b"request body was not received" in received


def test_normal_requests_are_served_while_slow_clients_hold_connections(
    hub: HubProcesses,
) -> None:
    with slow_clients(hub) as slow:
        with httpx.Client(base_url=hub.base_url, timeout=BOUND) as client:
            assert client.get("/healthz").status_code == 200
            created = client.post(
                "/v1/notifications",
                headers=hub.headers("acme", X_Country="ES", Idempotency_Key="slow-neighbours"),
                json={"recipient": {"email": "ana@example.com"}, "subject": "Hi", "body": "x"},
            )
            assert created.status_code == 202, created.text
        for sock in slow:
            assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_the_api_releases_the_descriptors_of_the_slow_connections_it_cut(
    hub: HubProcesses,
) -> None:
    if not Path("/proc/self/fd").exists():
        pytest.skip("counts descriptors in /proc")
    pid = hub.procs[0].pid  # the API is the only process of this hub
    assert httpx.get(f"{hub.base_url}/healthz").status_code == 200  # warm
    before = settled_fds(pid)  # earlier tests' connections may still be closing
    with slow_clients(hub) as slow:
        deadline = time.monotonic() + BOUND
        while open_fds(pid) < before + 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_fds(pid) >= before + 6  # the count sees these connections
        for sock in slow:
            read_until_closed(sock)
    deadline = time.monotonic() + BOUND
    while open_fds(pid) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds(pid) <= before


def test_a_keep_alive_client_pausing_between_requests_is_not_cut_off(
    hub: HubProcesses,
) -> None:
    # Pauses longer than the head deadline between requests are keep-alive
    # idle time (uvicorn's 5 s), not a slow head; that idle timeout still ends
    # the connection afterwards.
    conn = h11.Connection(h11.CLIENT)
    host = ("host", "hub")
    with connect(hub) as sock:
        for n in range(2):
            get = h11.Request(method="GET", target="/healthz", headers=[host])
            assert exchange(conn, sock, get, b"") == 200
            time.sleep(HEAD_TIMEOUT * 1.5)
            body = b'{"recipient": {"email": "ana@example.com"}, "subject": "Hi", "body": "x"}'
            post = h11.Request(
                method="POST",
                target="/v1/notifications",
                headers=[
                    host,
                    *hub.headers("acme", X_Country="ES", Idempotency_Key=f"kept-{n}").items(),
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                ],
            )
            assert exchange(conn, sock, post, body) == 202
            time.sleep(HEAD_TIMEOUT * 1.5)
        idle_from = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - idle_from > HEAD_TIMEOUT * 2  # the keep-alive timeout


def test_connections_beyond_ihub_max_connections_are_answered_503_and_closed(
    tmp_path: Path,
) -> None:
    hub = make_hub(tmp_path, IHUB_MAX_CONNECTIONS="4", IHUB_REQUEST_HEAD_TIMEOUT_SECONDS="60")
    try:
        hub.start_api()
        held = [hold(hub) for _ in range(4)]
        try:
            with connect(hub) as extra:
                received = read_until_closed(extra)
            assert received.startswith(b"HTTP/1.1 503 "), received
            assert b"retry-after: 1" in received.lower()
            assert b"overloaded" in received
            held.pop().close()
            # Once the server saw that one close, a new connection is served.
            deadline = time.monotonic() + BOUND
            while True:
                try:
                    status = httpx.get(f"{hub.base_url}/healthz", timeout=BOUND).status_code
                except httpx.TransportError:
                    status = 0
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert status == 200
        finally:
            for sock in held:
                sock.close()
    finally:
        hub.stop()
    assert "refusing new connections" in (tmp_path / "api.log").read_text()


@pytest.mark.parametrize(
    "name",
    ["request_head_timeout_seconds", "request_body_timeout_seconds", "max_connections"],
)
@pytest.mark.parametrize("value", [0, -1])
def test_slow_client_limits_must_be_positive(name: str, value: int) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings.model_validate({name: value})
