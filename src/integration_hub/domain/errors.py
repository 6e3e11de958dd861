"""Domain errors, in two families.

    HubError                   something a client or an operator can act on
    ├── UnsupportedCountry     the tenant does not route this country
    ├── InvalidRecipient       the recipient does not fit the routed channel
    ├── IdempotencyConflict    same key, different payload
    ├── IdempotencyInProgress  same key, first request still being accepted
    ├── NotFound               no such resource for this tenant
    ├── TenantExists           a tenant with that id exists already
    ├── Conflict               the resource's state does not allow it now
    ├── Unauthenticated        missing, unknown or revoked API key
    ├── Forbidden              the key belongs to another tenant
    │   └── LiftForbidden      only the operator may lift this suppression
    ├── ProviderNotConfigured  the tenant has no usable configuration for a provider
    ├── RateLimited            the tenant is over its rate limit or daily quota
    ├── Suppressed             the recipient is on the tenant's suppression list
    ├── DataRejected           a backend refused a value: no retry can succeed
    └── Unavailable            a backend cannot be reached right now

    InvariantBreach            a bug: the code broke one of its own rules
    └── InvalidTransition      a status change the state machine forbids

Each error's docstring is its default message; the API layer maps a HubError
to its problem+json response, nothing below it knows about HTTP.

An InvariantBreach is never the client's doing, so it is not a HubError: no
handler of those catches it by accident. The API answers a generic 500 and
logs it with its ``kind``, the dispatcher counts it
(``ihub_invariant_breaches_total{kind}``) and leaves the message to come
back, and the CLI prints one line (docs/runbook.md, "IhubInvariantBreach").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class HubError(Exception):
    """Integration hub error."""

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.field = field
        super().__init__(self.message)


class UnsupportedCountry(HubError):
    """This country is not supported for the tenant."""

    def __init__(self, country: str, supported: Sequence[str]) -> None:
        self.country = country
        self.supported = sorted(supported)
        super().__init__(
            f"country {country!r} is not supported for this tenant; "
            f"supported: {', '.join(self.supported)}",
            field="X-Country",
        )


class InvalidRecipient(HubError):
    """The recipient does not fit the channel this country routes to."""


class IdempotencyConflict(HubError):
    """This Idempotency-Key was already used with a different payload."""


class IdempotencyInProgress(HubError):
    """A request with this Idempotency-Key is still being accepted."""

    def __init__(
        self, message: str | None = None, *, field: str | None = None, retry_after: float = 1.0
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, field=field)


class NotFound(HubError):
    """No such resource."""


class TenantExists(HubError):
    """A tenant with this id exists already."""


class Conflict(HubError):
    """The resource's current state does not allow this (a limit reached, or disabled)."""


class Unauthenticated(HubError):
    """Missing, unknown or revoked API key."""


class Forbidden(HubError):
    """This API key does not belong to the tenant named in X-Tenant."""


class LiftForbidden(Forbidden):
    """Only the operator may lift this suppression."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"this suppression was added for reason {reason!r}: only the operator may lift it",
            field="address",
        )


class ProviderNotConfigured(HubError):
    """No usable configuration for this provider."""


class RateLimited(HubError):
    """Too many notifications for this tenant right now."""

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Suppressed(HubError):
    """The recipient is on this tenant's suppression list for the channel."""

    def __init__(self, channel: str, reason: str, *, field: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(
            f"the recipient is on this tenant's {channel} suppression list ({reason}):"
            " nothing was stored",
            field=field,
        )


class DataRejected(HubError):
    """A backend refused a value as invalid; retrying the same data cannot succeed.

    The opposite of Unavailable: a database *data* error (a NUL byte in a text
    column, a value out of range, a broken constraint) is permanent, so it is
    never retried as an outage.
    """


class Unavailable(HubError):
    """A backend is unavailable; try again shortly."""

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class InvariantBreach(Exception):
    """An internal rule of the hub was broken: a bug, not a client error."""

    kind: ClassVar[str] = "invariant"
    """The metric label and log field naming the rule: a constant per class."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class InvalidTransition(InvariantBreach):
    """This status transition is not allowed."""

    kind = "invalid_transition"


def breach_kinds() -> list[str]:
    """Every ``InvariantBreach.kind``, so that each counter series exists from zero."""
    kinds: list[str] = []
    pending: list[type[InvariantBreach]] = [InvariantBreach]
    while pending:
        cls = pending.pop(0)
        if cls.kind not in kinds:
            kinds.append(cls.kind)
        pending.extend(cls.__subclasses__())
    return kinds
