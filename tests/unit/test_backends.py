"""The backend registry: one object per database URL scheme, and nobody else
reading a scheme or testing an adapter's type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from integration_hub.adapters import backends
from integration_hub.adapters.aws.backend import DynamoKind
from integration_hub.adapters.postgres.backend import PostgresKind
from integration_hub.adapters.sqlite.backend import SqliteKind
from integration_hub.config import ConfigurationError

SRC = Path(backends.__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///hub.db", SqliteKind),
        ("SQLite:////var/lib/hub.db", SqliteKind),
        ("postgresql://ihub@db:5432/ihub", PostgresKind),
        ("postgres://ihub@db/ihub", PostgresKind),
        ("dynamodb://hub?queue=notifications", DynamoKind),
    ],
)
def test_every_scheme_names_its_backend(url: str, kind: type) -> None:
    assert isinstance(backends.kind_of(url), kind)


@pytest.mark.parametrize("url", ["mysql://x/y", "ihub.db", "", "redis://localhost"])
def test_an_unknown_scheme_is_refused_with_the_three_forms_that_work(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        backends.kind_of(url)
    message = str(refused.value)
    assert message.startswith("unsupported IHUB_DATABASE_URL scheme")
    for form in ("sqlite:///", "postgresql://", "dynamodb://"):
        assert form in message


def test_only_the_embedded_backend_lives_in_a_local_file() -> None:
    assert backends.kind_of("sqlite:///data/hub.db").local_file() == Path("data/hub.db")
    assert backends.kind_of("sqlite:////srv/hub.db").local_file() == Path("/srv/hub.db")
    assert backends.kind_of("postgresql://db/ihub").local_file() is None
    assert backends.kind_of("dynamodb://hub?queue=q").local_file() is None


@pytest.mark.parametrize(
    "url", ["sqlite://hub.db", "sqlite:/hub.db", "dynamodb://hub", "dynamodb://?queue=q"]
)
def test_each_backend_validates_its_own_url(url: str) -> None:
    with pytest.raises(ConfigurationError):
        backends.kind_of(url)


def test_the_dynamodb_url_carries_queue_region_and_endpoint() -> None:
    kind = backends.kind_of("dynamodb://hub?queue=q&region=eu-west-1&endpoint=http://127.0.0.1:1")
    assert isinstance(kind, DynamoKind)
    assert (kind.prefix, kind.queue, kind.region, kind.endpoint) == (
        "hub",
        "q",
        "eu-west-1",
        "http://127.0.0.1:1",
    )


# What reading a scheme or testing an adapter's type looks like in this code base.
_SCHEME_CHECK = re.compile(
    r"""startswith\(\s*["'](sqlite|postgres|dynamodb)"""
    r"""|scheme\s*(==|in)\s*[\("'{]"""
    r"""|split\(\s*":",\s*1\s*\)\[0\]"""
    r"""|isinstance\([^)]*,\s*\w*(Store|Queue|Database|Backend)\b"""
)
# The registry reads schemes; the sqlite URL parser reads its own prefix; the
# outbound rule reads provider URLs (http/https), not database URLs.
_ALLOWED = {"adapters/backends.py", "adapters/sqlite/database.py", "domain/outbound.py"}


def test_no_module_but_the_registry_reads_a_scheme_or_an_adapter_type() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative in _ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _SCHEME_CHECK.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_the_guard_recognises_what_it_forbids() -> None:
    for line in (
        'if settings.database_url.startswith("sqlite:"):',
        'if scheme == "dynamodb":',
        'scheme = url.split(":", 1)[0].lower()',
        "assert isinstance(store, PostgresStore)",
        "if isinstance(queue, SqsQueue):",
    ):
        assert _SCHEME_CHECK.search(line), line
