"""The worker's transitions on the DynamoDB table: claim and complete an attempt,
and dead-letter a poison message.

Both are conditional ``UpdateItem``s (on ``version`` for a claim, on the
claim token for a completion); ending FAILED is a transaction with the
dead letter under the same condition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from integration_hub.adapters.aws import items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.notifications import outbox_put
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key, item, plain
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.errors import Unavailable
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.status import TERMINAL, Status, check_transition
from integration_hub.ports import ClaimRequest, Completion, Settle


class ClaimItems(TableClient):
    """``claim``, ``claim_many``, ``complete_attempt``, ``dead_letter`` (ADR 0004 on DynamoDB)."""

    async def claim(
        self,
        notification_id: str,
        token: str,
        *,
        lease_seconds: float,
        max_attempts: int,
    ) -> Notification | None:
        """Take a notification for one attempt (see the Store port)."""
        key = items.notification_key(notification_id)
        for _ in range(items.MAX_CONTENTION_RETRIES):
            now = self.clock.now()
            found = await self._get(key)
            if found is None:
                return None
            current = Status(found["status"])
            held = found.get("claim_token") is not None and found.get("claim_expires_at", 0) > now
            if current in TERMINAL or (current is Status.PROCESSING and held):
                return items.notification(found)
            check_transition(current, Status.PROCESSING)
            u = items.Update()
            # Whoever changed the item since we read it wins; we read again.
            unchanged = f"{u.name('version')} = {u.value(found['version'])}"
            try:
                if found["attempts_used"] >= max_attempts:
                    # Earlier attempts died mid-call (crashes) and spent the budget.
                    reason = (
                        f"attempt budget of {max_attempts} exhausted without a recorded outcome"
                        " (the worker stopped during the provider call)"
                    )
                    await self._transact(*self._fail(u, found, reason, now, condition=unchanged))
                    found = await self._get(key)
                    assert found is not None
                    return items.notification(found)
                number = found["attempt_count"] + 1
                u.set("status", value=str(Status.PROCESSING)).set("claim_token", value=token)
                u.set("claim_expires_at", value=now + lease_seconds)
                u.set("attempts_used", value=found["attempts_used"] + 1)
                u.set("attempt_count", value=number).set("updated_at", value=now)
                u.set(
                    "attempts",
                    str(number),
                    value={"number": number, "provider": found["provider"], "started_at": now},
                )
                u.set("GSI2PK", value=items.status_index(found["tenant"], Status.PROCESSING))
                u.remove("GSI4PK").remove("GSI4SK").bump()
                fresh = await self._update(key, u, unchanged, returns="ALL_NEW")
                return items.notification(fresh)
            except Exception as exc:
                if not is_client_error(exc, items.CONDITION_FAILED, items.TRANSACTION_CANCELED):
                    raise
        raise Unavailable("notification is too contended right now")

    async def dead_letter(self, notification_id: str, reason: str) -> bool:
        """End an unprocessable notification FAILED (see the Store port)."""
        key = items.notification_key(notification_id)
        for _ in range(items.MAX_CONTENTION_RETRIES):
            now = self.clock.now()
            found = await self._get(key)
            if found is None or Status(found["status"]) in TERMINAL:
                return True
            if found.get("claim_token") is not None and found.get("claim_expires_at", 0) > now:
                return False
            u = items.Update()
            unchanged = f"{u.name('version')} = {u.value(found['version'])}"
            try:
                await self._transact(*self._fail(u, found, reason, now, condition=unchanged))
            except Exception as exc:
                if not is_client_error(exc, items.CONDITION_FAILED, items.TRANSACTION_CANCELED):
                    raise
                continue
            return True
        raise Unavailable("notification is too contended right now")

    async def claim_many(
        self, requests: Sequence[ClaimRequest], *, lease_seconds: float
    ) -> list[Notification | None]:
        """``claim`` each request, concurrently: DynamoDB has no batch to save a commit on."""
        return list(
            await asyncio.gather(
                *(
                    self.claim(
                        r.notification_id,
                        r.token,
                        lease_seconds=lease_seconds,
                        max_attempts=r.max_attempts,
                    )
                    for r in requests
                )
            )
        )

    def _fail(
        self,
        u: items.Update,
        found: Mapping[str, Any],
        reason: str,
        now: float,
        *,
        condition: str,
        provider: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The transaction items that end a notification FAILED with its dead letter."""
        nid, tenant = found["id"], found["tenant"]
        u.set("status", value=str(Status.FAILED)).set("last_error", value=reason)
        if provider is not None:
            u.set("provider", value=provider)
        u.set("finished_at", value=now).set("updated_at", value=now)
        u.set("GSI2PK", value=items.status_index(tenant, Status.FAILED))
        u.remove("claim_token").remove("claim_expires_at").remove("GSI4PK").remove("GSI4SK")
        u.bump()
        letter = items.dead_letter_key(nid) | {
            "notification_id": nid,
            "tenant": tenant,
            "reason": reason,
            "dead_lettered_at": now,
            "GSI1PK": f"T#{tenant}#DL",
            "GSI1SK": f"{epoch_key(now)}#{nid}",
            "GSI2PK": "DL",
            "GSI2SK": f"{epoch_key(now)}#{nid}",
        }
        return (
            {"Update": u.request(self.table, items.notification_key(nid), condition)},
            {"Put": {"TableName": self.table, "Item": item(letter)}},
        )

    async def complete_attempt(
        self,
        notification_id: str,
        token: str,
        attempt: Attempt,
        *,
        status: Status,
        dead_letter_reason: str | None = None,
        settle: Settle | None = None,
        outbox: OutboundMessage | None = None,
    ) -> Completion:
        """Record an attempt's outcome and move to ``status``; only the claim holder may.

        The SQS message cannot join a DynamoDB transaction: ``settle`` is left
        to the caller (RECORDED). The sandbox's ``outbox`` delivery is put in
        the same transaction as the outcome.
        """
        check_transition(Status.PROCESSING, status)
        now = self.clock.now()
        u = items.Update()
        number = str(attempt.number)
        for attr, value in (
            ("finished_at", now),
            ("provider", attempt.provider),
            ("outcome", str(attempt.outcome)),
            ("error_class", attempt.error_class),
            ("error_code", attempt.error_code),
            ("message", attempt.message),
            ("latency_ms", attempt.latency_ms),
            ("provider_message_id", attempt.provider_message_id),
            ("provider_response", attempt.provider_response),
        ):
            u.set("attempts", number, attr, value=value)
        ours = (
            f"{u.name('status')} = {u.value(str(Status.PROCESSING))}"
            f" AND {u.name('claim_token')} = {u.value(token)}"
        )
        key = items.notification_key(notification_id)
        delivery: tuple[dict[str, Any], ...] = ()
        if outbox is not None:
            pmid = attempt.provider_message_id or ""
            delivery = ({"Put": await outbox_put(self, outbox, pmid, now)},)
        try:
            if status is Status.FAILED:
                found = await self._get(key)
                if found is None:
                    return Completion.LOST
                reason = dead_letter_reason or attempt.message or "failed"
                await self._transact(
                    *self._fail(u, found, reason, now, condition=ours, provider=attempt.provider),
                    *delivery,
                )
                return Completion.RECORDED
            tenant = await self._tenant_of(notification_id)
            if tenant is None:
                return Completion.LOST
            u.set("status", value=str(status)).set("provider", value=attempt.provider)
            u.set("last_error", value=attempt.message if attempt.error_class else None)
            u.set("finished_at", value=now if status is Status.DONE else None)
            u.set("updated_at", value=now).set("GSI2PK", value=items.status_index(tenant, status))
            u.remove("claim_token").remove("claim_expires_at").bump()
            if delivery:
                await self._transact({"Update": u.request(self.table, key, ours)}, *delivery)
            else:
                await self._update(key, u, ours)
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED, items.TRANSACTION_CANCELED):
                return Completion.LOST
            raise
        return Completion.RECORDED

    async def _tenant_of(self, notification_id: str) -> str | None:
        found = await self._call(
            "get_item",
            TableName=self.table,
            Key=item(items.notification_key(notification_id)),
            ProjectionExpression="tenant",
        )
        return plain(found["Item"]).get("tenant") if "Item" in found else None
