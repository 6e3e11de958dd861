"""Country normalisation and tenant + country routing."""

from __future__ import annotations

import dataclasses

import pytest

from integration_hub.domain.errors import HubError, UnsupportedCountry
from integration_hub.domain.routing import Channel, Route, normalize_country, resolve, routing_table

DEFAULTS = {
    "ES": Channel.EMAIL,
    "FR": Channel.EMAIL,
    "IT": Channel.EMAIL,
    "GR": Channel.EMAIL,
    "MX": Channel.WHATSAPP,
    "AR": Channel.WHATSAPP,
    "CO": Channel.WHATSAPP,
    "US": Channel.SMS,
    "CA": Channel.SMS,
    "GB": Channel.SMS,
}
SORTED_DEFAULTS = ["AR", "CA", "CO", "ES", "FR", "GB", "GR", "IT", "MX", "US"]


# --- default table ---------------------------------------------------------


@pytest.mark.parametrize(("country", "channel"), sorted(DEFAULTS.items()))
def test_the_default_table_routes_each_country_of_the_brief_to_its_channel(
    country: str, channel: Channel
) -> None:
    assert resolve(country).channel is channel


@pytest.mark.parametrize("country", sorted(DEFAULTS))
def test_default_routes_use_the_sandbox_provider(country: str) -> None:
    assert resolve(country).provider == "sandbox"


def test_the_default_table_has_exactly_the_countries_of_the_brief() -> None:
    table = routing_table()
    assert {country: route.channel for country, route in table.items()} == DEFAULTS


def test_no_overrides_and_empty_overrides_give_the_default_table() -> None:
    assert routing_table(None) == routing_table({}) == routing_table()


def test_a_route_defaults_its_provider_to_sandbox() -> None:
    assert Route(Channel.SMS).provider == "sandbox"
    assert Route(Channel.SMS, "twilio").provider == "twilio"


def test_a_route_is_immutable() -> None:
    route = Route(Channel.EMAIL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.provider = "ses"  # type: ignore[misc]


# --- normalize_country -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ES", "ES"),
        ("es", "ES"),
        ("Es", "ES"),
        ("eS", "ES"),
        (" fr ", "FR"),
        ("\tmx\n", "MX"),
        ("  us", "US"),
    ],
)
def test_normalize_country_is_case_insensitive_and_strips_whitespace(
    raw: str, expected: str
) -> None:
    assert normalize_country(raw) == expected


@pytest.mark.parametrize("raw", ["UK", "uk", "Uk", " uk "])
def test_uk_is_an_alias_of_gb(raw: str) -> None:
    assert normalize_country(raw) == "GB"


def test_uk_routes_like_gb() -> None:
    assert resolve(normalize_country("uk")) == resolve("GB")


def test_a_well_formed_code_outside_the_table_is_still_normalised() -> None:
    # Syntax and support are separate checks: JP is a valid code, just not routed.
    assert normalize_country("jp") == "JP"


@pytest.mark.parametrize("raw", ["ESP", "1A", "", "é", "E", "  ", "E S", "E-", "12"])
def test_malformed_country_codes_are_refused_on_the_x_country_header(raw: str) -> None:
    with pytest.raises(HubError) as caught:
        normalize_country(raw)
    assert caught.value.field == "X-Country"
    assert not isinstance(caught.value, UnsupportedCountry)


def test_the_malformed_country_message_quotes_the_input() -> None:
    with pytest.raises(HubError, match="ESP"):
        normalize_country("ESP")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            "ß",
        ),
        pytest.param(
            "ıt",
        ),
        pytest.param(
            "ﬁ",
        ),
    ],
)
def test_non_ascii_input_is_refused_even_when_it_upper_cases_to_two_ascii_letters(
    raw: str,
) -> None:
    with pytest.raises(HubError) as caught:
        normalize_country(raw)
    assert caught.value.field == "X-Country"


# --- unsupported countries -------------------------------------------------


def test_an_unsupported_country_raises_unsupported_country_listing_the_supported_ones() -> None:
    with pytest.raises(UnsupportedCountry) as caught:
        resolve("JP")
    error = caught.value
    assert error.country == "JP"
    assert error.supported == SORTED_DEFAULTS
    assert error.field == "X-Country"
    assert "JP" in error.message
    assert ", ".join(SORTED_DEFAULTS) in error.message


def test_the_supported_countries_include_the_tenants_overrides_in_sorted_order() -> None:
    overrides = {"BR": Route(Channel.WHATSAPP, "twilio"), "DE": Route(Channel.EMAIL)}
    with pytest.raises(UnsupportedCountry) as caught:
        resolve("JP", overrides)
    assert caught.value.supported == sorted([*SORTED_DEFAULTS, "BR", "DE"])


def test_an_overridden_default_is_listed_once() -> None:
    with pytest.raises(UnsupportedCountry) as caught:
        resolve("JP", {"ES": Route(Channel.SMS)})
    assert caught.value.supported == SORTED_DEFAULTS


def test_resolve_expects_a_normalised_code() -> None:
    # Lower-case input must go through normalize_country first.
    with pytest.raises(UnsupportedCountry):
        resolve("es")


# --- tenant overrides ------------------------------------------------------


def test_an_override_replaces_a_default_route() -> None:
    overrides = {"ES": Route(Channel.SMS, "twilio")}
    assert resolve("ES", overrides) == Route(Channel.SMS, "twilio")


def test_an_override_leaves_the_other_defaults_alone() -> None:
    overrides = {"ES": Route(Channel.SMS, "twilio")}
    assert resolve("FR", overrides) == Route(Channel.EMAIL, "sandbox")
    assert resolve("US", overrides) == Route(Channel.SMS, "sandbox")


def test_an_override_can_change_only_the_provider() -> None:
    assert resolve("GB", {"GB": Route(Channel.SMS, "twilio")}).provider == "twilio"


def test_an_override_adds_a_new_country() -> None:
    overrides = {"BR": Route(Channel.WHATSAPP, "meta")}
    assert resolve("BR", overrides) == Route(Channel.WHATSAPP, "meta")


def test_one_tenants_overrides_do_not_leak_into_the_defaults() -> None:
    resolve("ES", {"ES": Route(Channel.SMS, "twilio")})
    resolve("BR", {"BR": Route(Channel.WHATSAPP)})
    assert resolve("ES") == Route(Channel.EMAIL, "sandbox")
    with pytest.raises(UnsupportedCountry):
        resolve("BR")


def test_routing_table_merges_overrides_over_defaults() -> None:
    table = routing_table({"ES": Route(Channel.SMS, "twilio"), "BR": Route(Channel.WHATSAPP)})
    assert table["ES"] == Route(Channel.SMS, "twilio")
    assert table["BR"] == Route(Channel.WHATSAPP)
    assert table["FR"] == Route(Channel.EMAIL)
    assert len(table) == len(DEFAULTS) + 1
