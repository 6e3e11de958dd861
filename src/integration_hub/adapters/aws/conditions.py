"""The lifecycle rules DynamoDB checks itself, in its condition language.

Every decision of the DynamoDB store is made by ``domain.lifecycle`` on the
item as read, and persisted under a condition that the item is unchanged
since (``unchanged``: the version read). Two rules cannot wait for a read:
whether a request may take an Idempotency-Key (two requests race for a key
nobody has read yet) and whether a worker may record an attempt's outcome
(its claim may be taken over between read and write). For those DynamoDB
states the rule itself, here, once; each expression names the lifecycle
function it states, and tests/contract/test_lifecycle_conditions.py checks
the two against each other, state by state, on a real table.
"""

from __future__ import annotations

from integration_hub.adapters.aws.items import Update
from integration_hub.domain.status import Status


def unchanged(u: Update, version: int) -> str:
    """The item still has the ``version`` it was read with (a decision on it holds)."""
    return f"{u.name('version')} = {u.value(version)}"


def key_free(u: Update, now: float) -> str:
    """``lifecycle.key_free``: no record, its record expired, or the request that
    reserved it died (no response stored, lock lapsed)."""
    t = u.value(now)
    expires, locked, response = u.name("expires_at"), u.name("locked_until"), u.name("response")
    return (
        f"attribute_not_exists({u.name('PK')}) OR {expires} <= {t}"
        f" OR (attribute_not_exists({response}) AND {locked} <= {t})"
    )


def may_complete(u: Update, token: str) -> str:
    """``lifecycle.may_complete``: PROCESSING under the claim ``token``."""
    return (
        f"{u.name('status')} = {u.value(str(Status.PROCESSING))}"
        f" AND {u.name('claim_token')} = {u.value(token)}"
    )
