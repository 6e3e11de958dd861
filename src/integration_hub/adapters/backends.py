"""The backends by URL scheme: the one place that reads a database URL's scheme.

Each scheme names a ``BackendKind`` in its adapter package, imported only
when asked for, so that the PostgreSQL and AWS extras stay optional.
"""

from __future__ import annotations

from importlib import import_module

from integration_hub.config import ConfigurationError
from integration_hub.ports import BackendKind

# scheme -> (module, class); a module may serve several schemes.
SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("integration_hub.adapters.sqlite.backend", "SqliteKind"),
    "postgres": ("integration_hub.adapters.postgres.backend", "PostgresKind"),
    "postgresql": ("integration_hub.adapters.postgres.backend", "PostgresKind"),
    "dynamodb": ("integration_hub.adapters.aws.backend", "DynamoKind"),
}

UNSUPPORTED = (
    "unsupported IHUB_DATABASE_URL scheme {scheme!r}: use sqlite:///path/to/file.db"
    " or postgresql://user@host:5432/database"
    " or dynamodb://<table-prefix>?queue=<SQS queue>"
)


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case ('' when it has none)."""
    scheme, colon, _ = url.partition(":")
    return scheme.lower() if colon else ""


def kind_of(url: str) -> BackendKind:
    """The backend ``url`` names, validated; ConfigurationError if there is none."""
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise ConfigurationError(UNSUPPORTED.format(scheme=scheme))
    module, name = SCHEMES[scheme]
    kind: BackendKind = getattr(import_module(module), name)(url)
    return kind
