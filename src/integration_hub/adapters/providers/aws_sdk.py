"""What the providers that call AWS through ``aiobotocore`` (SES, SNS) share.

The settings every AWS provider has (region, endpoint, credentials, timeouts),
one lazily created client per provider with the SDK's own retries off (the
hub's retry policy, with its per-tenant budget and dead letters, is the only
one, so an attempt is one call), and the classification of the SDK's
transport errors. Each provider classifies its service's error codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integration_hub.adapters.providers import guard
from integration_hub.adapters.providers.http import redact
from integration_hub.domain.delivery import DeliveryResult, PermanentFailure, TransientFailure
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused

try:
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
    from aiobotocore.session import AioSession, get_session  # type: ignore[import-untyped]
    from botocore import exceptions as boto  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the SES and SNS providers need aiobotocore: pip install 'integration-hub[aws]'"
    ) from exc

# What the SDK raises for a call: an answer (ClientError), a transport or
# credentials problem (BotoCoreError), the network (OSError), a malformed
# endpoint or region (ValueError).
SDK_ERRORS = (boto.BotoCoreError, boto.ClientError, OSError, ValueError)


class AwsSdkSettings(BaseModel):
    """Region, endpoint, credentials and timeouts of one AWS provider.

    Without ``access_key_id`` the default AWS credential chain is used (role,
    environment, profile).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Becomes part of the endpoint's host name: nothing but a region's letters.
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,40}$")
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=15.0, gt=0)
    max_pool_connections: int = Field(default=20, ge=1)

    def secrets(self) -> tuple[str, ...]:
        """Values that must never leave the adapter."""
        found = (self.secret_access_key, self.session_token)
        return tuple(s.get_secret_value() for s in found if s is not None)


class SdkClient:
    """One ``aiobotocore`` client of ``service``, created on first use, closed by ``close()``.

    The endpoint (given, or the regional AWS one) passes the outbound rule:
    a configured ``endpoint_url`` at construction, every connection after
    resolution (``guard``), like every provider.
    """

    def __init__(
        self,
        service: str,
        settings: AwsSdkSettings,
        *,
        session: AioSession | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self._session = session
        self._outbound = outbound or OutboundPolicy()
        self._refused: OutboundRefused | None = None
        if settings.endpoint_url is not None:
            try:
                self._outbound.check_url(settings.endpoint_url)
            except OutboundRefused as exc:
                self._refused = exc
        self._stack: AsyncExitStack | None = None
        self.client: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        """The client; OutboundBlocked if the configured endpoint breaks the rule."""
        if self._refused is not None:
            raise guard.OutboundBlocked(self._refused)
        if self.client is not None:
            return self.client
        # Only the first calls wait here, while the client is being created.
        async with self._lock:
            if self.client is None:
                settings = self.settings
                session = self._session or get_session()
                config = AioConfig(
                    connect_timeout=settings.connect_timeout,
                    read_timeout=settings.read_timeout,
                    max_pool_connections=settings.max_pool_connections,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connector_args=guard.connector_args(self._outbound),
                )
                secret, token = settings.secret_access_key, settings.session_token
                stack = AsyncExitStack()
                self.client = await stack.enter_async_context(
                    session.create_client(
                        self.service,
                        region_name=settings.region,
                        endpoint_url=settings.endpoint_url,
                        aws_access_key_id=settings.access_key_id,
                        aws_secret_access_key=secret.get_secret_value() if secret else None,
                        aws_session_token=token.get_secret_value() if token else None,
                        config=config,
                    )
                )
                self._stack = stack
            return self.client

    async def close(self) -> None:
        """Close the client and its connection pool."""
        async with self._lock:
            stack, self._stack, self.client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def error_fields(exc: Any) -> tuple[str, str, int | None]:
    """A ClientError's code, message and HTTP status."""
    response = exc.response if isinstance(exc.response, dict) else {}
    error = response.get("Error") or {}
    code = str(error.get("Code") or "Unknown")
    detail = str(error.get("Message") or exc)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, detail, status if isinstance(status, int) else None


def classify_sdk_error(
    provider: str,
    exc: BaseException,
    secrets: tuple[str, ...],
    client_error: Callable[[Any], DeliveryResult],
) -> DeliveryResult:
    """Translate what the SDK raised; an answer of the service goes to ``client_error``."""
    refused = guard.refusal_of(exc)
    if refused is not None:
        return guard.refused_failure(provider, refused)
    if isinstance(exc, boto.ClientError):
        return client_error(exc)
    text = redact(f"{provider}: {type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return PermanentFailure("credentials", text, configuration=True)
    if isinstance(exc, boto.NoRegionError | boto.CredentialRetrievalError):
        return PermanentFailure("credentials", text, configuration=True)
    if isinstance(exc, boto.ParamValidationError):
        return PermanentFailure("invalid_request", text)
    if isinstance(exc, boto.SSLError):
        return PermanentFailure("tls_error", text, configuration=True)
    if isinstance(exc, boto.ConnectTimeoutError | boto.ReadTimeoutError | TimeoutError):
        return TransientFailure("timeout", text)
    if isinstance(exc, ValueError):
        # botocore refuses a malformed endpoint_url or region with a ValueError.
        return PermanentFailure("invalid_settings", text, configuration=True)
    return TransientFailure("connection_error", text)
