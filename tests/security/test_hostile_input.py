"""Hostile headers, bodies, cursors and ids over real HTTP against a real uvicorn process.

Every answer is a clear 4xx application/problem+json (type, title, status, detail,
and field when one field is at fault), or a 2xx where the input is legitimate:
never a 5xx, never a hang. At the end the hostile tenant holds exactly the
notifications that were answered 202: nothing partial is ever stored.

Each test pins a bug this suite once found, or a behaviour that must hold.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubs import HubProcesses
from integration_hub.domain.models import canonical_json
from security.secfixtures import (
    BYSTANDER,
    HOSTILE,
    POISONED,
    PROBLEM,
    SUPPORTED,
    Ledger,
    Submitter,
    any_channel_body,
    assert_clear_answer,
    assert_problem,
    list_all,
    raw_request,
    wire_headers,
)

HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

EMAIL_ONLY = {"recipient": {"email": "ana@example.com"}, "body": "hello"}


def deep(depth: int, kind: str = "array") -> str:
    """A JSON value nested ``depth`` levels deep (built as text: Python would recurse)."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def with_body(raw_body: bytes) -> bytes:
    """A body whose ``body`` field is the given JSON bytes, verbatim."""
    return b'{"recipient": {"email": "ana@example.com"}, "body": ' + raw_body + b"}"


def with_metadata(raw_metadata: str) -> bytes:
    """A valid body whose metadata is the given JSON text, verbatim."""
    return (
        '{"recipient": {"email": "ana@example.com"}, "body": "hello", "metadata": '
        + raw_metadata
        + "}"
    ).encode()


# -- Idempotency-Key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        pytest.param("k" * 218 + "-" + str(uuid.uuid4()), True, id="255-chars"),
        pytest.param("k" * 256, False, id="256-chars"),
        pytest.param("k" * 10 * 1024, False, id="10KB"),
        pytest.param("ключ-идемпотентности".encode(), False, id="cyrillic-utf8"),
        pytest.param("clé".encode("latin-1"), False, id="latin1-byte"),
        pytest.param("🔑🔑".encode(), False, id="emoji"),
        pytest.param("a\u2028b".encode(), False, id="U+2028-line-separator"),
        pytest.param("a\u2029b".encode(), False, id="U+2029-paragraph-separator"),
        pytest.param("a\u0085b".encode(), False, id="U+0085-next-line"),
        pytest.param("a\tb", False, id="inner-tab"),
        pytest.param(f"spaces inside {uuid.uuid4()}", True, id="inner-spaces"),
        pytest.param(f"<script>alert(1)</script>{uuid.uuid4()}", True, id="markup"),
        pytest.param(f"'; DROP TABLE notifications;--{uuid.uuid4()}", True, id="sql"),
        pytest.param(f"../../etc/passwd/{uuid.uuid4()}", True, id="path-traversal"),
        pytest.param(f"${{jndi:ldap://x}}{uuid.uuid4()}", True, id="jndi"),
        pytest.param(f"X-Injected: 1 {uuid.uuid4()}", True, id="header-lookalike"),
    ],
)
def test_idempotency_keys(submitter: Submitter, key: str | bytes, accepted: bool) -> None:
    resp = submitter.post(key=key)
    if accepted:
        assert resp.status_code == 202, resp.text
        assert "x-injected" not in resp.headers
        # The key is kept as sent: the same key with the same payload is a replay.
        again = submitter.post(key=key)
        assert again.status_code == 202, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == resp.json()["id"]
    else:
        assert_problem(resp, 400, "Idempotency-Key", "bad-request")


@pytest.mark.parametrize(
    ("body", "content", "headers"),
    [
        pytest.param({"recipient": {"email": "nope"}, "body": "x"}, None, {}, id="invalid-field"),
        pytest.param(None, b'{"recipient": ', {}, id="malformed-json"),
        pytest.param(None, b"\xff\xfe", {}, id="invalid-utf8"),
        pytest.param(None, None, {"X-Country": "JP"}, id="unsupported-country"),
        pytest.param(None, None, {"Content-Type": "text/plain"}, id="wrong-content-type"),
        pytest.param({"body": "x" * 70_000}, None, {}, id="too-large"),
        pytest.param(None, with_metadata(deep(5000)), {}, id="deeply-nested"),
    ],
)
def test_a_refused_request_leaves_its_idempotency_key_free(
    submitter: Submitter,
    body: Any,
    content: bytes | None,
    headers: dict[str, str],
) -> None:
    key = f"refused-then-used-{uuid.uuid4()}"
    refused = submitter.post(body, content=content, key=key, headers=headers)
    assert_problem(refused, (400, 413, 415, 422))
    accepted = submitter.post(key=key)
    assert accepted.status_code == 202, accepted.text
    assert "Idempotent-Replayed" not in accepted.headers


# -- X-Country, X-Tenant, Authorization ---------------------------------------------------


@pytest.mark.parametrize(
    ("country", "status", "stored"),
    [
        pytest.param("E S", 422, None, id="inner-space"),
        pytest.param("E\tS", 422, None, id="inner-tab"),
        pytest.param("ÉS".encode(), 422, None, id="E-acute-utf8"),
        pytest.param("ÉS".encode("latin-1"), 422, None, id="E-acute-latin1"),
        pytest.param("U+004B", 422, None, id="U+004B"),
        pytest.param("ES\u2028".encode(), 422, None, id="line-separator"),
        pytest.param("\u0130T".encode(), 422, None, id="dotted-capital-I"),
        pytest.param("\u0131t".encode(), 422, None, id="dotless-i"),
        pytest.param("ＥＳ".encode(), 422, None, id="fullwidth"),
        pytest.param("ß".encode(), 422, None, id="sharp-s"),
        pytest.param("ES,US", 422, None, id="list"),
        pytest.param("ES;US", 422, None, id="semicolon"),
        pytest.param("ESP", 422, None, id="alpha-3"),
        pytest.param("E" * 10 * 1024, 422, None, id="10KB"),
        pytest.param("JP", 422, None, id="unsupported"),
        pytest.param("es", 202, "ES", id="lowercase"),
        pytest.param("uK", 202, "GB", id="uk-alias"),
    ],
)
def test_x_country_values(
    submitter: Submitter, country: str | bytes, status: int, stored: str | None
) -> None:
    resp = submitter.post(country=country)
    if status == 202:
        assert resp.status_code == 202, resp.text
        assert resp.json()["country"] == stored
    else:
        problem = assert_problem(resp, status, "X-Country")
        assert problem["type"].endswith(("invalid-field", "unsupported-country"))


@pytest.mark.parametrize(
    "tenant",
    [
        pytest.param(f"{HOSTILE}\u2028".encode(), id="line-separator"),
        pytest.param(HOSTILE.upper(), id="uppercase"),
        pytest.param(f"{HOSTILE}\tx", id="inner-tab"),
        pytest.param(f"{HOSTILE}\x1b[31m", id="ESC"),
        pytest.param(f"{HOSTILE}\x7f", id="DEL"),
        pytest.param(f"{HOSTILE}\u0085".encode(), id="NEL"),
        pytest.param(f"../{HOSTILE}", id="path-traversal"),
        pytest.param("h\u0337ostile".encode(), id="combining-mark"),
        pytest.param("x" * 10 * 1024, id="10KB"),
        pytest.param(f"{HOSTILE},{BYSTANDER}", id="list"),
    ],
)
def test_x_tenant_values_that_are_no_tenant_id_are_400(
    security_hub: HubProcesses, client: httpx.Client, tenant: str | bytes
) -> None:
    # Refused for their form, before the key is even looked at.
    headers = {**security_hub.headers(HOSTILE), "X-Tenant": tenant}
    resp = client.get("/v1/notifications", headers=wire_headers(headers))
    assert_problem(resp, 400, "X-Tenant", "bad-request")


def test_an_x_tenant_not_matching_the_key_is_403(
    security_hub: HubProcesses, client: httpx.Client
) -> None:
    headers = {**security_hub.headers(HOSTILE), "X-Tenant": BYSTANDER}
    resp = client.get("/v1/notifications", headers=headers)
    assert_problem(resp, 403, "X-Tenant", "forbidden")


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("key+U+2028", id="key-then-line-separator"),
        pytest.param("key+extra", id="key-then-more"),
        pytest.param("Bearer " + "k" * 10 * 1024, id="10KB"),
        pytest.param("Bearer ключ".encode(), id="cyrillic"),
        pytest.param("Bearer \u00e9".encode("latin-1"), id="latin1"),
        pytest.param("Bearer ihub_../../etc_passwd", id="path-traversal"),
        pytest.param("Bearer ihub_000000000000_' OR '1'='1", id="sql"),
        pytest.param("Bearer", id="bearer-only"),
        pytest.param("Token abc", id="other-scheme"),
    ],
)
def test_authorization_values_that_are_not_a_key_are_401(
    security_hub: HubProcesses, client: httpx.Client, authorization: str | bytes
) -> None:
    key = security_hub.keys[HOSTILE]
    if authorization == "key+U+2028":
        authorization = f"Bearer {key}\u2028".encode()
    elif authorization == "key+extra":
        authorization = f"Bearer {key} {key}"
    resp = client.get(
        "/v1/notifications",
        headers=wire_headers({"X-Tenant": HOSTILE, "Authorization": authorization}),
    )
    assert_problem(resp, 401, slug="unauthenticated")
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_the_bearer_scheme_is_case_insensitive(
    security_hub: HubProcesses, client: httpx.Client
) -> None:
    key = security_hub.keys[HOSTILE]
    resp = client.get(
        "/v1/notifications", headers={"X-Tenant": HOSTILE, "Authorization": f"bEaReR {key}"}
    )
    assert resp.status_code == 200, resp.text


def test_a_missing_api_key_names_the_authorization_header(client: httpx.Client) -> None:
    resp = client.get("/v1/notifications", headers={"X-Tenant": HOSTILE})
    assert_problem(resp, 401, "Authorization", "unauthenticated")


# -- what httpx cannot send: NUL, bare CR, DEL, duplicates, framing -------------------------


def _post_head(hub: HubProcesses, *lines: bytes, tenant: str = HOSTILE) -> bytes:
    head = [
        b"POST /v1/notifications HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Authorization: Bearer " + hub.keys[tenant].encode(),
        b"Content-Type: application/json",
    ]
    head += lines
    return b"".join(line + b"\r\n" for line in head)


def _fresh_key() -> bytes:
    return b"Idempotency-Key: raw-" + str(uuid.uuid4()).encode()


TENANT_LINE = b"X-Tenant: " + HOSTILE.encode()
ES_LINE = b"X-Country: ES"


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([TENANT_LINE, ES_LINE, b"Idempotency-Key: ab\x00cd"], id="NUL-in-key"),
        pytest.param([TENANT_LINE, b"X-Country: E\x00S"], id="NUL-in-country"),
        pytest.param([TENANT_LINE + b"\x00", ES_LINE], id="NUL-in-tenant"),
        pytest.param([TENANT_LINE, ES_LINE, b"Idempotency-Key: a\rX-Injected: 1"], id="bare-CR"),
        pytest.param([TENANT_LINE, ES_LINE, b"Idempotency-Key: a\x7fb"], id="DEL-in-key"),
        pytest.param([TENANT_LINE, ES_LINE, b"Idempotency-Key: caf\xe9"], id="latin1-in-key"),
        pytest.param([TENANT_LINE, ES_LINE, b"Idempotency-Key: \x01\x02"], id="controls-in-key"),
        pytest.param([TENANT_LINE, ES_LINE, b"Idempotency-Key:"], id="empty-key"),
        pytest.param([TENANT_LINE, b"X-Country: \xc3\x89S", _fresh_key()], id="utf8-country"),
        pytest.param([TENANT_LINE, b"X-Country: ES\x0b", _fresh_key()], id="VT-in-country"),
        pytest.param([TENANT_LINE, ES_LINE, b"X Country: JP", _fresh_key()], id="space-in-name"),
    ],
)
def test_raw_header_bytes_are_refused(
    security_hub: HubProcesses, ledger: Ledger, lines: list[bytes]
) -> None:
    """Refused with a 4xx: by the app (problem+json) or, for bytes HTTP/1.1 forbids in a
    field (NUL, bare CR, controls), by the HTTP server before the app sees the request
    (uvicorn/h11's own text/plain 400)."""
    head = _post_head(security_hub, *lines)
    resp = raw_request(security_hub.port, head, json.dumps(EMAIL_ONLY).encode())
    ledger.record(HOSTILE, resp)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.body[:300])
    assert "x-injected" not in resp.headers
    if resp.headers.get("content-type") == PROBLEM:
        problem = resp.json()
        assert {"type", "title", "status", "detail"} <= problem.keys()
        assert problem["status"] == resp.status_code


@pytest.mark.parametrize(
    ("lines", "country"),
    [
        pytest.param([b"X-Country: ES\t"], "ES", id="trailing-tab"),
        pytest.param([b"X-Country:   ES  "], "ES", id="padding"),
        pytest.param([b"x-country: es"], "ES", id="lowercase-name"),
    ],
)
def test_optional_whitespace_around_a_header_value_is_not_part_of_it(
    security_hub: HubProcesses, ledger: Ledger, lines: list[bytes], country: str
) -> None:
    head = _post_head(security_hub, b"X-Tenant: hostile", _fresh_key(), *lines)
    resp = raw_request(security_hub.port, head, json.dumps(EMAIL_ONLY).encode())
    ledger.record(HOSTILE, resp)
    assert resp.status_code == 202, resp.body
    assert resp.json()["country"] == country


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        pytest.param(
            [b"X-Tenant: hostile", b"X-Tenant: bystander", b"X-Country: ES"],
            "X-Tenant",
            id="two-tenants-own-first",
        ),
        pytest.param(
            [b"X-Tenant: bystander", b"X-Tenant: hostile", b"X-Country: ES"],
            "X-Tenant",
            id="two-tenants-other-first",
        ),
        pytest.param(
            [b"X-Tenant: hostile", b"X-Country: ES", b"X-Country: JP"],
            "X-Country",
            id="two-countries",
        ),
        pytest.param(
            [b"X-Tenant: hostile", b"X-Country: ES", b"Content-Type: text/plain"],
            "Content-Type",
            id="two-content-types",
        ),
    ],
)
def test_a_duplicated_header_is_refused_naming_it(
    security_hub: HubProcesses, ledger: Ledger, lines: list[bytes], field: str
) -> None:
    """A proxy may read the other copy than we would: refuse rather than guess."""
    head = _post_head(security_hub, _fresh_key(), *lines)
    resp = raw_request(security_hub.port, head, json.dumps(EMAIL_ONLY).encode())
    ledger.record(HOSTILE, resp)
    assert resp.status_code == 400, (resp.status_code, resp.body[:300])
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["field"] == field


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Content-Length: 10\r\nContent-Length: 20\r\n", id="two-lengths"),
        pytest.param(b"Content-Length: -1\r\n", id="negative-length"),
        pytest.param(b"Content-Length: 1e3\r\n", id="float-length"),
        pytest.param(b"Transfer-Encoding: gzip, chunked\r\n", id="unknown-coding"),
    ],
)
def test_ambiguous_framing_is_refused_and_never_hangs(
    security_hub: HubProcesses, ledger: Ledger, framing: bytes
) -> None:
    head = _post_head(security_hub, b"X-Tenant: hostile", b"X-Country: ES", _fresh_key())
    body = json.dumps(EMAIL_ONLY).encode()
    resp = raw_request(security_hub.port, head + framing, body, framing=False, timeout=10)
    ledger.record(HOSTILE, resp)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.body[:300])


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", id="length-first"),
        pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", id="chunked-first"),
    ],
)
def test_a_chunked_body_cannot_hide_behind_a_small_content_length(
    security_hub: HubProcesses, ledger: Ledger, framing: bytes
) -> None:
    doc = json.dumps(any_channel_body(body="x" * 70_000)).encode()
    chunked = b"%x\r\n" % len(doc) + doc + b"\r\n0\r\n\r\n"
    head = _post_head(security_hub, b"X-Tenant: hostile", b"X-Country: ES", _fresh_key())
    resp = raw_request(security_hub.port, head + framing, chunked, framing=False)
    ledger.record(HOSTILE, resp)
    assert resp.status_code in (400, 413), (resp.status_code, resp.body[:300])


def test_the_server_survived_the_raw_requests(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


# -- bodies: nesting, size, encoding ------------------------------------------------------


@pytest.mark.parametrize(
    "raw_metadata",
    [
        pytest.param(deep(1000, "object"), id="objects-1000"),
        pytest.param(deep(5000, "object"), id="objects-5000"),
        pytest.param('{"a": ' + deep(1000) + "}", id="arrays-1000"),
        pytest.param('{"a": ' + deep(10_000) + "}", id="arrays-10000"),
        pytest.param('{"a": ' + deep(30_000) + "}", id="arrays-30000"),
    ],
)
def test_deeply_nested_metadata_is_a_4xx(submitter: Submitter, raw_metadata: str) -> None:
    assert_problem(submitter.post(content=with_metadata(raw_metadata)), (400, 413, 422))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(deep(20_000).encode(), id="bare-arrays-20000"),
        pytest.param(deep(5000, "object").encode(), id="bare-objects-5000"),
    ],
)
def test_a_deeply_nested_body_is_a_4xx(submitter: Submitter, content: bytes) -> None:
    assert_problem(submitter.post(content=content), (400, 413, 422))


@pytest.mark.parametrize("depth", [256, 500, 900])
def test_metadata_nested_past_the_serializer_limit_is_422(submitter: Submitter, depth: int) -> None:
    resp = submitter.post(content=with_metadata('{"a": ' + deep(depth) + "}"))
    assert_problem(resp, 422, "metadata", "validation-error")


def test_accepted_nested_metadata_stays_readable(
    security_hub: HubProcesses, client: httpx.Client, ledger: Ledger
) -> None:
    # On a tenant of its own: it poisons the tenant's listing for good.
    poisoned = Submitter(security_hub, client, ledger, tenant=POISONED)
    resp = poisoned.post(content=with_metadata('{"a": ' + deep(200) + "}"))
    if resp.status_code != 202:
        assert_problem(resp, 422, "metadata")
        return
    notification = poisoned.get(f"/v1/notifications/{resp.json()['id']}")
    assert notification.status_code == 200, notification.text
    assert poisoned.get("/v1/notifications").status_code == 200


@pytest.mark.parametrize(
    ("metadata", "status"),
    [
        pytest.param({"k": "v" * (4096 - len('{"k":""}'))}, 202, id="exactly-4096-bytes"),
        pytest.param({"k": "v" * (4097 - len('{"k":""}'))}, 422, id="4097-bytes"),
        pytest.param({"k": "é" * 2100}, 422, id="4200-bytes-2100-chars"),
        pytest.param({"k": "v" * 60_000}, 422, id="60KB"),
        pytest.param({str(i): i for i in range(3000)}, 422, id="3000-keys"),
        pytest.param({"k" * 10_000: 1}, 422, id="10KB-key"),
        pytest.param({"k": "v" * 70_000}, 413, id="over-the-body-limit"),
    ],
)
def test_metadata_size_limits(submitter: Submitter, metadata: Any, status: int) -> None:
    resp = submitter.post(any_channel_body(metadata=metadata))
    if status == 202:
        assert resp.status_code == 202, resp.text
    else:
        assert_problem(resp, status, "metadata" if status == 422 else "body")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(with_body(b'"\xff\xfe"'), id="FF-FE"),
        pytest.param(with_body('"café"'.encode("latin-1")), id="latin1"),
        pytest.param(with_body(b'"\xc3"'), id="truncated-sequence"),
        pytest.param(with_body(b'"\xed\xa0\x80"'), id="encoded-surrogate"),
        pytest.param(with_body(b'"\xc0\xaf"'), id="overlong-slash"),
    ],
)
def test_invalid_utf8_is_refused(submitter: Submitter, content: bytes) -> None:
    # 422 for an encoded surrogate: json.loads decodes bytes with "surrogatepass" and the
    # lone surrogate is then refused by the string field.
    assert_problem(submitter.post(content=content), (400, 422))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(with_body(b'"\xff"'), id="invalid-utf8"),
        pytest.param(with_metadata(deep(5000, "object")), id="nesting-5000"),
        pytest.param(with_metadata('{"n": ' + "9" * 5000 + "}"), id="5000-digit-integer"),
    ],
)
def test_an_unparsable_body_is_malformed_json(submitter: Submitter, content: bytes) -> None:
    assert_problem(submitter.post(content=content), 400, "body", "malformed-json")


# -- Content-Type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "content", "statuses"),
    [
        pytest.param("text/plain", None, (415,), id="text-plain"),
        pytest.param(
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="body"\r\n\r\nhi\r\n--xyz--\r\n',
            (415,),
            id="multipart",
        ),
        pytest.param(
            "application/x-www-form-urlencoded", b"body=hi&recipient=x", (415,), id="form"
        ),
        pytest.param(None, None, (415,), id="missing"),
        pytest.param("", None, (415,), id="empty"),
        pytest.param("application/json, text/plain", None, (415,), id="two-types"),
        pytest.param("text/json", None, (415,), id="text-json"),
        pytest.param("application/jsonp", None, (415,), id="jsonp"),
        pytest.param("*/*", None, (415,), id="wildcard"),
        pytest.param("application/json\u2028".encode(), None, (415,), id="line-separator"),
        pytest.param("application/json; charset=latin-1", None, (202,), id="charset-ascii-body"),
        pytest.param(
            "application/json; charset=latin-1",
            '{"recipient": {"email": "ana@example.com"}, "body": "café"}'.encode("latin-1"),
            (400, 415),
            id="charset-latin1-body",
        ),
        pytest.param(
            "application/json; charset=utf-16",
            json.dumps(EMAIL_ONLY).encode("utf-16"),
            (202, 400, 415),
            id="utf16-body",
        ),
        pytest.param("APPLICATION/JSON", None, (202,), id="uppercase"),
        pytest.param("application/vnd.api+json", None, (202,), id="plus-json"),
        pytest.param("application/json;;;charset=", None, (202, 415), id="odd-parameters"),
    ],
)
def test_content_types(
    submitter: Submitter,
    content_type: str | bytes | None,
    content: bytes | None,
    statuses: tuple[int, ...],
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    drop = ("Content-Type",) if content_type is None else ()
    resp = submitter.post(
        content=content or json.dumps(any_channel_body()).encode(), headers=headers, drop=drop
    )
    assert_clear_answer(resp, statuses)
    if resp.status_code == 415:
        assert_problem(resp, 415, "Content-Type", "unsupported-media-type")


# -- JSON values where they do not belong -------------------------------------------------


def test_duplicate_json_keys_store_one_of_the_values(submitter: Submitter) -> None:
    content = (
        b'{"recipient": {"email": "ana@example.com"}, "body": "first", "body": "second",'
        b' "subject": "one", "subject": "two"}'
    )
    resp = submitter.post(content=content)
    assert_clear_answer(resp, (202, 400, 422))
    if resp.status_code == 202:
        view = submitter.get(f"/v1/notifications/{resp.json()['id']}").json()
        assert view["subject"] in {"one", "two"}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'"hello"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"-1.5e300", id="float"),
        pytest.param(b"true", id="true"),
        pytest.param(b"null", id="null"),
        pytest.param(b"[]", id="empty-array"),
        pytest.param(json.dumps([any_channel_body()]).encode(), id="array-of-a-valid-body"),
        pytest.param(b"", id="empty"),
        pytest.param(b"   ", id="whitespace"),
        pytest.param(b"{}", id="empty-object"),
    ],
)
def test_a_body_that_is_not_an_object_is_refused(submitter: Submitter, content: bytes) -> None:
    problem = assert_problem(submitter.post(content=content), (400, 422))
    assert problem.get("field") in {"body", "recipient"}, problem


WRONG_TYPES = [5, 1.5, True, [], ["x"], {"$ne": ""}]


@pytest.mark.parametrize(
    ("field", "value", "status", "named"),
    [
        *[("body", v, 422, "body") for v in [*WRONG_TYPES, None, {}]],
        *[("subject", v, 422, "subject") for v in [*WRONG_TYPES, {}]],
        ("subject", None, 202, None),
        *[("recipient", v, 422, "recipient") for v in [*WRONG_TYPES[:-1], None, "ana@"]],
        ("recipient", {"$ne": ""}, 422, "recipient.$ne"),
        ("recipient", {}, 422, "recipient.email"),
        *[("recipient.email", v, 422, "recipient.email") for v in [*WRONG_TYPES, {}]],
        ("recipient.email", None, 422, "recipient.email"),
        *[("recipient.phone", v, 422, "recipient.phone") for v in [*WRONG_TYPES, {}, 34600111222]],
        *[("metadata", v, 422, "metadata") for v in [5, 1.5, True, [], ["x"], "x"]],
        ("metadata", None, 202, None),
        ("metadata", {}, 202, None),
        ("channel", "sms", 422, "channel"),
        ("tenant", BYSTANDER, 422, "tenant"),
        ("recipient.cc", "eve@example.com", 422, "recipient.cc"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_values_of_the_wrong_type(
    submitter: Submitter, field: str, value: Any, status: int, named: str | None
) -> None:
    country = "MX" if field == "recipient.phone" else "ES"
    body: dict[str, Any] = {"recipient": {"email": "ana@example.com"}, "body": "hello"}
    if field == "recipient.email":
        body["recipient"] = {"email": value}
    elif field.startswith("recipient."):
        body["recipient"] = {"phone": "+5215512345678", field.split(".", 1)[1]: value}
    else:
        body[field] = value
    resp = submitter.post(body, country=country)
    if status == 202:
        assert resp.status_code == 202, resp.text
    else:
        assert_problem(resp, status, named)


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        pytest.param(any_channel_body(body="x" * 60_000), 202, None, id="body-60KB"),
        pytest.param(any_channel_body(body="x" * 70_000), 413, "body", id="body-70KB"),
        pytest.param(any_channel_body(subject="s" * 998), 202, None, id="subject-998"),
        pytest.param(any_channel_body(subject="s" * 999), 422, "subject", id="subject-999"),
        pytest.param(any_channel_body(subject="s" * 50_000), 422, "subject", id="subject-50KB"),
        pytest.param(
            {"recipient": {"email": "a" * 64 + "@" + "b" * 185 + ".com"}, "body": "x"},
            202,
            None,
            id="email-254",
        ),
        pytest.param(
            {"recipient": {"email": "a" * 64 + "@" + "b" * 186 + ".com"}, "body": "x"},
            422,
            "recipient.email",
            id="email-255",
        ),
        pytest.param(
            {"recipient": {"email": "a" * 50_000 + "@example.com"}, "body": "x"},
            422,
            "recipient.email",
            id="email-50KB",
        ),
        pytest.param(
            {"recipient": {"phone": "+1" + "2" * 50_000}, "body": "x"},
            422,
            "recipient.phone",
            id="phone-50KB",
        ),
        pytest.param(
            {**any_channel_body(), "x" * 10_000: 1}, 422, "x" * 10_000, id="unknown-field-10KB"
        ),
    ],
)
def test_very_long_strings(
    submitter: Submitter, body: dict[str, Any], status: int, named: str | None
) -> None:
    resp = submitter.post(body)
    if status == 202:
        assert resp.status_code == 202, resp.text
    else:
        assert_problem(resp, status, named)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("héllo 👋🏽 👨‍👩‍👧‍👦", id="emoji-zwj"),
        pytest.param("שלום עולם مرحبا بالعالم", id="rtl"),
        pytest.param("abc \u202edcba\u202c \u200f\u200e", id="bidi-controls"),
        pytest.param("zero\u200bwidth\u200d\ufeffbom", id="zero-width"),
        pytest.param("e\u0301 a\u0308 Z\u0337\u0321\u0327", id="combining"),
        pytest.param("𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈", id="astral"),
        pytest.param("line\u2028para\u2029end", id="unicode-separators"),
        pytest.param("non-character \uffff \ufffe", id="noncharacters"),
        pytest.param("<script>alert(1)</script> {{7*7}} ${7*7}", id="markup"),
    ],
)
def test_unicode_in_body_and_subject_is_accepted_and_kept(submitter: Submitter, text: str) -> None:
    resp = submitter.post(any_channel_body(body=text, subject=text[:998]))
    assert resp.status_code == 202, resp.text
    view = submitter.get(f"/v1/notifications/{resp.json()['id']}")
    assert view.status_code == 200, view.text
    assert view.json()["subject"] == text[:998]


CONTROLS = {
    "NUL": "\x00",
    "BEL": "\x07",
    "ESC": "\x1b",
    "DEL": "\x7f",
    "NEL": "\x85",
    "CSI": "\x9b",
}


def _with_control(where: str, char: str) -> dict[str, Any]:
    """A valid body with ``char`` inside the field ``where``."""
    if where == "recipient.email":
        return any_channel_body(recipient={"email": f"a{char}[31m@example.com"})
    if where == "recipient.phone":
        return any_channel_body(recipient={"phone": f"+34600{char}111222"})
    if where == "subject":
        return any_channel_body(subject=f"Hi{char}there")
    if where == "body":
        return any_channel_body(body=f"hello {char} inside")
    if where == "metadata.order.note":
        return any_channel_body(metadata={"order": {"note": f"x{char}y"}})
    if where == "metadata.lines.2":
        return any_channel_body(metadata={"lines": ["a", "b", f"x{char}y"]})
    if where == "metadata.order":  # a key of metadata.order
        return any_channel_body(metadata={"order": {f"no{char}te": 1}})
    if where == "metadata":  # a top-level key
        return any_channel_body(metadata={f"k{char}": 1})
    raise AssertionError(where)


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize(
    "where",
    [
        "recipient.email",
        "recipient.phone",
        "subject",
        "body",
        "metadata.order.note",
        "metadata.lines.2",
        "metadata.order",
        "metadata",
    ],
)
def test_a_control_character_is_refused_at_ingest_naming_the_field(
    submitter: Submitter, where: str, char: str
) -> None:
    """Issue 13.2: NUL was accepted and then failed on PostgreSQL at delivery; ESC
    repainted the terminal of whoever read the recipient. Now: 422, the exact field."""
    country = "MX" if where == "recipient.phone" else "ES"
    resp = submitter.post(_with_control(where, char), country=country)
    problem = assert_problem(resp, 422, where, "validation-error")
    assert f"U+{ord(char):04X}" in problem["detail"]
    # Named by code point, never echoed.
    assert all(char not in text for text in [problem["detail"], problem["field"]])
    assert all(char not in e["message"] for e in problem["errors"])


@pytest.mark.parametrize("char", ["\t", "\n", "\r"], ids=["TAB", "LF", "CR"])
@pytest.mark.parametrize("where", ["subject", "recipient.email", "metadata.order"])
def test_tab_and_line_breaks_are_refused_inside_one_line_values(
    submitter: Submitter, where: str, char: str
) -> None:
    assert_problem(submitter.post(_with_control(where, char)), 422, where, "validation-error")


def test_tab_and_line_breaks_are_accepted_in_a_body_and_in_metadata_values(
    submitter: Submitter,
) -> None:
    note = "line one\r\n\tindented\nline three"
    resp = submitter.post(any_channel_body(body=note, metadata={"order": {"note": note}}))
    assert resp.status_code == 202, resp.text
    view = submitter.get(f"/v1/notifications/{resp.json()['id']}")
    assert view.status_code == 200, view.text
    assert view.json()["metadata"] == {"order": {"note": note}}


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: x@example.com", "Hi\nthere", "Hi\rthere"])
def test_a_header_injection_in_the_subject_is_refused_at_ingest(
    submitter: Submitter, subject: str
) -> None:
    assert_problem(submitter.post(any_channel_body(subject=subject)), 422, "subject")


@pytest.mark.parametrize(
    ("content", "named"),
    [
        pytest.param(with_body(b'"\\ud800"'), "body", id="body"),
        pytest.param(with_body(b'"x", "subject": "\\udfff"'), "subject", id="subject"),
        pytest.param(
            b'{"recipient": {"email": "\\ud800@example.com"}, "body": "x"}',
            "recipient.email",
            id="email",
        ),
        pytest.param(with_metadata('{"\\ud800": 1}'), "metadata", id="metadata-key"),
        pytest.param(with_metadata('{"a": "\\udbff\\udbff"}'), "metadata", id="metadata-value"),
    ],
)
def test_lone_surrogates_are_422(submitter: Submitter, content: bytes, named: str) -> None:
    assert_problem(submitter.post(content=content), 422, named)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        pytest.param(with_body(b"NaN"), "body", id="body-NaN"),
        pytest.param(with_body(b'"x", "subject": Infinity'), "subject", id="subject-Infinity"),
        pytest.param(
            b'{"recipient": {"phone": -Infinity}, "body": "x"}',
            "recipient.phone",
            id="phone-minus-Infinity",
        ),
    ],
)
def test_nan_and_infinity_where_a_string_belongs_are_refused(
    submitter: Submitter, content: bytes, named: str
) -> None:
    problem = assert_problem(submitter.post(content=content), (400, 422))
    assert problem.get("field") in {named, "body"}, problem


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_in_metadata_are_refused(submitter: Submitter, literal: str) -> None:
    resp = submitter.post(content=with_metadata('{"x": ' + literal + "}"))
    assert_problem(resp, (400, 422))


# -- cursors and ids ----------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("A" * 8192, id="8KB"),
        pytest.param("../../etc/passwd", id="path-traversal"),
        pytest.param("..%2F..%2Fetc%2Fpasswd", id="encoded-traversal"),
        pytest.param(_b64("../../etc/passwd"), id="base64-traversal"),
        pytest.param(_b64("' OR 1=1 --"), id="base64-sql"),
        pytest.param(_b64("x" * 36), id="base64-not-an-id"),
        pytest.param("\u0000", id="NUL"),
        pytest.param("ключ", id="cyrillic"),
        pytest.param("====", id="padding-only"),
        pytest.param("-_-_", id="base64url-garbage"),
        pytest.param("MDFh MjBm", id="space"),
    ],
)
def test_hostile_cursors_are_422(submitter: Submitter, cursor: str) -> None:
    assert_problem(submitter.get("/v1/notifications", cursor=cursor), 422, "cursor")


def test_a_cursor_naming_another_tenants_notification_leaks_nothing(
    security_hub: HubProcesses, client: httpx.Client, ledger: Ledger, submitter: Submitter
) -> None:
    bystander = Submitter(security_hub, client, ledger, tenant=BYSTANDER)
    theirs = bystander.post()
    assert theirs.status_code == 202, theirs.text
    mine = submitter.post()
    assert mine.status_code == 202, mine.text
    # A cursor just past the bystander's newest notification: a valid position.
    page = submitter.get("/v1/notifications", cursor=_b64("f" * 8 + "-ffff-ffff-ffff-" + "f" * 12))
    assert page.status_code == 200, page.text
    seen = {item["id"] for item in page.json()["items"]}
    assert mine.json()["id"] in seen
    assert theirs.json()["id"] not in seen
    assert {item["tenant"] for item in page.json()["items"]} == {HOSTILE}
    page = submitter.get("/v1/notifications", cursor=_b64(theirs.json()["id"]))
    assert_clear_answer(page, (200, 422))
    if page.status_code == 200:
        assert {item["tenant"] for item in page.json()["items"]} <= {HOSTILE}


@pytest.mark.parametrize(
    "notification_id",
    [
        pytest.param("a" * 8192, id="8KB"),
        pytest.param("..%2F..%2Fetc%2Fpasswd", id="encoded-traversal"),
        pytest.param("%2E%2E", id="encoded-dot-dot"),
        pytest.param("%252E%252E%252F", id="double-encoded"),
        pytest.param("%00", id="NUL"),
        pytest.param(quote("' OR '1'='1", safe=""), id="sql"),
        pytest.param(quote("*", safe=""), id="wildcard"),
        pytest.param(quote("ключ", safe=""), id="cyrillic"),
        pytest.param("00000000-0000-0000-0000-000000000000", id="nil-uuid"),
    ],
)
def test_hostile_ids_are_404(submitter: Submitter, notification_id: str) -> None:
    assert_problem(submitter.get(f"/v1/notifications/{notification_id}"), 404)


def test_another_tenants_notification_is_404(
    security_hub: HubProcesses, client: httpx.Client, ledger: Ledger, submitter: Submitter
) -> None:
    theirs = Submitter(security_hub, client, ledger, tenant=BYSTANDER).post()
    assert theirs.status_code == 202, theirs.text
    assert_problem(submitter.get(f"/v1/notifications/{theirs.json()['id']}"), 404, "id")


@pytest.mark.parametrize(
    ("params", "named"),
    [
        pytest.param({"limit": "0"}, "limit", id="limit-0"),
        pytest.param({"limit": "101"}, "limit", id="limit-101"),
        pytest.param({"limit": "-1"}, "limit", id="limit-negative"),
        pytest.param({"limit": "1e3"}, "limit", id="limit-float"),
        pytest.param({"limit": "9" * 5000}, "limit", id="limit-5000-digits"),
        pytest.param({"limit": ""}, "limit", id="limit-empty"),
        pytest.param({"status": "done"}, "status", id="status-lowercase"),
        pytest.param({"status": "DONE' OR '1'='1"}, "status", id="status-sql"),
        pytest.param({"status": "\u0000"}, "status", id="status-NUL"),
    ],
)
def test_hostile_query_parameters_are_422(
    submitter: Submitter, params: dict[str, str], named: str
) -> None:
    assert_problem(submitter.get("/v1/notifications", **params), 422, named)


@pytest.mark.parametrize("country", ["ESP", "ß", "E S"])
def test_a_malformed_country_filter_names_the_query_parameter(
    submitter: Submitter, country: str
) -> None:
    assert_problem(submitter.get("/v1/notifications", country=country), 422, "country")


# -- Hypothesis ---------------------------------------------------------------------------

# Bytes h11 will put in a header value: visible ASCII, obs-text, and inner space/tab.
_FIELD_BYTE = st.sampled_from([*range(0x21, 0x7F), *range(0x80, 0x100)])
_INNER_BYTE = st.one_of(_FIELD_BYTE, st.sampled_from([0x20, 0x09]))


@st.composite
def header_values(draw: st.DrawFn, max_size: int = 300) -> bytes:
    """A header value HTTP/1.1 can carry: no leading or trailing whitespace, no controls."""
    middle = draw(st.lists(_INNER_BYTE, max_size=max_size))
    if not middle:
        return bytes([draw(_FIELD_BYTE)])
    return bytes([draw(_FIELD_BYTE), *middle, draw(_FIELD_BYTE)])


@HYPOTHESIS
@given(
    key=st.one_of(
        header_values(),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=300)
        .map(str.strip)
        .filter(bool)
        .map(str.encode),
        st.text(min_size=1, max_size=40).map(str.encode).filter(lambda b: b == b.strip()),
    )
)
def test_any_idempotency_key(submitter: Submitter, key: bytes) -> None:
    if any((b < 0x20 and b != 0x09) or b == 0x7F for b in key):
        return  # not a header value; the raw-socket tests cover those
    resp = submitter.post(key=key)
    valid = len(key) <= 255 and all(0x20 <= b <= 0x7E for b in key)
    if valid:
        # A key met again is a replay: same payload, same answer.
        assert resp.status_code == 202, resp.text
    else:
        assert_problem(resp, 400, "Idempotency-Key", "bad-request")


@HYPOTHESIS
@given(
    country=st.one_of(
        st.sampled_from(SUPPORTED).map(str.encode),
        st.sampled_from(SUPPORTED).map(lambda c: c.lower().encode()),
        header_values(max_size=4),
        st.text(min_size=1, max_size=4).map(str.encode).filter(lambda b: b == b.strip()),
    )
)
def test_any_x_country(submitter: Submitter, country: bytes) -> None:
    if any((b < 0x20 and b != 0x09) or b == 0x7F for b in country):
        return
    resp = submitter.post(country=country)
    text = country.decode("latin-1")
    if text.isascii() and text.upper() in SUPPORTED:
        assert resp.status_code == 202, resp.text
        assert resp.json()["country"] == ("GB" if text.upper() == "UK" else text.upper())
    else:
        assert_problem(resp, 422, "X-Country")


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def _is_control(char: str, *, allowed: str = "") -> bool:
    return (ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F) and char not in allowed


def _has_forbidden_control(value: Any) -> bool:
    """A control in a key, or one other than tab, LF and CR in a string value."""
    if isinstance(value, str):
        return any(_is_control(c, allowed="\t\n\r") for c in value)
    if isinstance(value, dict):
        return any(
            any(_is_control(c) for c in k) or _has_forbidden_control(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_forbidden_control(v) for v in value)
    return False


@HYPOTHESIS
@given(metadata=st.dictionaries(st.text(max_size=20), _JSON, max_size=8))
def test_any_metadata_object_is_kept_exactly_or_refused_for_size(
    submitter: Submitter, metadata: dict[str, Any]
) -> None:
    resp = submitter.post(any_channel_body(metadata=metadata))
    if _has_forbidden_control(metadata):
        problem = assert_problem(resp, 422, slug="validation-error")
        assert problem["field"].startswith("metadata"), problem
        return
    if len(canonical_json(metadata)) > 4096:
        assert_problem(resp, 422, "metadata", "validation-error")
        return
    assert resp.status_code == 202, resp.text
    view = submitter.get(f"/v1/notifications/{resp.json()['id']}")
    assert view.status_code == 200, view.text
    assert view.json()["metadata"] == (metadata or {})


@HYPOTHESIS
@given(
    body=st.one_of(
        _JSON,
        st.dictionaries(
            st.sampled_from(["recipient", "subject", "body", "metadata", "extra"]),
            _JSON,
            max_size=5,
        ),
        st.builds(
            lambda base, name, value: {**base, name: value},
            st.just(any_channel_body()),
            st.sampled_from(["recipient", "subject", "body", "metadata"]),
            _JSON,
        ),
    )
)
def test_any_json_body(submitter: Submitter, body: Any) -> None:
    resp = submitter.post(body)
    assert_clear_answer(resp, (202, 400, 422))


@HYPOTHESIS
@given(content=st.binary(max_size=512))
def test_any_bytes_body(submitter: Submitter, content: bytes) -> None:
    assert_clear_answer(submitter.post(content=content), (202, 400, 422))


@HYPOTHESIS
@given(
    body=st.text(max_size=200),
    subject=st.none() | st.text(max_size=200),
    email=st.text(max_size=80),
    phone=st.none() | st.text(max_size=20),
)
def test_any_strings_in_every_field(
    submitter: Submitter, body: str, subject: str | None, email: str, phone: str | None
) -> None:
    payload = {"recipient": {"email": email, "phone": phone}, "body": body, "subject": subject}
    resp = submitter.post(payload)
    assert_clear_answer(resp, (202, 422))
    if resp.status_code == 422:
        problem = resp.json()
        assert problem.get("field") in {"body", "subject", "recipient.email", "recipient.phone"}
        return
    view = submitter.get(f"/v1/notifications/{resp.json()['id']}").json()
    assert view["subject"] == subject


@HYPOTHESIS
@given(cursor=st.text(min_size=1, max_size=100), country=st.none() | st.text(max_size=5))
def test_any_cursor_and_country_filter(
    submitter: Submitter, cursor: str, country: str | None
) -> None:
    params = {"cursor": cursor} if country is None else {"cursor": cursor, "country": country}
    resp = submitter.get("/v1/notifications", **params)
    assert_clear_answer(resp, (200, 422))
    if resp.status_code == 200:
        assert {item["tenant"] for item in resp.json()["items"]} <= {HOSTILE}


@HYPOTHESIS
@given(notification_id=st.text(min_size=1, max_size=100).filter(lambda s: s not in {".", ".."}))
def test_any_notification_id(submitter: Submitter, notification_id: str) -> None:
    resp = submitter.get(f"/v1/notifications/{quote(notification_id, safe='')}")
    assert_problem(resp, 404)


# -- nothing partial ----------------------------------------------------------------------


def test_the_hostile_tenant_holds_exactly_what_was_answered_202(
    security_hub: HubProcesses, client: httpx.Client, ledger: Ledger
) -> None:
    """Runs last in this module: everything answered 202 above is stored, once, and
    nothing else is: no refused, failed or half-accepted request left a notification."""
    headers = security_hub.headers(HOSTILE)
    listed = list_all(client, headers)
    assert len(listed) == len(set(listed)), "a notification is listed twice"
    assert set(listed) == ledger.of(HOSTILE)
    assert list_all(client, headers, page=7) == listed  # the same through small pages
    for notification_id in listed[:20]:
        view = client.get(f"/v1/notifications/{notification_id}", headers=headers)
        assert view.status_code == 200, view.text
        assert view.json()["tenant"] == HOSTILE
