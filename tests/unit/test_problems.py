"""Domain errors as RFC 9457 problem+json responses."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from integration_hub.domain import errors
from integration_hub.entrypoints.api.problems import from_hub_error, install

PREFIX = "urn:integration-hub:problem:"


def _body(response: JSONResponse) -> dict[str, Any]:
    body = json.loads(bytes(response.body))
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        pytest.param(errors.Unauthenticated(), 401, "unauthenticated", id="Unauthenticated"),
        pytest.param(errors.Forbidden(), 403, "forbidden", id="Forbidden"),
        pytest.param(errors.NotFound(), 404, "not-found", id="NotFound"),
        pytest.param(
            errors.UnsupportedCountry("JP", ["ES"]),
            422,
            "unsupported-country",
            id="UnsupportedCountry",
        ),
        pytest.param(errors.InvalidRecipient(), 422, "invalid-recipient", id="InvalidRecipient"),
        pytest.param(
            errors.IdempotencyConflict(), 422, "idempotency-key-reused", id="IdempotencyConflict"
        ),
        pytest.param(
            errors.IdempotencyInProgress(),
            409,
            "idempotency-in-progress",
            id="IdempotencyInProgress",
        ),
        pytest.param(errors.TenantExists(), 409, "tenant-exists", id="TenantExists"),
        pytest.param(errors.Unavailable(), 503, "unavailable", id="Unavailable"),
        pytest.param(errors.DataRejected(), 422, "data-rejected", id="DataRejected"),
        pytest.param(
            errors.Suppressed("sms", "opted_out", field="recipient.phone"),
            422,
            "suppressed",
            id="Suppressed",
        ),
        pytest.param(errors.LiftForbidden("operator"), 403, "forbidden", id="LiftForbidden"),
        pytest.param(errors.HubError("bad value"), 422, "invalid-field", id="HubError"),
    ],
)
def test_each_domain_error_maps_to_its_status_and_problem_type(
    error: errors.HubError, status: int, slug: str
) -> None:
    response = from_hub_error(error)
    body = _body(response)
    assert response.status_code == status
    assert body["status"] == status
    assert body["type"] == PREFIX + slug


def test_the_media_type_is_problem_json() -> None:
    response = from_hub_error(errors.NotFound())
    assert response.media_type == "application/problem+json"
    assert response.headers["content-type"].startswith("application/problem+json")


def test_the_body_has_type_title_status_and_detail() -> None:
    body = _body(from_hub_error(errors.NotFound("no notification n1 for this tenant")))
    assert body == {
        "type": PREFIX + "not-found",
        "title": "Not found",
        "status": 404,
        "detail": "no notification n1 for this tenant",
    }


def test_the_detail_defaults_to_the_errors_own_message() -> None:
    assert _body(from_hub_error(errors.NotFound()))["detail"] == "No such resource."


def test_the_field_is_included_when_the_error_names_one() -> None:
    body = _body(from_hub_error(errors.InvalidRecipient("need a phone", field="recipient.phone")))
    assert body["field"] == "recipient.phone"
    assert body["detail"] == "need a phone"


def test_the_field_is_left_out_when_the_error_names_none() -> None:
    assert "field" not in _body(from_hub_error(errors.Forbidden()))


def test_a_plain_hub_error_is_an_invalid_field_422_naming_the_field() -> None:
    response = from_hub_error(errors.HubError("'ESP' is not a country", field="X-Country"))
    body = _body(response)
    assert response.status_code == 422
    assert body["field"] == "X-Country"
    assert body["detail"] == "'ESP' is not a country"


def test_unauthenticated_asks_for_a_bearer_token() -> None:
    response = from_hub_error(errors.Unauthenticated())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "error",
    [errors.Forbidden(), errors.NotFound(), errors.HubError()],
    ids=["Forbidden", "NotFound", "HubError"],
)
def test_other_errors_do_not_ask_for_authentication(error: errors.HubError) -> None:
    assert "WWW-Authenticate" not in from_hub_error(error).headers


def test_unsupported_country_lists_the_supported_countries_in_the_body() -> None:
    response = from_hub_error(errors.UnsupportedCountry("JP", ["US", "ES", "BR"]))
    body = _body(response)
    assert response.status_code == 422
    assert body["supported_countries"] == ["BR", "ES", "US"]
    assert body["field"] == "X-Country"
    assert "JP" in body["detail"]


def test_other_errors_have_no_supported_countries() -> None:
    assert "supported_countries" not in _body(from_hub_error(errors.InvalidRecipient()))


def test_idempotency_in_progress_is_a_409_with_retry_after() -> None:
    response = from_hub_error(errors.IdempotencyInProgress(retry_after=3))
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "3"


def test_unavailable_is_a_503_with_retry_after() -> None:
    response = from_hub_error(errors.Unavailable("database is down", retry_after=10))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert _body(response)["detail"] == "database is down"


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (2.6, "3"), (30.0, "30")]
)
def test_retry_after_is_a_whole_number_of_seconds_and_at_least_one(
    seconds: float, header: str
) -> None:
    assert from_hub_error(errors.Unavailable(retry_after=seconds)).headers["Retry-After"] == header


@pytest.mark.parametrize(
    "error",
    [errors.NotFound(), errors.IdempotencyConflict(), errors.Unauthenticated()],
    ids=["NotFound", "IdempotencyConflict", "Unauthenticated"],
)
def test_errors_without_a_retry_hint_have_no_retry_after(error: errors.HubError) -> None:
    assert "Retry-After" not in from_hub_error(error).headers


def _app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


async def test_an_invariant_breach_is_a_generic_500_never_a_409(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breach = errors.InvalidTransition("cannot move a notification from DONE to RECEIVED")
    transport = httpx.ASGITransport(app=_app_raising(breach))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        with caplog.at_level(logging.ERROR, logger="integration_hub.entrypoints.api.problems"):
            response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json() == {
        "type": PREFIX + "internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "an unexpected error occurred; it has been logged",
    }
    assert "DONE" not in response.text
    [record] = [r for r in caplog.records if "invariant breach" in r.getMessage()]
    assert "invalid_transition" in record.getMessage()
    assert "/boom" in record.getMessage()


def test_an_invariant_breach_is_not_a_hub_error_so_no_client_error_handler_catches_it() -> None:
    assert not issubclass(errors.InvalidTransition, errors.HubError)
    assert issubclass(errors.InvalidTransition, errors.InvariantBreach)
    assert errors.InvalidTransition.kind in errors.breach_kinds()


def test_suppressed_names_channel_reason_and_field() -> None:
    body = _body(from_hub_error(errors.Suppressed("email", "hard_bounce", field="recipient.email")))
    assert (body["channel"], body["reason"], body["field"]) == (
        "email",
        "hard_bounce",
        "recipient.email",
    )


def test_a_forbidden_lift_names_the_reason() -> None:
    body = _body(from_hub_error(errors.LiftForbidden("operator")))
    assert body["reason"] == "operator"
    assert body["field"] == "address"
