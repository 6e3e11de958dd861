"""One aiobotocore client per AWS service, and vendor errors translated at the edge.

Clients are created lazily inside the running event loop (aiohttp sessions
belong to a loop), reused by every call and closed by ``close()``. Errors
that mean "AWS cannot serve us right now" (connection failures, timeouts,
throttling, 5xx, and a transaction cancelled only because its items were
throttled or in another transaction) become ``Unavailable``; every other
``ClientError`` is left for the adapter, which knows what a condition failure
means, except a refusal of the data itself (an item over the size limit), which
becomes ``DataRejected``: permanent, never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from integration_hub.domain.errors import DataRejected, Unavailable

try:
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
    from aiobotocore.session import get_session  # type: ignore[import-untyped]
    from botocore import exceptions as boto  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the DynamoDB/SQS backend needs aiobotocore: pip install 'integration-hub[aws]'"
    ) from exc

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "LimitExceededException",
        "KMSThrottlingException",
    }
)

UNAVAILABLE_CODES = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

# Per-item reasons of a TransactionCanceledException that mean "not now", not "no":
# DynamoDB cancels a transaction whose items are throttled or in another
# transaction instead of refusing it with ProvisionedThroughputExceeded.
TRANSIENT_CANCEL_REASONS = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict"}
)

# What a ValidationException (or a transaction item's ValidationError) says when
# DynamoDB refuses the data itself, not the request: an item over 400 KB, a
# number it cannot store, an empty key value. The same write fails the same way
# every time, so it becomes DataRejected, which nobody retries. Other
# ValidationExceptions (a malformed expression) are the adapter's bugs and stay
# ClientErrors.
DATA_REJECTED_MESSAGES = {
    "item size": "an item over the size limit",
    "number overflow": "a number out of range",
    "significant digits": "a number with too many digits",
    "empty string": "an empty key value",
}

_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    boto.EndpointConnectionError,
    boto.ConnectionClosedError,
    boto.ConnectTimeoutError,
    boto.ReadTimeoutError,
    boto.HTTPClientError,
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else ''."""
    if isinstance(exc, boto.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def transiently_cancelled(exc: BaseException) -> bool:
    """A cancelled transaction that failed no condition, only for throttling or a conflict."""
    if not isinstance(exc, boto.ClientError) or error_code(exc) != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    codes = {str(r.get("Code", "None")) for r in reasons}
    return bool(codes & TRANSIENT_CANCEL_REASONS) and "ConditionalCheckFailed" not in codes


def rejected_data(exc: BaseException) -> str | None:
    """What about the data DynamoDB refused (see DATA_REJECTED_MESSAGES), else None."""
    if not isinstance(exc, boto.ClientError):
        return None
    code = error_code(exc)
    if code == "ValidationException":
        messages = [str(exc.response.get("Error", {}).get("Message", ""))]
    elif code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        messages = [
            str(r.get("Message", "")) for r in reasons if r.get("Code") == "ValidationError"
        ]
    else:
        return None
    for message in messages:
        for phrase, what in DATA_REJECTED_MESSAGES.items():
            if phrase in message.lower():
                return what
    return None


def is_client_error(exc: BaseException, *codes: str) -> bool:
    """Whether ``exc`` is a ClientError with one of ``codes``."""
    return isinstance(exc, boto.ClientError) and error_code(exc) in codes


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """Where and as whom to call AWS; no credentials means the default chain (a role)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    connect_timeout: float = 5.0
    # Above SQS's longest long poll (20 s).
    read_timeout: float = 30.0
    max_pool_connections: int = 50


class AwsSession:
    """Lazily created, shared aiobotocore clients."""

    def __init__(self, config: AwsConfig) -> None:
        self.config = config
        self._stack: AsyncExitStack | None = None
        self._clients: dict[str, Any] = {}
        self._lock: asyncio.Lock | None = None

    async def client(self, service: str) -> Any:
        """The client for ``service`` ("dynamodb", "sqs"), created on first use."""
        found = self._clients.get(service)
        if found is not None:
            return found
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if service not in self._clients:
                if self._stack is None:
                    self._stack = AsyncExitStack()
                c = self.config
                creator = get_session().create_client(
                    service,
                    region_name=c.region,
                    endpoint_url=c.endpoint_url,
                    aws_access_key_id=c.access_key_id,
                    aws_secret_access_key=c.secret_access_key,
                    aws_session_token=c.session_token,
                    config=AioConfig(
                        connect_timeout=c.connect_timeout,
                        read_timeout=c.read_timeout,
                        max_pool_connections=c.max_pool_connections,
                        # A couple of quick SDK retries smooth over blips; anything
                        # longer is the caller's (503 + Retry-After, worker backoff).
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
                self._clients[service] = await self._stack.enter_async_context(creator)
        return self._clients[service]

    async def close(self) -> None:
        """Close every client."""
        stack, self._stack = self._stack, None
        self._clients.clear()
        if stack is not None:
            await stack.aclose()


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Turn connection errors, throttling and AWS 5xx into ``Unavailable``."""
    try:
        yield
    except _CONNECTION_ERRORS as exc:
        raise Unavailable(f"{what} is unavailable: {type(exc).__name__}") from exc
    except boto.ClientError as exc:
        code = error_code(exc)
        if code in THROTTLING_CODES or transiently_cancelled(exc):
            raise Unavailable(f"{what} is throttling requests ({code})", retry_after=2.0) from exc
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in UNAVAILABLE_CODES or status >= 500:
            raise Unavailable(f"{what} is unavailable ({code or status})") from exc
        refused = rejected_data(exc)
        if refused is not None:
            # Our words, not the service's message: it may describe the value.
            raise DataRejected(f"{what} refused a value ({code}: {refused})") from exc
        raise
