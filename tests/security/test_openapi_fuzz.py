"""Schemathesis against the hub's own OpenAPI, sent to a real uvicorn process over HTTP.

The schema is the one the app factory builds; the first test proves that it is
byte for byte what the running server serves at /openapi.json. (It is loaded at
import time because the lazy ``schemathesis.pytest.from_fixture`` of the
installed schemathesis 4.x does not work with pytest 9: it writes
``request.node._nodeid``, which pytest 9 no longer has.)

Every run is derandomized with a bounded number of examples per operation, so a
failure reproduces and the module stays fast.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from hubs import HubProcesses
from integration_hub.adapters.providers import registry
from integration_hub.config import Settings
from integration_hub.domain.models import (
    BODY_PATTERN,
    E164_PATTERN,
    EMAIL_PATTERN,
    ONE_LINE_PATTERN,
    TEXT_PATTERN,
)
from integration_hub.domain.tenants import TENANT_ID
from integration_hub.entrypoints.api import create_app
from security.secfixtures import (
    ADMIN_TARGET,
    ADMIN_TOKEN,
    BYSTANDER,
    CLOSE,
    FUZZ,
    PROBLEM,
    SUPPORTED,
    TYPE_PREFIX,
    any_channel_body,
    assert_problem,
)

if TYPE_CHECKING:  # schemathesis names the OpenAPI case type for type checkers only
    from schemathesis.specs.openapi.schemas import OpenApiCase

RAW_SCHEMA: dict[str, Any] = create_app(Settings(database_url="sqlite:///:memory:")).openapi()

schema = schemathesis.openapi.from_dict(RAW_SCHEMA)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=25
)

tenant_api = schema.exclude(path_regex=r"^/admin/|^/v1/receipts/")
admin_api = schema.include(path_regex=r"^/admin/")
# Called by providers, authenticated by their signature (no key): fuzzed on their own.
receipts_api = schema.include(path_regex=r"^/v1/receipts/")

FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW_SETTINGS = settings(FUZZ_SETTINGS, max_examples=10)

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
OPERATIONS = [
    (method.upper(), path)
    for path, item in RAW_SCHEMA["paths"].items()
    for method in item
    if method in HTTP_METHODS
]
RECEIPT_OPERATIONS = [op for op in OPERATIONS if op[1].startswith("/v1/receipts/")]
V1_OPERATIONS = [
    op for op in OPERATIONS if op[1].startswith("/v1/") and op not in RECEIPT_OPERATIONS
]
ADMIN_OPERATIONS = [op for op in OPERATIONS if op[1].startswith("/admin/")]


def problem_details(ctx: Any, response: Response, case: OpenApiCase) -> bool | None:
    """Every error is RFC 9457 problem+json (the schema attaches no schema to
    application/problem+json, so response_schema_conformance cannot see this)."""
    if response.status_code < 400:
        return None
    media = (response.headers.get("content-type") or [""])[0]
    assert media == PROBLEM, f"{response.status_code} answered with {media!r}, not {PROBLEM}"
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    missing = {"type", "title", "status", "detail"} - body.keys()
    assert not missing, f"problem lacks {sorted(missing)}: {body}"
    assert body["status"] == response.status_code, body
    assert str(body["type"]).startswith(TYPE_PREFIX), body
    return None


CHECKS: list[Callable[..., bool | None]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    problem_details,
]
# Schema-valid data must be accepted too (ST202), for the cases the test made
# valid for rules no JSON Schema can state: which countries a tenant routes,
# which recipient a channel needs, an Idempotency-Key not used before, a
# cursor the API returned, the provider of a channel in the path.
WITH_ACCEPTANCE = [*CHECKS, positive_data_acceptance]
# A webhook URL must pass the outbound rule (https, a public host): no schema can say
# which hosts are public, so valid cases get one.
WEBHOOK_URL = "https://hooks.example.com/fuzz"
SUBMIT = ("POST", "/v1/notifications")


def _with_headers(
    headers: Mapping[str, Any] | None, **replace: str | None
) -> CaseInsensitiveDict[Any]:
    """``headers`` with some replaced or (None) removed, names compared case-insensitively
    (the schema spells them x-tenant, the tests X-Tenant); the kind of mapping a case holds."""
    names = {name.replace("_", "-").lower(): value for name, value in replace.items()}
    kept = {k: v for k, v in (headers or {}).items() if k.lower() not in names}
    kept.update({name: value for name, value in names.items() if value is not None})
    return CaseInsensitiveDict(kept)


def _choice(case: OpenApiCase) -> int:
    """A number that depends only on the generated case (reproducible, unlike hash())."""
    return zlib.crc32(repr((case.path_parameters, case.query, case.headers, case.body)).encode())


def _is_positive(case: OpenApiCase) -> bool:
    return case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE


def _left_out_header(case: OpenApiCase) -> str | None:
    """The header a coverage case leaves out on purpose (to check it is required), if any:
    the test must not put it back when it injects credentials."""
    data = case.meta.phase.data if case.meta is not None else None
    if (
        isinstance(data, CoveragePhaseData)
        and data.scenario == CoverageScenario.MISSING_PARAMETER
        and data.parameter_location == ParameterLocation.HEADER
        and data.parameter
    ):
        return data.parameter.lower()
    return None


def _inject(case: OpenApiCase, **headers: str) -> None:
    """Set headers on the case, except the one it leaves out on purpose."""
    left_out = _left_out_header(case)
    kept = {k: v for k, v in headers.items() if k.replace("_", "-").lower() != left_out}
    case.headers = _with_headers(case.headers, **kept)


@pytest.fixture(scope="module")
def real_notification(security_hub: HubProcesses) -> str:
    """A notification of the fuzz tenant, so that a GET by id has something to leak."""
    headers = {
        **security_hub.headers(FUZZ),
        "X-Country": "ES",
        "Idempotency-Key": f"auth-probe-{uuid.uuid4()}",
    }
    with httpx.Client(base_url=security_hub.base_url, timeout=10, headers=CLOSE) as c:
        resp = c.post("/v1/notifications", json=any_channel_body(), headers=headers)
    assert resp.status_code == 202, resp.text
    notification_id: str = resp.json()["id"]
    return notification_id


# -- the served schema is the one fuzzed ------------------------------------------------


def test_the_served_openapi_is_the_one_fuzzed(security_hub: HubProcesses) -> None:
    with httpx.Client(base_url=security_hub.base_url, timeout=10, headers=CLOSE) as c:
        served = c.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == RAW_SCHEMA
    assert V1_OPERATIONS, "no /v1 operation in the schema"


# -- the tenant API: valid credentials, schema-generated everything else ---------------


@tenant_api.parametrize()
@FUZZ_SETTINGS
def test_tenant_api_conforms_to_its_openapi(
    case: OpenApiCase, security_hub: HubProcesses, real_notification: str
) -> None:
    """No 5xx, documented statuses, documented content types and bodies, invalid data
    refused, valid data accepted, every error a problem; authenticated as a real tenant."""
    checks = CHECKS
    if case.path.startswith("/v1/"):
        # Auth is injected; X-Country and Idempotency-Key stay what the schema generated.
        auth = security_hub.headers(FUZZ)
        _inject(case, authorization=auth["Authorization"], x_tenant=auth["X-Tenant"])
        choice = _choice(case)
        positive = _is_positive(case) and _left_out_header(case) is None
        if choice % 2 and (case.method, case.path) == SUBMIT and positive:
            # Half the positive submissions get a routable country, a recipient that
            # fits every channel and a key of their own, so that the 202 path is
            # fuzzed too (the rest of the body, subject and metadata, stays generated).
            generated_key = {k.lower(): v for k, v in case.headers.items()}.get("idempotency-key")
            case.headers = _with_headers(
                case.headers,
                x_country=SUPPORTED[choice % len(SUPPORTED)],
                idempotency_key=f"{generated_key or ''}{uuid.uuid4()}"[-255:],
            )
            if isinstance(case.body, dict):
                case.body = {**case.body, "recipient": any_channel_body()["recipient"]}
                checks = WITH_ACCEPTANCE
        if choice % 2 and "notification_id" in (case.path_parameters or {}) and positive:
            # And half the reads name a notification that exists, so that the 200 is checked.
            case.path_parameters = {**case.path_parameters, "notification_id": real_notification}
            checks = WITH_ACCEPTANCE
        if positive and case.path.startswith("/v1/webhooks"):
            if isinstance(case.body, dict) and "url" in case.body:
                case.body = {**case.body, "url": WEBHOOK_URL}
            checks = WITH_ACCEPTANCE
        listing = case.path in {"/v1/notifications", "/v1/suppressions"}
        if choice % 2 and case.method == "GET" and listing and positive:
            # A cursor is only valid if the API returned it: half the listings send none.
            case.query = {k: v for k, v in (case.query or {}).items() if k != "cursor"}
            checks = WITH_ACCEPTANCE
    case.call_and_validate(base_url=security_hub.base_url, headers=CLOSE, checks=checks)


# -- the receipt endpoints: no key, a signature nobody but the provider can make --------


RECEIPT_CHECKS: list[Callable[..., bool | None]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    problem_details,
]


@receipts_api.parametrize()
@FUZZ_SETTINGS
def test_receipt_endpoints_refuse_what_is_not_signed(
    case: OpenApiCase, security_hub: HubProcesses
) -> None:
    """Generated requests cannot carry a provider's signature: each is refused with a
    documented problem (400, 401, 403, 413), never a 5xx, whatever the tenant."""
    if case.path_parameters and choice_is_odd(case):
        # Half name a real tenant, so that the signature check itself is reached.
        case.path_parameters = {**case.path_parameters, "tenant": FUZZ}
    response = case.call(base_url=security_hub.base_url, headers=CLOSE)
    case.validate_response(response, checks=RECEIPT_CHECKS)
    assert response.status_code in {400, 401, 403, 405, 413, 415, 422}, response.text


def choice_is_odd(case: OpenApiCase) -> bool:
    """A stable coin flip per generated case."""
    return _choice(case) % 2 == 1


# -- the admin API: the admin token, always on a tenant of its own ----------------------


@admin_api.parametrize()
@FUZZ_SETTINGS
def test_admin_api_conforms_to_its_openapi(case: OpenApiCase, security_hub: HubProcesses) -> None:
    """The same checks on /admin/v1 with the admin token. Every tenant_id is the
    dedicated tenant, so that fuzzing cannot disable or re-key the others."""
    _inject(case, authorization=f"Bearer {ADMIN_TOKEN}")
    if case.path_parameters and "tenant_id" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "tenant_id": ADMIN_TARGET}
    checks = CHECKS
    if _is_positive(case) and _left_out_header(case) is None:
        checks = WITH_ACCEPTANCE
        body = case.body if isinstance(case.body, dict) else None
        channel = (case.path_parameters or {}).get("channel")
        if (
            channel is not None
            and body is not None
            and body.get("provider") not in _serving(channel)
        ):
            # The path names the channel, the body the provider: no schema ties them.
            case.body = {**body, "provider": "sandbox"}
        if body is not None and "/webhooks" in case.path and "url" in body:
            case.body = {**body, "url": WEBHOOK_URL}
        if body is not None and case.path.endswith("/limits"):
            case.body = _ordered_backoff(body)
        if case.path.endswith("/credentials/{provider}"):
            # The settings a provider takes depend on the provider in the path.
            checks = CHECKS
        if case.method == "GET" and case.path.endswith("/suppressions"):
            # A cursor is only valid if the API returned it.
            case.query = {k: v for k, v in (case.query or {}).items() if k != "cursor"}
        if case.method == "POST" and case.path.endswith("/suppressions"):
            # An address is an email or an E.164 number by the channel in the body
            # (spacing allowed): no pattern can say which without refusing valid input.
            checks = CHECKS
    case.call_and_validate(base_url=security_hub.base_url, headers=CLOSE, checks=checks)


def _ordered_backoff(body: dict[str, Any]) -> dict[str, Any]:
    """A limits body that keeps cap >= base, also against what the tenant holds already:
    documented (x-constraints), but no schema compares two fields, let alone with state."""
    body = dict(body)

    def number(value: object) -> TypeGuard[int | float]:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if number(body.get("backoff_base_seconds")) and "backoff_cap_seconds" not in body:
        body["backoff_cap_seconds"] = 86400.0  # the largest cap: above any base
    if number(body.get("backoff_cap_seconds")) and "backoff_base_seconds" not in body:
        body["backoff_base_seconds"] = min(body["backoff_cap_seconds"], 3600.0)
    base, cap = body.get("backoff_base_seconds"), body.get("backoff_cap_seconds")
    if number(base) and number(cap) and cap < base:
        body["backoff_base_seconds"], body["backoff_cap_seconds"] = cap, base
    return body


def _serving(channel: str) -> set[str]:
    """The providers the schema's RouteBody lets a channel use."""
    route = RAW_SCHEMA["components"]["schemas"]["RouteBody"]
    return {
        provider
        for branch in route["anyOf"]
        if branch["properties"]["channel"]["const"] == channel
        for provider in branch["properties"]["provider"]["enum"]
    }


# -- auth cannot be skipped: fuzzed requests without credentials ------------------------


def _refused_without_credentials(ctx: Any, response: Response, case: OpenApiCase) -> bool | None:
    # 405: the coverage phase also sends methods the path does not serve (TRACE...).
    allowed = {400, 401, 405}
    assert response.status_code in allowed, (
        f"{case.method} {case.formatted_path} without credentials answered"
        f" {response.status_code}, expected one of {sorted(allowed)}"
    )
    return None


NO_TENANT = [None, FUZZ, BYSTANDER, "nobody"]
NO_AUTHORIZATION = [
    None,
    "",
    "Bearer",
    "Basic dXNlcjpwYXNz",
    "Bearer ihub_000000000000_forged",
]


@schema.include(path_regex=r"^/(v1|admin)/").exclude(path_regex=r"^/v1/receipts/").parametrize()
@FEW_SETTINGS
def test_no_operation_answers_without_credentials(
    case: OpenApiCase, security_hub: HubProcesses
) -> None:
    """Whatever else the request holds, no valid key (or admin token): 400 or 401."""
    choice = _choice(case)
    tenant = NO_TENANT[choice % len(NO_TENANT)]
    authorization = NO_AUTHORIZATION[(choice // len(NO_TENANT)) % len(NO_AUTHORIZATION)]
    case.headers = _with_headers(case.headers, authorization=authorization, x_tenant=tenant)
    response = case.call(base_url=security_hub.base_url, headers=CLOSE)
    case.validate_response(
        response, checks=[not_a_server_error, problem_details, _refused_without_credentials]
    )


# -- auth cannot be skipped: every operation, deterministically -------------------------


def _request_for(
    method: str, path: str, notification_id: str, endpoint_id: str = "ep_none"
) -> dict[str, Any]:
    """A request that is right in every way but its credentials."""
    filled = (
        path.replace("{notification_id}", notification_id)
        .replace("{endpoint_id}", endpoint_id)
        .replace("{delivery_id}", "dlv_" + "0" * 32)
        .replace("{tenant_id}", FUZZ)
        .replace("{country}", "ES")
        .replace("{channel}", "email")
        .replace("{provider}", "sandbox")
        .replace("{key_id}", "000000000000")
        .replace("{address}", "nobody%40example.com")
    )
    headers = {"X-Country": "ES", "Idempotency-Key": f"auth-{uuid.uuid4()}"}
    request: dict[str, Any] = {"method": method, "url": filled, "headers": headers}
    if path.endswith("/replay"):
        request["params"] = {"since": "0"}
    if method in {"POST", "PUT", "PATCH"}:
        request["json"] = any_channel_body() if path.startswith("/v1/") else {}
        if path.endswith(("/webhooks", "/{endpoint_id}")):
            request["json"] = {"url": WEBHOOK_URL}
        elif "/webhooks/" in path:
            request.pop("json")
    return request


def _fresh_endpoint(http: httpx.Client, security_hub: HubProcesses) -> str:
    """A new webhook endpoint of the fuzz tenant (making room if fuzzing filled its 50)."""
    headers = security_hub.headers(FUZZ)
    created = http.post("/v1/webhooks", json={"url": WEBHOOK_URL}, headers=headers)
    if created.status_code == 409:
        [oldest, *_] = http.get("/v1/webhooks", headers=headers).json()["items"]
        http.delete(f"/v1/webhooks/{oldest['id']}", headers=headers)
        created = http.post("/v1/webhooks", json={"url": WEBHOOK_URL}, headers=headers)
    assert created.status_code == 201, created.text
    endpoint_id: str = created.json()["id"]
    return endpoint_id


@pytest.fixture
def http(security_hub: HubProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=security_hub.base_url, timeout=10, headers=CLOSE) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), V1_OPERATIONS, ids=map(" ".join, V1_OPERATIONS))
def test_every_v1_operation_refuses_a_request_without_valid_credentials(
    method: str,
    path: str,
    http: httpx.Client,
    security_hub: HubProcesses,
    real_notification: str,
) -> None:
    endpoint_id = _fresh_endpoint(http, security_hub) if "{endpoint_id}" in path else "ep_none"
    request = _request_for(method, path, real_notification, endpoint_id)
    base = request.pop("headers")

    def send(**extra: str) -> httpx.Response:
        return http.request(**request, headers={**base, **extra})

    assert_problem(send(), 400, "X-Tenant", "bad-request")
    missing = send(**{"X-Tenant": FUZZ})
    assert_problem(missing, 401, "Authorization", "unauthenticated")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    for authorization in [
        "Bearer ihub_000000000000_forged",
        f"Basic {security_hub.keys[FUZZ]}",  # the right key, the wrong scheme
        f"Bearer {ADMIN_TOKEN}",  # the operator's token is no tenant key
        f"Bearer {security_hub.keys[FUZZ]}x",
    ]:
        wrong = send(**{"X-Tenant": FUZZ, "Authorization": authorization})
        assert_problem(wrong, 401, "Authorization", "unauthenticated")
    # Another tenant's valid key: 403 (and never the fuzz tenant's data).
    other = send(**{"X-Tenant": FUZZ, "Authorization": f"Bearer {security_hub.keys[BYSTANDER]}"})
    assert_problem(other, 403, "X-Tenant", "forbidden")
    # The control: the same request with the right credentials is not refused for auth.
    ok = send(**security_hub.headers(FUZZ))
    if "{address}" in path:
        # Lifting a suppression that is not there: past auth, to the list itself.
        assert_problem(ok, 404, "address", "not-found")
    elif "{delivery_id}" in path:
        # Retrying a delivery that is not there: past auth, to the endpoint's deliveries.
        assert_problem(ok, 404, "delivery_id", "not-found")
    else:
        assert 200 <= ok.status_code < 300, ok.text


@pytest.mark.parametrize(("method", "path"), ADMIN_OPERATIONS, ids=map(" ".join, ADMIN_OPERATIONS))
def test_every_admin_operation_refuses_a_request_without_the_admin_token(
    method: str, path: str, http: httpx.Client, security_hub: HubProcesses
) -> None:
    request = _request_for(method, path, "00000000-0000-0000-0000-000000000000")
    base = request.pop("headers")
    for extra in [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        security_hub.headers(FUZZ),  # a tenant key is no admin token
    ]:
        resp = http.request(**request, headers={**base, **extra})
        assert_problem(resp, 401, slug="unauthenticated")


# -- what the schema says against what the API does -------------------------------------


def _declared_headers(method: str, path: str) -> dict[str, dict[str, Any]]:
    operation = RAW_SCHEMA["paths"][path][method.lower()]
    return {
        p["name"].lower(): p for p in operation.get("parameters", []) if p.get("in") == "header"
    }


def test_every_error_response_documents_the_problem_schema() -> None:
    wrong = []
    for path, item in RAW_SCHEMA["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                content = response.get("content", {})
                declared = (content.get(PROBLEM) or {}).get("schema", {}).get("$ref", "")
                if not declared.endswith("/Problem") or "application/json" in content:
                    wrong.append(f"{method.upper()} {path} {status}: {sorted(content)}")
    assert not wrong, "\n".join(wrong)


def test_headers_the_api_requires_are_documented_as_required() -> None:
    undocumented = []
    for method, path in V1_OPERATIONS:
        declared = _declared_headers(method, path)
        needed = ["x-tenant", "authorization"]
        if (method, path) == SUBMIT:
            needed += ["x-country", "idempotency-key"]
        for name in needed:
            if not declared.get(name, {}).get("required"):
                undocumented.append(f"{method} {path}: {name}")
    assert not undocumented, undocumented


def test_the_header_rules_the_api_enforces_are_documented_as_patterns() -> None:
    for method, path in V1_OPERATIONS:
        declared = _declared_headers(method, path)
        assert declared["x-tenant"]["schema"]["pattern"] == TENANT_ID.pattern
        if (method, path) == SUBMIT:
            assert declared["x-country"]["schema"]["pattern"] == "^[A-Za-z]{2}$"
            assert declared["idempotency-key"]["schema"]["pattern"] == "^[\\x20-\\x7e]{1,255}$"


def test_the_recipient_and_text_rules_are_documented_as_patterns() -> None:
    schemas = RAW_SCHEMA["components"]["schemas"]
    recipient = schemas["Recipient"]["properties"]
    [email, _] = recipient["email"]["anyOf"]
    [phone, _] = recipient["phone"]["anyOf"]
    assert email["pattern"] == EMAIL_PATTERN
    assert phone["pattern"] == E164_PATTERN
    request = schemas["NotificationRequest"]["properties"]
    assert request["body"]["pattern"] == BODY_PATTERN
    metadata, _ = request["metadata"]["anyOf"]
    assert metadata["propertyNames"]["pattern"] == ONE_LINE_PATTERN
    assert metadata["additionalProperties"] == {"$ref": "#/components/schemas/MetadataValue"}
    strings = [v for v in schemas["MetadataValue"]["anyOf"] if v.get("type") == "string"]
    assert strings == [{"type": "string", "pattern": TEXT_PATTERN}]


def test_the_admin_rules_are_documented() -> None:
    paths, schemas = RAW_SCHEMA["paths"], RAW_SCHEMA["components"]["schemas"]
    create = paths["/admin/v1/tenants"]["post"]
    assert "409" in create["responses"], "tenant-exists is undocumented"
    assert schemas["NewTenantBody"]["properties"]["tenant"]["pattern"] == TENANT_ID.pattern
    route = paths["/admin/v1/tenants/{tenant_id}/routes/{country}"]["put"]
    country = next(p for p in route["parameters"] if p["name"] == "country")
    assert country["schema"]["pattern"] == "^[A-Za-z]{2}$"
    providers = sorted(["sandbox", *registry.KINDS])
    assert {"vonage", "sns", "twilio_whatsapp"} <= set(providers)
    assert schemas["ProviderBody"]["properties"]["provider"]["enum"] == providers
    assert schemas["RouteBody"]["properties"]["provider"]["enum"] == providers
    assert _serving("sms") == {"sandbox", "twilio", "vonage", "sns"}
    credentials = paths["/admin/v1/tenants/{tenant_id}/credentials/{provider}"]["put"]
    provider = next(p for p in credentials["parameters"] if p["name"] == "provider")
    assert provider["schema"]["enum"] == providers[1:]
    limits = schemas["TenantLimits"]
    assert limits["x-constraints"] == ["backoff_cap_seconds >= backoff_base_seconds"]
    assert "backoff_base_seconds" in limits["properties"]["backoff_cap_seconds"]["description"]


def test_authentication_is_documented_as_a_security_scheme() -> None:
    schemes = RAW_SCHEMA.get("components", {}).get("securitySchemes", {})
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values()), schemes
    for method, path in V1_OPERATIONS + ADMIN_OPERATIONS:
        operation = RAW_SCHEMA["paths"][path][method.lower()]
        assert operation.get("security") or RAW_SCHEMA.get("security"), f"{method} {path}"


ADMIN_BODY_OPERATIONS = [
    (method, path)
    for method, path in ADMIN_OPERATIONS
    if "requestBody" in RAW_SCHEMA["paths"][path][method.lower()]
]


def test_admin_operations_with_a_body_document_400(http: httpx.Client) -> None:
    if not ADMIN_BODY_OPERATIONS:
        pytest.skip("no admin operation takes a body")
    undocumented = []
    for method, path in ADMIN_BODY_OPERATIONS:
        request = _request_for(method, path, "00000000-0000-0000-0000-000000000000")
        request.pop("json", None)
        request["headers"] = {
            **request["headers"],
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/json",
        }
        resp = http.request(**request, content=b"{not json")
        assert_problem(resp, 400, "body", "malformed-json")
        if "400" not in RAW_SCHEMA["paths"][path][method.lower()]["responses"]:
            undocumented.append(f"{method} {path}")
    assert not undocumented, f"answer 400 without documenting it: {undocumented}"


def test_405_allow_lists_every_method_of_the_path(
    http: httpx.Client, security_hub: HubProcesses
) -> None:
    documented: dict[str, set[str]] = {}
    for method, path in OPERATIONS:
        documented.setdefault(path, set()).add(method)
    problems = []
    for path, methods in documented.items():
        url = (
            path.replace("{notification_id}", "x")
            .replace("{tenant_id}", ADMIN_TARGET)
            .replace("{country}", "ES")
            .replace("{channel}", "email")
            .replace("{provider}", "sandbox")
            .replace("{key_id}", "x")
        )
        unsupported = next(m for m in ["DELETE", "PATCH", "PUT", "POST"] if m not in methods)
        resp = http.request(unsupported, url, headers=security_hub.headers(FUZZ))
        assert_problem(resp, 405, slug="method-not-allowed")
        allow = {m.strip() for m in resp.headers.get("allow", "").split(",") if m.strip()}
        if not methods <= allow:
            problems.append(f"{unsupported} {path}: Allow {sorted(allow)} / {sorted(methods)}")
    assert not problems, problems
