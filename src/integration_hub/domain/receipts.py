"""Delivery receipts: the delivery state, the rule that merges receipts, suppression triggers.

Pure: no store, no clock, no I/O. The receipt adapters (adapters/receipts)
turn a provider's callback into ``Receipt`` values; the store part (later)
records each one as an event and keeps ``advance`` of them as the
notification's delivery state. ADR 0019 argues the order chosen here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from integration_hub.domain.routing import Channel


class DeliveryState(StrEnum):
    """What happened to a message after a provider accepted it."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    EXPIRED = "expired"

    @property
    def rank(self) -> int:
        """Its place in the merge order: a receipt never lowers it."""
        return RANK[self]

    @property
    def final(self) -> bool:
        """Whether the message has an outcome (every state but ``sent``)."""
        return self is not DeliveryState.SENT


# A total order, so that merging is a maximum: commutative, associative and
# idempotent, hence the same result for any order of arrival and any number of
# duplicates. The rank says how close to the person the evidence reaches:
# left us < we gave up waiting < a hop gave up < reached the handset or the
# receiving mail server < that mailbox refused it afterwards < a person read
# it < a person reported it. ADR 0019 argues each pair.
RANK: Mapping[DeliveryState, int] = {
    DeliveryState.SENT: 0,
    DeliveryState.EXPIRED: 1,
    DeliveryState.UNDELIVERED: 2,
    DeliveryState.DELIVERED: 3,
    DeliveryState.BOUNCED: 4,
    DeliveryState.READ: 5,
    DeliveryState.COMPLAINED: 6,
}


def advance(current: DeliveryState | None, incoming: DeliveryState) -> DeliveryState:
    """The delivery state after ``incoming`` arrives: the higher ranked of the two."""
    if current is None or incoming.rank > current.rank:
        return incoming
    return current


def merge(states: Iterable[DeliveryState]) -> DeliveryState | None:
    """The state after every one of ``states``, in any order (None for none)."""
    result: DeliveryState | None = None
    for state in states:
        result = advance(result, state)
    return result


def expiry_due(
    current: DeliveryState | None, sent_at: datetime, now: datetime, timeout: timedelta
) -> bool:
    """Whether a message still ``sent`` after ``timeout`` becomes ``expired`` now.

    Only ``sent`` expires: a final state is an outcome already. A real receipt
    arriving after the expiry still wins (``expired`` ranks below every
    provider outcome), so expiring early costs nothing but a wrong guess shown
    for a while.
    """
    return current is DeliveryState.SENT and now - sent_at >= timeout


Identity = tuple[str, str, str, str, str, str | None, str | None, str | None]
"""tenant, provider, provider message id, state, raw status, error code, time, recipient."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """One provider event about one message, as the provider reported it."""

    tenant: str
    provider: str
    provider_message_id: str
    state: DeliveryState
    raw_status: str
    error_code: str | None
    occurred_at: datetime | None
    """The provider's time of the event, where it gives one (Twilio does not)."""
    received_at: datetime
    """When the hub received it: not part of the event's identity."""
    channel: Channel | None = None
    recipient: str | None = None
    """The address as the provider names it (normalised), where the callback carries it."""

    @property
    def identity(self) -> Identity:
        """What makes two receipts the same provider event (a redelivered callback)."""
        occurred = None if self.occurred_at is None else self.occurred_at.isoformat()
        return (
            self.tenant,
            self.provider,
            self.provider_message_id,
            self.state.value,
            self.raw_status,
            self.error_code,
            occurred,
            self.recipient,
        )


def is_duplicate(seen: Iterable[Receipt], incoming: Receipt) -> bool:
    """Whether ``incoming`` is an event already recorded (it then changes nothing)."""
    identity = incoming.identity
    return any(receipt.identity == identity for receipt in seen)


def fold(receipts: Iterable[Receipt]) -> tuple[DeliveryState | None, tuple[Receipt, ...]]:
    """The state and the distinct events after ``receipts`` arrive, duplicates dropped."""
    events: list[Receipt] = []
    identities: set[Identity] = set()
    state: DeliveryState | None = None
    for receipt in receipts:
        if receipt.identity in identities:
            continue
        identities.add(receipt.identity)
        events.append(receipt)
        state = advance(state, receipt.state)
    return state, tuple(events)


class SuppressionReason(StrEnum):
    """Why a recipient is on a tenant's suppression list for a channel."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    OPTED_OUT = "opted_out"
    BLOCKED = "blocked"
    LANDLINE = "landline"
    NOT_ON_WHATSAPP = "not_on_whatsapp"
    OPERATOR = "operator"


# Provider error codes that say the recipient cannot or will not take messages
# from this sender again. Codes are strings as the callbacks carry them.
# Twilio: 21610 the recipient replied STOP; 30004 message blocked (the
# recipient or carrier blocks this sender); 30006 landline or unreachable
# carrier. 30003 (unreachable handset), 30005 (unknown handset), 30007
# (carrier filtered the content) and 30008 are not: they say nothing lasting
# about the person. WhatsApp Cloud API: 131050 the user stopped marketing
# messages from this business; 131026 message undeliverable (not a WhatsApp
# number, terms not accepted, or a client too old to take it).
SUPPRESSING_CODES: Mapping[tuple[str, str], SuppressionReason] = {
    ("twilio", "21610"): SuppressionReason.OPTED_OUT,
    ("twilio", "30004"): SuppressionReason.BLOCKED,
    ("twilio", "30006"): SuppressionReason.LANDLINE,
    ("whatsapp", "131050"): SuppressionReason.OPTED_OUT,
    ("whatsapp", "131026"): SuppressionReason.NOT_ON_WHATSAPP,
}

_FAILED = frozenset({DeliveryState.UNDELIVERED, DeliveryState.BOUNCED})


def suppression_for(receipt: Receipt) -> SuppressionReason | None:
    """The suppression this receipt triggers for its recipient, if any.

    A bounce (SES maps only a permanent bounce to ``bounced``) and a complaint
    suppress whatever the code; a provider code suppresses only on a final
    failure, so a stale code on a ``sent`` or ``delivered`` callback does not.
    """
    if receipt.state is DeliveryState.BOUNCED:
        return SuppressionReason.HARD_BOUNCE
    if receipt.state is DeliveryState.COMPLAINED:
        return SuppressionReason.COMPLAINT
    if receipt.state in _FAILED and receipt.error_code is not None:
        return SUPPRESSING_CODES.get((receipt.provider, receipt.error_code.strip()))
    return None


OPT_OUT_KEYWORDS: tuple[str, ...] = ("STOP", "UNSUBSCRIBE", "ARRET", "BAJA")
"""The default inbound keywords that put the sender on the suppression list."""
OPT_IN_KEYWORDS: tuple[str, ...] = ("START", "UNSTOP")
"""The default inbound keywords that lift the sender's opt-out."""


class InvalidAddress(ValueError):
    """An address that cannot be put on a suppression list as given."""


_PHONE_PUNCTUATION = re.compile(r"[\s\-./()\u00a0]")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def normalise_email(address: str) -> str:
    """An email address as suppression lists key it: trimmed and lower-cased."""
    value = unicodedata.normalize("NFC", address.strip()).lower()
    if not _EMAIL.fullmatch(value):
        raise InvalidAddress("not an email address")
    return value


def normalise_phone(address: str, *, international_digits: bool = False) -> str:
    """A phone number as E.164 (``+`` and up to 15 digits).

    Takes what callbacks and operators give: E.164 with spacing or
    punctuation, a ``whatsapp:`` prefix (Twilio) and the international ``00``
    prefix. Bare digits are taken as a full international number only with
    ``international_digits`` (the WhatsApp ``wa_id``, which is that by
    definition); otherwise a number without ``+`` is refused rather than
    guessed, since a national number read as international is someone else's.
    """
    value = address.strip()
    if value.lower().startswith("whatsapp:"):
        value = value[len("whatsapp:") :]
    value = _PHONE_PUNCTUATION.sub("", value)
    if value.startswith("00"):
        value = "+" + value[2:]
    elif international_digits and value.isdigit():
        value = "+" + value
    if not _E164.fullmatch(value):
        raise InvalidAddress("not an international phone number")
    return value


def normalise_address(channel: Channel, address: str) -> str:
    """``address`` as the suppression list for ``channel`` keys it."""
    if channel is Channel.EMAIL:
        return normalise_email(address)
    return normalise_phone(address)


EXPIRY_PROVIDER = "hub"
"""The provider named by the event ``expire_deliveries`` records: the hub itself."""
EXPIRY_STATUS = "expired"


def expiry_cutoff(now: datetime, timeout: timedelta) -> datetime:
    """The sent time at or before which a message still ``sent`` expires now (``expiry_due``)."""
    return now - timeout


# Who added a suppression decides who may lift it: the operator's own entries
# only the operator; a tenant may lift any other on its own list (its user
# re-subscribed), and an inbound START lifts only what an inbound STOP (or the
# provider's own opt-out code) added.
OPERATOR_ONLY: frozenset[SuppressionReason] = frozenset({SuppressionReason.OPERATOR})
OPT_IN_LIFTS: frozenset[SuppressionReason] = frozenset({SuppressionReason.OPTED_OUT})


class Lifter(StrEnum):
    """Who asks to lift a suppression."""

    OPERATOR = "operator"
    TENANT = "tenant"
    RECIPIENT = "recipient"
    """The recipient themselves, by an opt-in keyword (START)."""


def may_lift(reason: SuppressionReason, by: Lifter) -> bool:
    """Whether ``by`` may lift a suppression added for ``reason``."""
    if by is Lifter.OPERATOR:
        return True
    if by is Lifter.TENANT:
        return reason not in OPERATOR_ONLY
    return reason in OPT_IN_LIFTS
