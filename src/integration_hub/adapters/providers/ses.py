"""Email through Amazon SES API v2 ``SendEmail``, with ``aiobotocore``.

One ``sesv2`` client per provider, created on first use and closed by
``close()``. The SDK's own retries are off: the hub's retry policy (with its
per-tenant budget and dead letters) is the only one, so an attempt is one call.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from contextlib import AsyncExitStack
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integration_hub.adapters.providers import guard
from integration_hub.adapters.providers.http import TENANT_TEXT_CHARS, redact, tenant_text
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused

try:
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
    from aiobotocore.session import AioSession, get_session  # type: ignore[import-untyped]
    from botocore import exceptions as boto  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the SES provider needs aiobotocore: pip install 'integration-hub[aws]'"
    ) from exc

THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
    }
)

UNAVAILABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServiceErrorException",
    }
)

# Credentials, identities, account state: every message fails until an operator acts.
CONFIGURATION_CODES = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",  # configuration set or identity missing
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "AccessDeniedException",
        "AccessDenied",
        "ExpiredToken",
        "ExpiredTokenException",
        "OptInRequired",
    }
)

PERMANENT_CODES = frozenset(
    {"MessageRejected", "BadRequestException", "InvalidParameterValue", "ValidationException"}
)

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


class SesSettings(BaseModel):
    """Region, endpoint, credentials and sender for SES.

    Without ``access_key_id`` the default AWS credential chain is used (role,
    environment, profile).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_address: str
    from_name: str | None = None
    reply_to: tuple[str, ...] = ()
    # Becomes part of the endpoint's host name: nothing but a region's letters.
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,40}$")
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    configuration_set: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=15.0, gt=0)
    max_pool_connections: int = Field(default=20, ge=1)
    # Receipts (SNS at /v1/receipts/ses/{tenant}): the topics whose messages
    # the endpoint accepts; any other topic is refused before a certificate
    # is fetched. Empty: the endpoint refuses everything.
    receipt_topic_arns: tuple[
        Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+$")],
        ...,
    ] = ()

    def secrets(self) -> tuple[str, ...]:
        """Values that must never leave the adapter."""
        found = (self.secret_access_key, self.session_token)
        return tuple(s.get_secret_value() for s in found if s is not None)


def send_email_request(settings: SesSettings, message: OutboundMessage) -> dict[str, Any]:
    """The ``SendEmail`` parameters for one notification."""
    body: dict[str, Any] = {"Text": {"Data": message.body, "Charset": "UTF-8"}}
    options = message.metadata.get("email")
    html = options.get("html") if isinstance(options, dict) else None
    if isinstance(html, str) and html:
        body["Html"] = {"Data": html, "Charset": "UTF-8"}
    sender = settings.from_address
    if settings.from_name:
        sender = email.utils.formataddr((settings.from_name, sender))
    request: dict[str, Any] = {
        "FromEmailAddress": sender,
        "Destination": {"ToAddresses": [message.recipient.email]},
        "Content": {
            "Simple": {
                "Subject": {"Data": message.subject or "", "Charset": "UTF-8"},
                "Body": body,
            }
        },
        # Lets SES event destinations (bounces, complaints) point back at the notification.
        "EmailTags": [
            {"Name": "notification_id", "Value": _TAG_UNSAFE.sub("_", message.notification_id)}
        ],
    }
    if settings.reply_to:
        request["ReplyToAddresses"] = list(settings.reply_to)
    if settings.configuration_set:
        request["ConfigurationSetName"] = settings.configuration_set
    return request


class SesProvider:
    """Sends email with SES v2 ``SendEmail`` through one reused client."""

    name: str = "ses"

    def __init__(
        self,
        settings: SesSettings,
        *,
        session: AioSession | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
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
        self._client: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SesProvider(region={self.settings.region!r})"

    async def _sesv2(self) -> Any:
        if self._refused is not None:
            raise guard.OutboundBlocked(self._refused)
        if self._client is not None:
            return self._client
        # Only the first sends wait here, while the client is being created.
        async with self._lock:
            if self._client is None:
                settings = self.settings
                session = self._session or get_session()
                config = AioConfig(
                    connect_timeout=settings.connect_timeout,
                    read_timeout=settings.read_timeout,
                    max_pool_connections=settings.max_pool_connections,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    # The endpoint (given, or the regional AWS one) passes the
                    # outbound rule after resolution, like every provider.
                    connector_args=guard.connector_args(self._outbound),
                )
                secret, token = settings.secret_access_key, settings.session_token
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    session.create_client(
                        "sesv2",
                        region_name=settings.region,
                        endpoint_url=settings.endpoint_url,
                        aws_access_key_id=settings.access_key_id,
                        aws_secret_access_key=secret.get_secret_value() if secret else None,
                        aws_session_token=token.get_secret_value() if token else None,
                        config=config,
                    )
                )
                self._stack = stack
            return self._client

    async def check(self) -> ProviderCheck:
        """Read the sender identity: proves the credentials and that it is verified."""
        identity = self.settings.from_address
        try:
            client = await self._sesv2()
            found = await client.get_email_identity(EmailIdentity=identity)
        except (boto.BotoCoreError, boto.ClientError, OSError, ValueError) as exc:
            return ProviderCheck.failed(classify(exc, self.settings.secrets()))
        # Either field says "verified" (moto fills only VerificationStatus).
        verified = (
            found.get("VerifiedForSendingStatus") or found.get("VerificationStatus") == "SUCCESS"
        )
        if not verified:
            return ProviderCheck(False, f"configuration: sender {identity} is not verified")
        return ProviderCheck(True, f"sender {identity} verified in {self.settings.region}")

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Send one email; classify whatever SES (or the network) answers."""
        if not message.recipient.email:
            return PermanentFailure("invalid_recipient", "ses: the recipient has no email")
        try:
            client = await self._sesv2()
            response = await client.send_email(**send_email_request(self.settings, message))
        except (boto.BotoCoreError, boto.ClientError, OSError, ValueError) as exc:
            return classify(exc, self.settings.secrets())
        message_id = response.get("MessageId") if isinstance(response, dict) else None
        if not isinstance(message_id, str) or not message_id:
            return TransientFailure("unexpected_response", "ses: SendEmail gave no MessageId")
        return Delivered(message_id)

    async def close(self) -> None:
        """Close the client and its connection pool."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def classify(exc: BaseException, secrets: tuple[str, ...] = ()) -> DeliveryResult:
    """Translate a botocore error into a delivery result."""
    refused = guard.refusal_of(exc)
    if refused is not None:
        return guard.refused_failure("ses", refused)
    if isinstance(exc, boto.ClientError):
        return _classify_client_error(exc, secrets)
    text = redact(f"ses: {type(exc).__name__}: {exc}", secrets)
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


def _classify_client_error(exc: Any, secrets: tuple[str, ...]) -> DeliveryResult:
    response = exc.response if isinstance(exc.response, dict) else {}
    error = response.get("Error") or {}
    code = str(error.get("Code") or "Unknown")
    detail = str(error.get("Message") or exc)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    # SES's documented error message, bounded and sanitised: tenants read it.
    text = tenant_text(f"ses {code}: {detail}", secrets, limit=TENANT_TEXT_CHARS + 60)
    if code in THROTTLING_CODES:
        return TransientFailure("rate_limited", text, code=code)
    if code in UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500):
        return TransientFailure("provider_error", text, code=code)
    if code == "MessageRejected" and "not verified" in detail.lower():
        # SES says MessageRejected both for content it refuses and for an
        # unverified identity: the sender, or in the sandbox the recipient.
        # The latter is the account's setup, not this message, so operators
        # must see it (verify the identity or leave the sandbox).
        return PermanentFailure("identity_not_verified", text, code=code, configuration=True)
    if code in CONFIGURATION_CODES or status in (401, 403):
        return PermanentFailure("ses_configuration", text, code=code, configuration=True)
    if code in PERMANENT_CODES or (isinstance(status, int) and 400 <= status < 500):
        return PermanentFailure("message_rejected", text, code=code)
    return TransientFailure("provider_error", text, code=code)
