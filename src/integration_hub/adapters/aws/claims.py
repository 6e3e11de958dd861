"""The worker's transitions on the DynamoDB table: claim and complete an attempt,
and dead-letter a poison message.

Each decision is ``domain.lifecycle``'s, on the item as read; this module
only writes it. A claim or a dead letter is a conditional ``UpdateItem`` on
the ``version`` read (whoever changed the item since wins, and we read
again); a completion is conditional on the claim token
(``conditions.may_complete``). Ending FAILED is a transaction with the dead
letter under the same condition.

Every change here that a tenant hears of puts its webhook event in the same
transaction (ADR 0021), built from the item as read plus what the change sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from integration_hub.adapters.aws import conditions, items, webhook_items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.notifications import outbox_put
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key, item, plain, sent_shard
from integration_hub.domain import lifecycle, webhooks
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.errors import Unavailable
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status
from integration_hub.ports import ClaimRequest, Completion, Settle

_CONTENDED = (items.CONDITION_FAILED, items.TRANSACTION_CANCELED)


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
            decision = lifecycle.decide_claim(
                lifecycle.ClaimState.of(found),
                token=token,
                now=now,
                lease_seconds=lease_seconds,
                max_attempts=max_attempts,
            )
            if isinstance(decision, lifecycle.Unchanged):
                return items.notification(found)
            u = items.Update()
            unchanged = conditions.unchanged(u, found["version"])
            try:
                if isinstance(decision, lifecycle.Fail):
                    await self._transact(
                        *self._fail(
                            u,
                            found,
                            decision.reason,
                            decision.now,
                            condition=unchanged,
                            provider=decision.provider,
                        )
                    )
                    found = await self._get(key)
                    assert found is not None
                    return items.notification(found)
                fresh = await self._update(
                    key, self._take(u, found, decision), unchanged, returns="ALL_NEW"
                )
                return items.notification(fresh)
            except Exception as exc:
                if not is_client_error(exc, *_CONTENDED):
                    raise
        raise Unavailable("notification is too contended right now")

    @staticmethod
    def _take(u: items.Update, found: Mapping[str, Any], take: lifecycle.Take) -> items.Update:
        """The update that claims ``found`` for the attempt ``take`` numbers."""
        u.set("status", value=str(Status.PROCESSING)).set("claim_token", value=take.token)
        u.set("claim_expires_at", value=take.expires_at)
        u.set("attempts_used", value=take.attempts_used)
        u.set("attempt_count", value=take.number).set("updated_at", value=take.now)
        u.set(
            "attempts",
            str(take.number),
            value={"number": take.number, "provider": found["provider"], "started_at": take.now},
        )
        u.set("GSI2PK", value=items.status_index(found["tenant"], Status.PROCESSING))
        return u.remove("GSI4PK").remove("GSI4SK").bump()

    async def dead_letter(self, notification_id: str, reason: str) -> bool:
        """End an unprocessable notification FAILED (see the Store port)."""
        key = items.notification_key(notification_id)
        for _ in range(items.MAX_CONTENTION_RETRIES):
            now = self.clock.now()
            found = await self._get(key)
            state = None if found is None else lifecycle.ClaimState.of(found)
            decision = lifecycle.decide_dead_letter(state, now)
            if found is None or decision is not lifecycle.PoisonDecision.FAIL:
                return decision.settled
            u = items.Update()
            unchanged = conditions.unchanged(u, found["version"])
            try:
                await self._transact(*self._fail(u, found, reason, now, condition=unchanged))
            except Exception as exc:
                if not is_client_error(exc, *_CONTENDED):
                    raise
                continue
            return decision.settled
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
        told: webhooks.EventType = webhooks.DEAD_LETTER_EVENT,
    ) -> tuple[dict[str, Any], ...]:
        """The transaction items that end a notification FAILED with its dead letter and
        its webhook event ``told`` (``found``: the item as read).

        ``dead_lettered`` is FAILED without a recorded outcome (a poison
        message, a claim finding the budget spent); a completion that ends
        FAILED tells ``failed`` (``webhooks.completion_event``).
        """
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
        after = dict(found) | {
            "status": str(Status.FAILED),
            "last_error": reason,
            "provider": found.get("provider") if provider is None else provider,
            "finished_at": now,
            "updated_at": now,
            "version": int(found["version"]) + 1,
        }
        return (
            {"Update": u.request(self.table, items.notification_key(nid), condition)},
            {"Put": {"TableName": self.table, "Item": item(letter)}},
            webhook_items.notification_event_put(self.table, told, after, now),
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

        Whether this worker holds the claim is ``conditions.may_complete``,
        checked by DynamoDB with the write: the claim may be taken over after
        any read of ours. The SQS message cannot join a DynamoDB transaction:
        ``settle`` is left to the caller (RECORDED). The sandbox's ``outbox``
        delivery and the webhook event (``webhooks.completion_event``; FAILED
        is ``failed`` although it writes a dead letter: the port's rule) are
        put in the same transaction as the outcome.
        """
        finish = lifecycle.decide_completion(
            attempt, status=status, dead_letter_reason=dead_letter_reason, now=self.clock.now()
        )
        u = items.Update()
        number = str(attempt.number)
        for attr, value in (
            ("finished_at", finish.now),
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
        ours = conditions.may_complete(u, token)
        key = items.notification_key(notification_id)
        delivery: tuple[dict[str, Any], ...] = ()
        if outbox is not None:
            pmid = attempt.provider_message_id or ""
            delivery = ({"Put": await outbox_put(self, outbox, pmid, finish.now)},)
        try:
            found = await self._owner_of(notification_id)
            if found is None:
                return Completion.LOST
            # The event is built from this read: it must be the item we change. While
            # our claim holds nothing else writes it, so this only makes that explicit.
            ours = f"{ours} AND {conditions.unchanged(u, found['version'])}"
            if finish.dead_letter is not None:
                await self._transact(
                    *self._fail(
                        u,
                        found,
                        finish.dead_letter,
                        finish.now,
                        condition=ours,
                        provider=finish.provider,
                        told=webhooks.completion_event(finish.status),
                    ),
                    *delivery,
                )
                return Completion.RECORDED
            u.set("status", value=str(finish.status)).set("provider", value=finish.provider)
            u.set("last_error", value=finish.last_error)
            u.set("finished_at", value=finish.finished_at).set("updated_at", value=finish.now)
            u.set("GSI2PK", value=items.status_index(found["tenant"], finish.status))
            u.remove("claim_token").remove("claim_expires_at").bump()
            index = self._sent(u, found, attempt, finish)
            after = found | {
                "status": str(finish.status),
                "provider": finish.provider,
                "last_error": finish.last_error,
                "version": int(found["version"]) + 1,
            }
            if index:
                after["delivery_state"] = str(DeliveryState.SENT)
            told = webhook_items.notification_event_put(
                self.table, webhooks.completion_event(finish.status), after, finish.now
            )
            await self._transact(
                {"Update": u.request(self.table, key, ours)}, *delivery, *index, told
            )
        except Exception as exc:
            if is_client_error(exc, *_CONTENDED):
                return Completion.LOST
            raise
        return Completion.RECORDED

    def _sent(
        self,
        u: items.Update,
        found: Mapping[str, Any],
        attempt: Attempt,
        finish: lifecycle.Finish,
    ) -> tuple[dict[str, Any], ...]:
        """DONE with a provider message id starts the delivery state at ``sent``.

        Adds to ``u`` the delivery fields and the sparse ``SENT#`` entry of
        GSI4 (what ``expire_deliveries`` reads while the state is ``sent``),
        and returns the Put of the index item that ``record_receipt`` finds
        the notification by. Without a message id nothing can report on the
        message: no delivery state.
        """
        pmid = attempt.provider_message_id
        if finish.status is not Status.DONE or not pmid:
            return ()
        nid, tenant = found["id"], found["tenant"]
        index_key = items.provider_message_key(tenant, attempt.provider, pmid)
        u.set("delivery_state", value=str(DeliveryState.SENT))
        u.set("delivery_updated_at", value=finish.now).set("sent_at", value=finish.now)
        u.set("provider_message_id", value=pmid).set("receipt_index", value=index_key["PK"])
        u.set("GSI4PK", value=sent_shard(nid))
        u.set("GSI4SK", value=f"{epoch_key(finish.now)}#{nid}")
        entry = index_key | {
            "notification_id": nid,
            "tenant": tenant,
            "provider": attempt.provider,
            "provider_message_id": pmid,
        }
        # Unconditional: a provider that reused an id names its latest message.
        return ({"Put": {"TableName": self.table, "Item": item(entry)}},)

    async def _owner_of(self, notification_id: str) -> dict[str, Any] | None:
        """What writing an outcome needs: the notification's ``id`` and ``tenant``, and
        the fields its webhook event reports (``webhooks.DATA_FIELDS``) with the
        ``version`` and ``event_count`` that order it."""
        fields = (*webhooks.DATA_FIELDS, "version", "event_count")
        names = {f"#p{i}": f for i, f in enumerate(fields)}
        found = await self._call(
            "get_item",
            TableName=self.table,
            Key=item(items.notification_key(notification_id)),
            ProjectionExpression=", ".join(names),
            ExpressionAttributeNames=names,
            ConsistentRead=True,
        )
        if "Item" not in found:
            return None
        return plain(found["Item"]) | {"id": notification_id}
