"""AWS Lambda entry points: the API behind API Gateway, the SQS worker, and the
reconciler and the webhook delivery loop on EventBridge schedules.

Both reuse one hub per Lambda container (built on the first invocation, on
one event loop that later invocations reuse), configured like every other
process by ``IHUB_*`` environment variables.

The worker handler takes an SQS event (batch size up to 10) and answers with
``batchItemFailures`` listing only the messages that must come back: a retry
scheduled with backoff (its visibility was already changed to the backoff
delay), a claim held by another worker, an invariant breach (a bug, logged
and counted: the message is not dropped), or an unexpected error. Everything
else was finished (and deleted) by the dispatcher.

The reconcile handler re-enqueues notifications left RECEIVED longer than
``IHUB_RECONCILE_AFTER_SECONDS`` (an SQS send lost after the DynamoDB
commit; ADR 0011) and expires deliveries still ``sent`` after
``IHUB_RECEIPT_TIMEOUT_HOURS`` (ADR 0020); the stack invokes it every minute.

The webhooks handler is AWS's ``ihub webhooks-worker`` (ADR 0021): invoked
every minute, it runs the delivery loop for the invocation's time less one
request timeout and a margin, then lets what is in flight finish, so the next
invocation takes over as this one ends. Its claims are leased in DynamoDB:
overlapping invocations, or one killed mid-request, deliver nothing twice
that a receiver could not tell apart by ``webhook-id``, and lose nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from integration_hub import tracing
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.config import ConfigurationError, Settings
from integration_hub.entrypoints.observability import Observability, setup
from integration_hub.ports import QueueMessage
from integration_hub.service.dispatch import Dispatcher, Result

# Without a Lambda context (tests, a manual invoke): the loop's time, in seconds.
WEBHOOKS_DEFAULT_SECONDS = 45.0
# Kept free at the end of an invocation on top of one request's timeout: the
# claims and attempts of what was in flight are written before Lambda's timeout.
WEBHOOKS_MARGIN_SECONDS = 5.0

# A message with one of these outcomes must not be deleted by Lambda.
COME_BACK = frozenset({Result.RETRY, Result.HELD, Result.LOST, Result.BROKEN})

_state: dict[str, Any] = {}
log = logging.getLogger(__name__)


def _loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = _state.get("loop")
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        _state["loop"] = loop
    return loop


def _hub(role: str = "lambda") -> Hub:
    hub: Hub | None = _state.get("hub")
    if hub is None:
        settings = Settings()
        _state["observability"] = setup(settings, role)
        hub = _loop().run_until_complete(build_hub(settings))
        _state["hub"] = hub
    return hub


def _flush() -> None:
    # A Lambda is frozen between invocations: batched spans must leave now.
    observability: Observability | None = _state.get("observability")
    if observability is not None:
        observability.flush()


def asgi_handler(app: Any) -> Any:
    """API Gateway events -> ``app`` (Mangum), the request exactly as the client sent it.

    The provider receipt callbacks are signed over their raw bytes (WhatsApp's
    HMAC of the body, Twilio's of the URL and form parameters): Mangum hands
    the app the body decoded from base64 when API Gateway encoded it (it does
    for form posts and binary types), byte for byte, with every header
    (``X-Twilio-Signature``, ``X-Hub-Signature-256``) and the raw query string.
    """
    from mangum import Mangum

    return Mangum(app, lifespan="off")


def api_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST or HTTP API) event -> the same FastAPI app as ``ihub api``."""
    handler = _state.get("api")
    if handler is None:
        from integration_hub.entrypoints.api import create_app

        hub = _hub("lambda-api")
        app = create_app(hub=hub)
        app.state.hub = hub  # the lifespan that would set it is off: the hub outlives requests
        handler = asgi_handler(app)
        _state["api"] = handler
    try:
        response: dict[str, Any] = handler(dict(event), context)
    finally:
        _flush()
    return response


def message_of(record: Mapping[str, Any]) -> QueueMessage:
    """An SQS event record as the queue message the dispatcher expects (with its trace)."""
    from integration_hub.adapters.aws.sqs import message_from_lambda_record

    return message_from_lambda_record(record)


async def dispatch_records(
    dispatcher: Dispatcher, records: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Handle a batch concurrently; the messageIds that must be redelivered."""

    async def one(record: Mapping[str, Any]) -> str | None:
        try:
            result = await dispatcher.handle(message_of(record))
        except Exception:
            # Reported as failed: SQS redelivers it, and its redrive policy
            # moves it to the DLQ once maxReceiveCount is reached.
            with tracing.log_scope(notification_id=record.get("body")):
                log.exception("dispatch of SQS message %s failed", record.get("messageId"))
            return str(record["messageId"])
        return str(record["messageId"]) if result in COME_BACK else None

    outcomes = await asyncio.gather(*(one(r) for r in records))
    return [m for m in outcomes if m is not None]


def worker_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """SQS event -> one attempt per message; partial batch response."""
    hub = _hub("lambda-worker")
    try:
        failed = _loop().run_until_complete(
            dispatch_records(hub.dispatcher, event.get("Records") or [])
        )
    finally:
        _flush()
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


def reconcile_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Scheduled event -> re-enqueue what an SQS send lost, then expire silent deliveries.

    The AWS deployment runs no worker process, whose periodic loop expires
    deliveries elsewhere (ADR 0020): this schedule is AWS's periodic job, so
    it also moves what is still ``sent`` after IHUB_RECEIPT_TIMEOUT_HOURS to
    ``expired``. How many of each (DynamoDB only).
    """
    hub = _hub("lambda-reconcile")
    assert hub.backend is not None
    loop = _loop()
    try:
        sent = loop.run_until_complete(hub.backend.reconcile(hub.settings.reconcile_after_seconds))
        if sent is None:
            # SQLite and PostgreSQL enqueue in the transaction that accepts: nothing to repair.
            raise ConfigurationError("only the DynamoDB backend needs a reconciler")
        expired = loop.run_until_complete(hub.receipts.expire())
    finally:
        _flush()
    return {"reenqueued": sent, "expired": expired}


class LambdaContext(Protocol):
    """The part of Lambda's context object the webhooks handler reads."""

    def get_remaining_time_in_millis(self) -> int: ...


def webhooks_budget(context: LambdaContext | None, request_timeout: float) -> float:
    """How long this invocation claims new deliveries: what Lambda leaves it, less one
    request's timeout and the margin (at least a second, to fan out and claim once)."""
    if context is None:
        return WEBHOOKS_DEFAULT_SECONDS
    remaining = context.get_remaining_time_in_millis() / 1000.0
    return max(1.0, remaining - request_timeout - WEBHOOKS_MARGIN_SECONDS)


async def deliver_for(hub: Hub, seconds: float) -> dict[str, int]:
    """The webhook delivery loop for ``seconds``; then what is in flight finishes.
    The attempts it made, by outcome."""
    deliverer = hub.webhook_deliverer()
    stop = asyncio.Event()
    timer = asyncio.get_running_loop().call_later(seconds, stop.set)
    try:
        await deliverer.run(stop)
    finally:
        timer.cancel()
        # Its own connections: Lambda freezes the container between invocations,
        # and a pooled connection would not survive that.
        await deliverer.close()
    return dict(deliverer.outcomes)


def webhooks_handler(event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """Scheduled event -> the webhook delivery loop for most of the invocation."""
    hub = _hub("lambda-webhooks")
    seconds = webhooks_budget(context, hub.settings.webhooks_timeout_seconds)
    try:
        outcomes = _loop().run_until_complete(deliver_for(hub, seconds))
    finally:
        _flush()
    return {"attempts": sum(outcomes.values()), "outcomes": outcomes}
