"""SMS through Amazon SNS ``Publish`` to a phone number, with ``aiobotocore``.

One ``sns`` client per provider (``aws_sdk``, shared with SES), SDK retries
off. Error codes are those of the SNS API reference (Publish,
GetSMSAttributes, CheckIfPhoneNumberIsOptedOut and the common errors of AWS
query APIs); a code we do not know is classified by its HTTP status.

SNS accepts a Publish to a phone number that opted out and then does not
deliver it: only ``CheckIfPhoneNumberIsOptedOut`` tells, which the provider
asks before each send when ``check_opt_out`` is set.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from integration_hub.adapters.providers.aws_sdk import (
    SDK_ERRORS,
    AwsSdkSettings,
    SdkClient,
    classify_sdk_error,
    error_fields,
)
from integration_hub.adapters.providers.http import (
    SNIPPET_CHARS,
    TENANT_TEXT_CHARS,
    redact,
    status_failure,
    tenant_text,
)
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

# Throttled (429) is SNS's own; Throttling is the common AWS one; KMSThrottling
# comes from the KMS key of an encrypted topic or account setting.
THROTTLING_CODES = frozenset({"Throttled", "Throttling", "ThrottlingException", "KMSThrottling"})

UNAVAILABLE_CODES = frozenset(
    {"InternalError", "InternalFailure", "ServiceUnavailable", "RequestTimeout"}
)

# Credentials, permissions, account and key state: every message fails until an operator acts.
CONFIGURATION_CODES = frozenset(
    {
        "AuthorizationError",  # the identity may not sns:Publish (IAM, region)
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidSecurity",
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "OptInRequired",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSInvalidState",
        "KMSNotFound",
        "KMSOptInRequired",
    }
)

# "Invalid parameter": Publish's InvalidParameter, InvalidParameterValue (sent
# as ParameterValueInvalid), and the common ValidationException. Which
# parameter it is decides whose problem it is (see _invalid_parameter).
INVALID_PARAMETER_CODES = frozenset(
    {"InvalidParameter", "ParameterValueInvalid", "InvalidParameterValue", "ValidationException"}
)

_SENDER_ID = re.compile(r"^[A-Za-z0-9]{1,11}$")
_SENDER_SETTINGS = re.compile(r"originationnumber|senderid|messageattribute|smstype", re.I)
_PHONE = re.compile(r"phone ?number", re.I)


class SnsSettings(AwsSdkSettings):
    """Region, endpoint, credentials (``AwsSdkSettings``) and SMS options for SNS."""

    # Transactional: critical messages (codes, alerts), best reliability;
    # Promotional: marketing, lowest cost.
    sms_type: Literal["Transactional", "Promotional"] = "Transactional"
    # A sender ID (where the destination country supports them): 1 to 11
    # letters and digits, at least one letter.
    sender_id: str | None = None
    # A number the account owns (long code, toll-free, 10DLC) or a short code.
    origination_number: str | None = Field(
        default=None, pattern=r"^(\+[1-9][0-9]{4,14}|[0-9]{3,8})$"
    )
    # Ask CheckIfPhoneNumberIsOptedOut before each Publish (one more request).
    check_opt_out: bool = False

    @field_validator("sender_id")
    @classmethod
    def _sender_id(cls, value: str | None) -> str | None:
        if value is not None and (
            not _SENDER_ID.fullmatch(value) or not any(c.isalpha() for c in value)
        ):
            raise ValueError("1 to 11 letters and digits, at least one letter")
        return value


def publish_request(settings: SnsSettings, message: OutboundMessage) -> dict[str, Any]:
    """The ``Publish`` parameters that send ``message`` as an SMS."""
    attributes = {"AWS.SNS.SMS.SMSType": _string(settings.sms_type)}
    if settings.sender_id:
        attributes["AWS.SNS.SMS.SenderID"] = _string(settings.sender_id)
    if settings.origination_number:
        attributes["AWS.MM.SMS.OriginationNumber"] = _string(settings.origination_number)
    return {
        "PhoneNumber": message.recipient.phone,
        "Message": message.body,
        "MessageAttributes": attributes,
    }


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


class SnsProvider:
    """Sends SMS with SNS ``Publish`` (``PhoneNumber``) through one reused client."""

    name: str = "sns"

    def __init__(
        self,
        settings: SnsSettings,
        *,
        session: AioSession | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._sdk = SdkClient("sns", settings, session=session, outbound=outbound)

    def __repr__(self) -> str:
        return f"SnsProvider(region={self.settings.region!r})"

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Publish one SMS; classify whatever SNS (or the network) answers."""
        phone = message.recipient.phone
        if not phone:
            return PermanentFailure("invalid_recipient", "sns: the recipient has no phone")
        secrets = self.settings.secrets()
        try:
            client = await self._sdk.get()
            if self.settings.check_opt_out:
                found = await client.check_if_phone_number_is_opted_out(phoneNumber=phone)
                if found.get("isOptedOut") is True:
                    return PermanentFailure(
                        "opted_out", "sns: the phone number opted out of SMS from this account"
                    )
            response = await client.publish(**publish_request(self.settings, message))
        except SDK_ERRORS as exc:
            return classify(exc, secrets)
        message_id = response.get("MessageId") if isinstance(response, dict) else None
        if not isinstance(message_id, str) or not message_id:
            # SNS may have taken it; a possible duplicate beats a silent loss.
            return TransientFailure("unexpected_response", "sns: Publish gave no MessageId")
        return Delivered(message_id)

    async def check(self) -> ProviderCheck:
        """Read the account's SMS attributes: proves credentials and region, sends nothing."""
        try:
            client = await self._sdk.get()
            found = await client.get_sms_attributes(attributes=["DefaultSMSType"])
        except SDK_ERRORS as exc:
            return ProviderCheck.failed(classify(exc, self.settings.secrets()))
        default = (found.get("attributes") or {}).get("DefaultSMSType", "not set")
        return ProviderCheck(
            True,
            f"SMS in {self.settings.region}: sending {self.settings.sms_type}"
            f" (account default {default})",
        )

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self._sdk.close()


def classify(exc: BaseException, secrets: tuple[str, ...] = ()) -> DeliveryResult:
    """Translate a botocore error into a delivery result."""
    return classify_sdk_error("sns", exc, secrets, lambda e: _classify_client_error(e, secrets))


def _classify_client_error(exc: Any, secrets: tuple[str, ...]) -> DeliveryResult:
    code, detail, status = error_fields(exc)
    # SNS's documented error message, bounded and sanitised: tenants read it.
    text = tenant_text(f"sns {code}: {detail}", secrets, limit=TENANT_TEXT_CHARS + 60)
    raw = redact(f"HTTP {status} {code}: {detail}", secrets)[:SNIPPET_CHARS]
    result = _by_code(code, detail, status, text)
    if isinstance(result, TransientFailure | PermanentFailure):
        result = dataclasses.replace(result, provider_response=raw)
    return result


def _by_code(code: str, detail: str, status: int | None, text: str) -> DeliveryResult:
    if code in THROTTLING_CODES:
        return TransientFailure("rate_limited", text, code=code)
    if code in UNAVAILABLE_CODES or (status is not None and status >= 500):
        return TransientFailure("provider_error", text, code=code)
    if code in CONFIGURATION_CODES:
        return PermanentFailure("sns_configuration", text, code=code, configuration=True)
    if code == "OptedOut":
        return PermanentFailure("opted_out", text, code=code)
    if code in INVALID_PARAMETER_CODES:
        return _invalid_parameter(code, detail, text)
    if status is None:
        return TransientFailure("provider_error", text, code=code)
    return status_failure(
        "sns", status, error_class="provider_rejected", message=text, code=code, retry_after=None
    )


def _invalid_parameter(code: str, detail: str, text: str) -> DeliveryResult:
    """Whose problem an invalid parameter is, from the parameter SNS names.

    The sender ID, origination number and SMS type come from the tenant's
    settings: every message would fail alike. The phone number is the
    recipient's. Anything else (``Message too long``) is this message's.
    """
    if _SENDER_SETTINGS.search(detail):
        return PermanentFailure("invalid_sender", text, code=code, configuration=True)
    if _PHONE.search(detail):
        return PermanentFailure("invalid_recipient", text, code=code)
    return PermanentFailure("message_rejected", text, code=code)
