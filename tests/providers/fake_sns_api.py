"""A local Amazon SNS query API, for the answers moto cannot give.

moto (``test_sns.py``) serves the successful calls, but it checks no
credentials and never throttles. This fake speaks SNS's query protocol as
documented: a form-encoded POST with ``Action`` and ``Version=2010-03-31``,
signed with SigV4 (the ``Authorization`` header's credential scope must name
the access key, the region and ``sns``), answered with a ``PublishResponse``
or with the ``ErrorResponse`` XML every AWS query API uses::

    async with FakeSnsApi(access_key="AKIA...", region="eu-west-1") as sns:
        sns.queue_error(403, "AuthorizationError", "User ... is not authorized")
        ...  # point the adapter's endpoint_url at sns.base_url
        assert sns.requests[0].form["Action"] == "Publish"
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

from aiohttp import web

from .fake_http import FakeHttpServer, ReceivedRequest

XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"
ACTIONS = frozenset({"Publish", "GetSMSAttributes", "CheckIfPhoneNumberIsOptedOut"})


def error_xml(code: str, message: str, *, fault: str = "Sender") -> str:
    """The body of an SNS error answer."""
    return (
        f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>{fault}</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )


def _xml(status: int, body: str) -> web.Response:
    return web.Response(status=status, body=body.encode(), content_type="text/xml")


class FakeSnsApi(FakeHttpServer):
    """SNS's query API: validates each call like SNS, then answers it or a scripted error."""

    def __init__(self, *, access_key: str, region: str) -> None:
        super().__init__()
        self.access_key = access_key
        self.region = region
        self.published: list[dict[str, str]] = []

    def queue_error(self, status: int, code: str, message: str, *, fault: str = "Sender") -> None:
        """Answer the next valid call with this documented error."""
        self.queue_response(status, error_xml(code, message, fault=fault), headers=_XML)

    def queue_publish_without_message_id(self) -> None:
        """A 200 whose PublishResult lacks the MessageId (an unclear answer)."""
        body = f'<PublishResponse xmlns="{XMLNS}"><PublishResult/></PublishResponse>'
        self.queue_response(200, body, headers=_XML)

    async def handle(self, request: ReceivedRequest) -> web.StreamResponse:
        form = request.form
        if request.method != "POST" or form.get("Version") != "2010-03-31":
            return _xml(400, error_xml("InvalidAction", "not an SNS query request"))
        scope = f"Credential={self.access_key}/"
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 ") or scope not in auth:
            return _xml(403, error_xml("InvalidClientTokenId", "The security token is invalid."))
        if f"/{self.region}/sns/aws4_request" not in auth:
            return _xml(403, error_xml("SignatureDoesNotMatch", "Credential should be scoped."))
        action = form.get("Action", "")
        if action not in ACTIONS:
            return _xml(400, error_xml("InvalidAction", f"{action} is not valid"))
        if action == "Publish" and not (form.get("PhoneNumber") and form.get("Message")):
            return _xml(400, error_xml("InvalidParameter", "Invalid parameter: PhoneNumber"))
        return await self.answer(request)

    def accept(self, request: ReceivedRequest) -> web.StreamResponse:
        action = request.form["Action"]
        if action == "GetSMSAttributes":
            return _xml(
                200,
                f'<GetSMSAttributesResponse xmlns="{XMLNS}"><GetSMSAttributesResult>'
                "<attributes><entry><key>DefaultSMSType</key><value>Promotional</value>"
                "</entry></attributes></GetSMSAttributesResult></GetSMSAttributesResponse>",
            )
        if action == "CheckIfPhoneNumberIsOptedOut":
            return _xml(
                200,
                f'<CheckIfPhoneNumberIsOptedOutResponse xmlns="{XMLNS}">'
                "<CheckIfPhoneNumberIsOptedOutResult><isOptedOut>false</isOptedOut>"
                "</CheckIfPhoneNumberIsOptedOutResult></CheckIfPhoneNumberIsOptedOutResponse>",
            )
        self.published.append(request.form)
        return _xml(
            200,
            f'<PublishResponse xmlns="{XMLNS}"><PublishResult>'
            f"<MessageId>{uuid.uuid4()}</MessageId></PublishResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</PublishResponse>",
        )


_XML = {"Content-Type": "text/xml"}
