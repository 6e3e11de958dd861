"""The label-cardinality guard: tenant ids, providers and error classes stay bounded."""

from __future__ import annotations

import pytest

from integration_hub.adapters.metrics.labels import OTHER, BoundedLabel, TenantLabelPolicy
from integration_hub.config import Settings


def test_on_keeps_every_tenant_id() -> None:
    guard = TenantLabelPolicy.parse("on").guard()
    assert [guard(f"t{i}") for i in range(500)] == [f"t{i}" for i in range(500)]


def test_off_puts_every_tenant_in_one_series() -> None:
    guard = TenantLabelPolicy.parse("OFF").guard()
    assert {guard("acme"), guard("globex")} == {"all"}


def test_top_n_keeps_the_first_n_tenants_and_folds_the_rest_into_other() -> None:
    guard = TenantLabelPolicy.parse("top:2").guard()
    assert [guard(t) for t in ("acme", "globex", "initech", "acme", "umbrella", "globex")] == [
        "acme",
        "globex",
        OTHER,
        "acme",
        OTHER,
        "globex",
    ]


def test_an_admitted_tenant_never_moves_to_other_later() -> None:
    # A series that changed label mid-way would break rate(): first seen stays.
    guard = TenantLabelPolicy.parse("top:1").guard()
    assert guard("acme") == "acme"
    for i in range(100):
        guard(f"noisy{i}")
    assert guard("acme") == "acme"


@pytest.mark.parametrize("text", ["", "top", "top:0", "top:-1", "top:x", "maybe", "on:3"])
def test_a_malformed_policy_is_refused_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="on, off or top:N"):
        TenantLabelPolicy.parse(text)


@pytest.mark.parametrize("text", ["top:0", "sometimes", "top:"])
def test_settings_refuse_a_malformed_tenant_label_setting(text: str) -> None:
    with pytest.raises(ValueError, match="metrics_tenant_label"):
        Settings(metrics_tenant_label=text)


def test_settings_accept_the_three_forms() -> None:
    for text in ("on", "off", "top:25", "TOP:3"):
        assert Settings(metrics_tenant_label=text).metrics_tenant_label == text


def test_a_bounded_label_admits_a_limited_number_of_values() -> None:
    guard = BoundedLabel(3)
    seen = {guard(f"error_{i}") for i in range(1000)}
    assert seen == {"error_0", "error_1", "error_2", OTHER}


@pytest.mark.parametrize(
    "value",
    [
        "ana@example.com",  # an address must never become a label
        "+52 155 1234 5678",
        "sandbox_<script>",
        "x" * 65,
        "with space",
        "new\nline",
    ],
)
def test_values_that_look_like_data_become_other(value: str) -> None:
    assert BoundedLabel(None)(value) == OTHER
    assert TenantLabelPolicy.parse("on").guard()(value) == OTHER


def test_a_missing_value_is_labelled_none() -> None:
    assert BoundedLabel(5)(None) == "none"
    assert BoundedLabel(5)("") == "none"
