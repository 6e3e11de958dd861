"""The outbound rule (domain/outbound.py): which URLs, hosts and addresses are refused."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from integration_hub.config import Settings
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused

STRICT = OutboundPolicy()
DEV = OutboundPolicy(allow_http=True)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://169.254.169.254/latest/meta-data", "scheme"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://127.0.0.1:8000/admin/v1", "loopback"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme"),
        ("not a url", "url"),
        ("https://[::1]:5432/", "loopback"),
        ("https://2130706433/", "loopback"),  # decimal 127.0.0.1
        ("https://0177.0.0.1/", "loopback"),  # octal
        ("https://0x7f.0.0.1/", "loopback"),  # hex
        ("https://127.1/", "loopback"),  # short form
        ("https://[::ffff:127.0.0.1]/", "loopback (embedded in an IPv6 address)"),
        ("https://[::ffff:169.254.169.254]/", "link-local (embedded in an IPv6 address)"),
        ("https://[64:ff9b::a9fe:a9fe]/", "link-local (embedded in an IPv6 address)"),  # NAT64
        ("https://[fd00:ec2::254]/", "private"),  # the AWS metadata service over IPv6
        ("https://[fe80::1%25eth0]/", "link-local"),  # with a zone id
        ("https://0.0.0.0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://10.0.0.5/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://172.16.0.1/", "private"),
        ("https://100.64.0.1/", "not globally routable"),  # shared address space (CGNAT)
        ("https://224.0.0.1/", "multicast"),
        ("https://240.0.0.1/", "reserved"),
        ("https://localhost:8000/", "loopback"),
        ("https://api.localhost/", "loopback"),
        ("https://user:secret@api.twilio.com/", "userinfo"),
        ("https://@api.twilio.com/", "userinfo"),
        ("https:///no-host", "host"),
        ("https://256.1.1.1/", "host"),
        ("https://-bad-.example.com/", "host"),
        ("https://api.twilio.com:99999/", "url"),
        ("https://api.twilio.com/\r\nX-Injected: 1", "url"),
    ],
)
def test_a_refused_url_is_refused_with_its_rule(url: str, rule: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        STRICT.check_url(url)
    assert refused.value.rule == rule


@pytest.mark.parametrize(
    "url",
    [
        "https://api.twilio.com",
        "https://graph.facebook.com/",
        "https://email.eu-west-1.amazonaws.com",
        "https://api.example.com:8443/base",
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]/",
    ],
)
def test_a_public_https_url_passes(url: str) -> None:
    assert STRICT.check_url(url).scheme == "https"


def test_plain_http_needs_the_development_setting() -> None:
    with pytest.raises(OutboundRefused, match="IHUB_PROVIDER_ALLOW_HTTP"):
        STRICT.check_url("http://api.example.com/")
    assert DEV.check_url("http://api.example.com/").port == 80
    # http is a development aid, not a way around the address rule.
    with pytest.raises(OutboundRefused, match="loopback"):
        DEV.check_url("http://127.0.0.1:8000/")


def test_allowed_networks_exempt_their_addresses_and_only_those() -> None:
    policy = OutboundPolicy.of(["127.0.0.0/8", "10.1.0.0/16"], allow_http=True)
    assert policy.check_url("http://127.0.0.1:9000/").address == ipaddress.ip_address("127.0.0.1")
    assert policy.check_url("http://2130706433/").host == "127.0.0.1"
    assert policy.check_url("https://[::ffff:127.0.0.1]/").address is not None
    policy.check_address("10.1.2.3", "smtp.internal")
    with pytest.raises(OutboundRefused, match=r"10\.2\.0\.1 of smtp\.internal is private"):
        policy.check_address("10.2.0.1", "smtp.internal")
    with pytest.raises(OutboundRefused, match="link-local"):
        policy.check_url("http://169.254.169.254/")


def test_a_resolved_address_is_named_with_its_host_and_the_setting() -> None:
    with pytest.raises(OutboundRefused) as refused:
        STRICT.check_address("127.0.0.1", "api.example.com")
    assert refused.value.message == (
        "address 127.0.0.1 of api.example.com is loopback;"
        " refused by the outbound rule (IHUB_PROVIDER_ALLOWED_NETWORKS)"
    )


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("smtp example com", "host"),
        ("", "host"),
    ],
)
def test_a_refused_host_is_refused(host: str, rule: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        STRICT.check_host(host)
    assert refused.value.rule == rule


def test_a_host_name_passes_as_a_name() -> None:
    assert STRICT.check_host("smtp.Example.com") == ("smtp.example.com", None)


def test_allowed_networks_must_be_networks_at_startup() -> None:
    with pytest.raises(ValidationError, match="not a network in CIDR form"):
        Settings(provider_allowed_networks="127.0.0.0/8,not-a-network")
    settings = Settings(provider_allowed_networks=" 127.0.0.0/8 , ::1/128 ")
    assert settings.provider_allowed_networks
