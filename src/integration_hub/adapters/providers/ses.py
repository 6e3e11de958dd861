"""Email through Amazon SES API v2 ``SendEmail``, with ``aiobotocore``.

One ``sesv2`` client per provider, created on first use and closed by
``close()``, with the SDK's own retries off (``aws_sdk``: shared with SNS).
"""

from __future__ import annotations

import email.utils
import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from integration_hub.adapters.providers.aws_sdk import (
    SDK_ERRORS,
    AwsSdkSettings,
    SdkClient,
    classify_sdk_error,
    error_fields,
)
from integration_hub.adapters.providers.http import TENANT_TEXT_CHARS, tenant_text
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.outbound import OutboundPolicy

if TYPE_CHECKING:
    from aiobotocore.session import AioSession  # type: ignore[import-untyped]

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


class SesSettings(AwsSdkSettings):
    """Region, endpoint, credentials (``AwsSdkSettings``) and sender for SES."""

    from_address: str
    from_name: str | None = None
    reply_to: tuple[str, ...] = ()
    configuration_set: str | None = None
    # Receipts (SNS at /v1/receipts/ses/{tenant}): the topics whose messages
    # the endpoint accepts; any other topic is refused before a certificate
    # is fetched. Empty: the endpoint refuses everything.
    receipt_topic_arns: tuple[
        Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+$")],
        ...,
    ] = ()


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
        self._sdk = SdkClient("sesv2", settings, session=session, outbound=outbound)

    def __repr__(self) -> str:
        return f"SesProvider(region={self.settings.region!r})"

    @property
    def _client(self) -> Any:
        """The ``sesv2`` client once created, else None."""
        return self._sdk.client

    async def check(self) -> ProviderCheck:
        """Read the sender identity: proves the credentials and that it is verified."""
        identity = self.settings.from_address
        try:
            client = await self._sdk.get()
            found = await client.get_email_identity(EmailIdentity=identity)
        except SDK_ERRORS as exc:
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
            client = await self._sdk.get()
            response = await client.send_email(**send_email_request(self.settings, message))
        except SDK_ERRORS as exc:
            return classify(exc, self.settings.secrets())
        message_id = response.get("MessageId") if isinstance(response, dict) else None
        if not isinstance(message_id, str) or not message_id:
            return TransientFailure("unexpected_response", "ses: SendEmail gave no MessageId")
        return Delivered(message_id)

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self._sdk.close()


def classify(exc: BaseException, secrets: tuple[str, ...] = ()) -> DeliveryResult:
    """Translate a botocore error into a delivery result."""
    return classify_sdk_error("ses", exc, secrets, lambda e: _classify_client_error(e, secrets))


def _classify_client_error(exc: Any, secrets: tuple[str, ...]) -> DeliveryResult:
    code, detail, status = error_fields(exc)
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
