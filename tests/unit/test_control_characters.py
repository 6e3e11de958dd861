"""Control characters are refused where they would fail or mislead later (issue 13.2).

NUL cannot be stored by PostgreSQL; ESC and CSI (U+009B) repaint the terminal
of whoever reads a message or a log; NEL (U+0085) and DEL are controls too.
Body text and metadata string values may still break lines and indent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from integration_hub.domain.models import STORED, NotificationRequest
from integration_hub.entrypoints.api.problems import from_validation_error

CONTROLS = {
    "NUL": "\x00",
    "BEL": "\x07",
    "ESC": "\x1b",
    "US": "\x1f",
    "DEL": "\x7f",
    "NEL": "\x85",
    "CSI": "\x9b",
}
LINE_CONTROLS = {"TAB": "\t", "LF": "\n", "CR": "\r"}


def request(**changes: Any) -> dict[str, Any]:
    """A valid request body, with ``changes`` applied."""
    body: dict[str, Any] = {
        "recipient": {"email": "ana@example.com", "phone": "+34600111222"},
        "subject": "Hello",
        "body": "hello",
        "metadata": {"order": {"note": "fine", "lines": ["one"]}},
    }
    body.update(changes)
    return body


def with_char(where: str, char: str) -> dict[str, Any]:
    """A request with ``char`` inside the field ``where``."""
    if where == "recipient.email":
        return request(recipient={"email": f"a{char}[31m@example.com"})
    if where == "recipient.phone":
        return request(recipient={"phone": f"+3460{char}0111222"})
    if where == "subject":
        return request(subject=f"Hel{char}lo")
    if where == "body":
        return request(body=f"hel{char}lo")
    if where == "metadata.order.note":
        return request(metadata={"order": {"note": f"x{char}y"}})
    if where == "metadata.order.lines.1":
        return request(metadata={"order": {"lines": ["ok", f"x{char}y"]}})
    if where == "metadata.order":  # a key inside metadata.order
        return request(metadata={"order": {f"no{char}te": "x"}})
    raise AssertionError(where)


FIELDS = [
    "recipient.email",
    "recipient.phone",
    "subject",
    "body",
    "metadata.order.note",
    "metadata.order.lines.1",
    "metadata.order",
]
ONE_LINE_FIELDS = ["recipient.email", "recipient.phone", "subject", "metadata.order"]


def problem_field(body: dict[str, Any]) -> tuple[str, str]:
    """The field and message the API's 422 names for ``body``."""
    with pytest.raises(ValidationError) as caught:
        NotificationRequest.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]
    response = from_validation_error(RequestValidationError(errors))
    assert response.status_code == 422
    problem = json.loads(bytes(response.body))
    return problem["field"], problem["detail"]


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize("where", FIELDS)
def test_a_control_character_is_refused_naming_the_exact_field(where: str, char: str) -> None:
    field, detail = problem_field(with_char(where, char))
    assert field == where
    assert f"U+{ord(char):04X}" in detail
    assert char not in detail  # named, never echoed


@pytest.mark.parametrize("char", LINE_CONTROLS.values(), ids=LINE_CONTROLS.keys())
@pytest.mark.parametrize("where", ONE_LINE_FIELDS)
def test_line_breaks_and_tabs_are_refused_inside_one_line_values(where: str, char: str) -> None:
    field, _ = problem_field(with_char(where, char))
    assert field == where


@pytest.mark.parametrize("char", LINE_CONTROLS.values(), ids=LINE_CONTROLS.keys())
@pytest.mark.parametrize("where", ["body", "metadata.order.note", "metadata.order.lines.1"])
def test_tab_lf_and_cr_are_still_accepted_in_free_text(where: str, char: str) -> None:
    NotificationRequest.model_validate(with_char(where, char))


def test_a_multi_line_body_is_kept_as_sent() -> None:
    body = "Dear Ana,\r\n\tyour order shipped.\n\nBye"
    assert NotificationRequest.model_validate(request(body=body)).body == body


def test_surrounding_line_ends_of_an_address_are_stripped_not_refused() -> None:
    parsed = NotificationRequest.model_validate(
        request(recipient={"email": " ana@example.com\r\n", "phone": "\t+34600111222\n"})
    )
    assert parsed.recipient.email == "ana@example.com"
    assert parsed.recipient.phone == "+34600111222"


def test_a_request_stored_before_these_rules_still_loads() -> None:
    # Accepted by an older version: readable, listable and dispatchable still.
    raw = NotificationRequest.model_validate(
        request(body="a\x00b", recipient={"email": "a\x1b@example.com"}), context=STORED
    ).model_dump_json()
    loaded = NotificationRequest.model_validate_json(raw, context=STORED)
    assert loaded.body == "a\x00b"
    assert loaded.recipient.email == "a\x1b@example.com"


@given(st.text(min_size=1, max_size=40))
def test_a_body_is_accepted_exactly_when_it_has_no_forbidden_control(text: str) -> None:
    # An independent statement of the rule, not the model's own regex.
    forbidden = any((ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) and c not in "\t\n\r" for c in text)
    refused = forbidden or not text.strip()
    accepted = True
    try:
        NotificationRequest.model_validate(request(body=text))
    except ValidationError:
        accepted = False
    assert accepted is not refused


@given(st.text(max_size=20))
def test_a_metadata_key_is_accepted_exactly_when_it_has_no_control(key: str) -> None:
    has_control = any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key)
    try:
        NotificationRequest.model_validate(request(metadata={"a": {key: 1}}))
    except ValidationError:
        assert has_control
    else:
        assert not has_control
