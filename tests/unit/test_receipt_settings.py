"""The receipt settings: IHUB_PUBLIC_URL's rules, the timeout, the keyword lists and the
SNS test trust, which is off unless set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from integration_hub.bootstrap import receipt_policy, sns_verifier
from integration_hub.config import Settings


def _settings(**values: object) -> Settings:
    return Settings(database_url="sqlite:///:memory:", **values)  # type: ignore[arg-type]


def test_the_public_url_is_unset_by_default_and_loses_its_trailing_slash() -> None:
    assert _settings().public_url is None
    assert _settings(public_url="https://hub.example.com/ihub/").public_url == (
        "https://hub.example.com/ihub"
    )
    assert _settings(public_url="http://127.0.0.1:8000").public_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hub.example.com",
        "hub.example.com",
        "https://",
        "https://hub.example.com/?a=1",
        "https://hub.example.com/#top",
        "https://user:pw@hub.example.com",
    ],
)
def test_a_public_url_that_providers_could_not_sign_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="IHUB_PUBLIC_URL"):
        _settings(public_url=url)


def test_the_timeout_and_keywords_have_their_defaults_and_feed_the_policy() -> None:
    policy = receipt_policy(_settings())
    assert policy.timeout == timedelta(hours=72)
    assert policy.opt_out == ("STOP", "UNSUBSCRIBE", "ARRET", "BAJA")
    assert policy.opt_in == ("START", "UNSTOP")
    custom = receipt_policy(
        _settings(receipt_timeout_hours=1.5, opt_out_keywords=" PARA, stop ,", opt_in_keywords="GO")
    )
    assert custom.timeout == timedelta(hours=1.5)
    assert custom.opt_out == ("PARA", "stop")
    assert custom.opt_in == ("GO",)


@pytest.mark.parametrize(
    "values",
    [
        {"receipt_timeout_hours": 0},
        {"opt_out_keywords": " , "},
        {"sns_test_connect_to": "localhost"},
        {"sns_test_connect_to": "127.0.0.1:99999"},
    ],
)
def test_invalid_receipt_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _settings(**values)


def test_the_sns_verifier_trusts_the_system_unless_the_test_settings_say_otherwise() -> None:
    production = sns_verifier(_settings())
    assert production.fetch.ca_file is None
    assert production.fetch.connect_to is None
    testing = sns_verifier(
        _settings(sns_test_ca_file="ca.pem", sns_test_connect_to="127.0.0.1:8443")
    )
    assert testing.fetch.ca_file == "ca.pem"
    assert testing.fetch.connect_to == ("127.0.0.1", 8443)
