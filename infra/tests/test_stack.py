"""The CDK app, synthesized offline and read back as CloudFormation.

Synthesis runs CDK's constructs in Node.js through jsii, which takes seconds,
so each app is synthesized once per module and its template shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Annotations, Match, Template

import app as app_module
from integration_hub_infra import STACK_NAME, HubStack, SettingsError, build, parse_regions
from integration_hub_infra.settings import (
    WEBHOOK_REQUEST_TIMEOUT_SECONDS,
    WEBHOOKS_EVERY_SECONDS,
)
from integration_hub_infra.stack import (
    API_HANDLER,
    RECEIPT_ROUTES,
    RECONCILE_HANDLER,
    RECONCILER_INDEX,
    SMS_PUBLISH_SID,
    WEBHOOKS_HANDLER,
    WORKER_HANDLER,
)

Json = dict[str, Any]


@dataclass(frozen=True)
class Synthesized:
    stack: HubStack
    template: Template

    def logical_id(self, construct: Any) -> str:
        """The CloudFormation id of an L2 construct of the stack."""
        return self.stack.get_logical_id(construct.node.default_child)

    def resources(self, kind: str, props: Json | None = None) -> dict[str, Json]:
        found = self.template.find_resources(kind, {"Properties": props} if props else None)
        return {name: dict(resource) for name, resource in found.items()}

    def one(self, kind: str, props: Json | None = None) -> Json:
        found = self.resources(kind, props)
        assert len(found) == 1, f"{len(found)} {kind} match {props}"
        return next(iter(found.values()))

    def statements_of(self, role: Any) -> list[Json]:
        """Every statement of the identity policies attached to ``role``."""
        ref = {"Ref": self.logical_id(role)}
        statements: list[Json] = []
        for policy in self.resources("AWS::IAM::Policy").values():
            if ref in policy["Properties"]["Roles"]:
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
        return statements

    def grants_of(self, role: Any) -> dict[str, list[Any]]:
        """action → the resources it is allowed on, for ``role``.

        The worker's SMS statement (``SMS_PUBLISH_SID``), the one with a
        condition, is left out: test_the_worker_may_publish_sms_only_in_its_region
        checks it whole.
        """
        grants: dict[str, list[Any]] = {}
        for statement in self.statements_of(role):
            assert statement["Effect"] == "Allow"
            if statement.get("Sid") == SMS_PUBLISH_SID:
                continue
            assert "Condition" not in statement
            for action in as_list(statement["Action"]):
                grants.setdefault(action, []).extend(as_list(statement["Resource"]))
        return grants


def as_list(value: Any) -> list[Any]:
    """IAM allows one value or a list wherever a list goes."""
    return value if isinstance(value, list) else [value]


def synth(context: Json) -> list[Synthesized]:
    stacks = build(App(context=context))
    return [Synthesized(stack, Template.from_stack(stack)) for stack in stacks]


@pytest.fixture(scope="module")
def hub() -> Synthesized:
    """The default app: one stack, every parameter at its default."""
    (only,) = synth({})
    return only


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Every context parameter set to something other than its default."""
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / "integration_hub").mkdir()
    (bundle / "integration_hub" / "__init__.py").write_text("")
    (only,) = synth(
        {
            "prefix": "acme-prod",
            "maxReceiveCount": "8",
            "workerTimeoutSeconds": "120",
            "oldestMessageAgeAlarmSeconds": "1800",
            "lambdaBundle": str(bundle),
            "alarmEmail": "oncall@example.com",
            "destroyData": "true",
            "reconcileEveryMinutes": "5",
            "reconcileAfterSeconds": "600",
        }
    )
    return only


@pytest.fixture(scope="module")
def regional() -> list[Synthesized]:
    return synth({"regions": '{"eu-west-1": ["es", "FR", "IT", "GR"], "us-east-1": ["US", "UK"]}'})


# -- resources -------------------------------------------------------------------


def test_the_stack_holds_the_hub_and_nothing_else(hub: Synthesized) -> None:
    expected = {
        "AWS::ApiGatewayV2::Api": 1,
        "AWS::ApiGatewayV2::Integration": 1,
        # $default and the five receipt callbacks (RECEIPT_ROUTES).
        "AWS::ApiGatewayV2::Route": 6,
        "AWS::ApiGatewayV2::Stage": 1,
        "AWS::Lambda::Function": 4,
        # The reconciler's and the webhooks' schedules, and API Gateway once per route.
        "AWS::Lambda::Permission": 8,
        "AWS::Lambda::EventSourceMapping": 1,
        "AWS::Events::Rule": 2,
        "AWS::Logs::LogGroup": 4,
        "AWS::IAM::Role": 4,
        "AWS::IAM::Policy": 4,
        "AWS::SQS::Queue": 2,
        "AWS::SQS::QueuePolicy": 2,
        "AWS::DynamoDB::Table": 1,
        "AWS::KMS::Key": 1,
        "AWS::CloudWatch::Alarm": 6,
        "AWS::SNS::Topic": 1,
    }
    resources = hub.template.to_json()["Resources"]
    counted: dict[str, int] = {}
    for resource in resources.values():
        counted[resource["Type"]] = counted.get(resource["Type"], 0) + 1
    assert counted == expected


def test_the_http_api_sends_every_route_to_the_api_function(hub: Synthesized) -> None:
    hub.template.has_resource_properties(
        "AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP", "Name": "ihub-api"}
    )
    hub.template.has_resource_properties("AWS::ApiGatewayV2::Route", {"RouteKey": "$default"})
    hub.template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {
            "IntegrationType": "AWS_PROXY",
            "PayloadFormatVersion": "2.0",
            "IntegrationUri": {"Fn::GetAtt": [hub.logical_id(hub.stack.api_function), "Arn"]},
        },
    )


# -- queue -----------------------------------------------------------------------


def test_the_queue_moves_a_message_to_the_dlq_after_10_receives_by_default(
    hub: Synthesized,
) -> None:
    queue = hub.one("AWS::SQS::Queue", {"QueueName": "ihub-notifications"})
    assert queue["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [hub.logical_id(hub.stack.dead_letter_queue), "Arn"]},
        "maxReceiveCount": 10,
    }


def test_max_receive_count_comes_from_the_context(tuned: Synthesized) -> None:
    queue = tuned.one("AWS::SQS::Queue", {"QueueName": "acme-prod-notifications"})
    assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 8


@pytest.mark.parametrize(("fixture", "worker_timeout"), [("hub", 60), ("tuned", 120)])
def test_the_visibility_timeout_is_six_worker_timeouts(
    fixture: str, worker_timeout: int, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(fixture)
    worker = synthesized.one("AWS::Lambda::Function", {"Handler": WORKER_HANDLER})
    queue = synthesized.resources("AWS::SQS::Queue")[
        synthesized.logical_id(synthesized.stack.queue)
    ]
    assert worker["Properties"]["Timeout"] == worker_timeout
    assert queue["Properties"]["VisibilityTimeout"] == 6 * worker_timeout
    # The hub's claim lease is the queue's visibility: it outlives an invocation,
    # so no other worker takes over a claim while a timed-out one may still run.
    lease = worker["Properties"]["Environment"]["Variables"]["IHUB_VISIBILITY_TIMEOUT_SECONDS"]
    assert int(lease) == 6 * worker_timeout


def test_a_max_receive_count_within_the_attempt_budget_is_flagged() -> None:
    (low,) = synth({"maxReceiveCount": "5"})
    Annotations.from_stack(low.stack).has_warning(
        "*", Match.string_like_regexp("maxReceiveCount 5 is not above")
    )


def test_both_queues_are_encrypted_and_refuse_plain_http(hub: Synthesized) -> None:
    queues = hub.resources("AWS::SQS::Queue")
    assert len(queues) == 2
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())
    for policy in hub.resources("AWS::SQS::QueuePolicy").values():
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_worker_takes_batches_of_10_and_reports_item_failures(hub: Synthesized) -> None:
    mapping = hub.one("AWS::Lambda::EventSourceMapping")
    assert mapping["Properties"] == {
        "BatchSize": 10,
        "EventSourceArn": {"Fn::GetAtt": [hub.logical_id(hub.stack.queue), "Arn"]},
        "FunctionName": {"Ref": hub.logical_id(hub.stack.worker_function)},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }


# -- functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler", [API_HANDLER, WORKER_HANDLER, RECONCILE_HANDLER, WEBHOOKS_HANDLER]
)
def test_the_functions_run_python_3_12_on_arm64(hub: Synthesized, handler: str) -> None:
    function = hub.one("AWS::Lambda::Function", {"Handler": handler})["Properties"]
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    assert function["MemorySize"] >= 512
    assert function["LoggingConfig"]["LogGroup"]["Ref"] in hub.resources("AWS::Logs::LogGroup")


def test_the_api_function_answers_within_the_api_gateway_limit(hub: Synthesized) -> None:
    function = hub.one("AWS::Lambda::Function", {"Handler": API_HANDLER})
    assert function["Properties"]["Timeout"] < 30


def test_the_functions_are_pointed_at_the_table_queue_and_key(hub: Synthesized) -> None:
    for function in hub.resources("AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["IHUB_DATABASE_URL"] == {
            "Fn::Join": ["", ["dynamodb://ihub?queue=", {"Ref": hub.logical_id(hub.stack.queue)}]]
        }
        assert variables["IHUB_KMS_KEY_ID"] == {
            "Fn::GetAtt": [hub.logical_id(hub.stack.credentials_key), "Arn"]
        }
        # The hub refuses a lease not longer than a provider call.
        assert int(variables["IHUB_VISIBILITY_TIMEOUT_SECONDS"]) > int(
            variables["IHUB_PROVIDER_TIMEOUT_SECONDS"]
        )
        assert "IHUB_ENABLED_COUNTRIES" not in variables


def test_the_placeholder_code_is_flagged_before_a_deploy(hub: Synthesized) -> None:
    Annotations.from_stack(hub.stack).has_warning(
        "*", Match.string_like_regexp("lambda_placeholder")
    )


def test_a_built_bundle_replaces_the_placeholder_without_a_warning(tuned: Synthesized) -> None:
    assert not tuned.stack.settings.uses_placeholder_bundle
    Annotations.from_stack(tuned.stack).has_no_warning("*", Match.any_value())


# -- table and key ---------------------------------------------------------------


def test_the_table_is_on_demand_with_pitr_ttl_and_encryption(hub: Synthesized) -> None:
    table = hub.one("AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["TableName"] == "ihub-hub"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_ttl", "Enabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionPolicy"] == "Retain"
    assert [g["IndexName"] for g in props["GlobalSecondaryIndexes"]] == [
        "GSI1",
        "GSI2",
        "GSI3",
        "GSI4",
        "GSI5",
    ]


def test_the_table_is_the_one_the_dynamodb_backend_creates(hub: Synthesized) -> None:
    tables = pytest.importorskip("integration_hub.adapters.aws.tables")
    expected = tables.definition(tables.table_name("ihub"))
    props = hub.one("AWS::DynamoDB::Table")["Properties"]
    assert props["TableName"] == expected["TableName"]
    assert props["KeySchema"] == expected["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(
        expected["AttributeDefinitions"], key=str
    )
    assert props["GlobalSecondaryIndexes"] == expected["GlobalSecondaryIndexes"]


def test_the_credentials_key_rotates_and_outlives_the_stack(hub: Synthesized) -> None:
    key = hub.one("AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"


def test_destroy_data_lets_a_test_deployment_be_torn_down(tuned: Synthesized) -> None:
    assert tuned.one("AWS::DynamoDB::Table")["DeletionPolicy"] == "Delete"
    key = tuned.one("AWS::KMS::Key")
    assert key["DeletionPolicy"] == "Delete"
    assert key["Properties"]["PendingWindowInDays"] == 7


# -- permissions -----------------------------------------------------------------


def table_resources(s: Synthesized) -> list[Any]:
    arn = {"Fn::GetAtt": [s.logical_id(s.stack.table), "Arn"]}
    return [arn, {"Fn::Join": ["", [arn, "/index/*"]]}]


def test_the_api_may_write_the_table_send_to_the_queue_and_make_data_keys(
    hub: Synthesized,
) -> None:
    s = hub.stack
    grants = hub.grants_of(s.api_function.role)
    key = [{"Fn::GetAtt": [hub.logical_id(s.credentials_key), "Arn"]}]
    logs = [{"Fn::GetAtt": [hub.logical_id(s.api_function.log_group), "Arn"]}]
    table = table_resources(hub)
    queue = [{"Fn::GetAtt": [hub.logical_id(s.queue), "Arn"]}]
    dlq = [{"Fn::GetAtt": [hub.logical_id(s.dead_letter_queue), "Arn"]}]
    assert grants == {
        "dynamodb:GetItem": table,
        "dynamodb:PutItem": table,
        "dynamodb:UpdateItem": table,
        "dynamodb:DeleteItem": table,
        "dynamodb:Query": table,
        "dynamodb:ConditionCheckItem": table,
        "sqs:SendMessage": queue,
        # The admin API's /queue-dead-letters: find the DLQ, look, send back, delete.
        "sqs:GetQueueAttributes": queue,
        "sqs:GetQueueUrl": dlq,
        "sqs:ReceiveMessage": dlq,
        "sqs:ChangeMessageVisibility": dlq,
        "sqs:DeleteMessage": dlq,
        "kms:GenerateDataKey": key,
        "kms:Decrypt": key,
        "logs:CreateLogStream": logs,
        "logs:PutLogEvents": logs,
    }


def test_the_worker_may_consume_the_queue_decrypt_and_send_email(hub: Synthesized) -> None:
    s = hub.stack
    grants = hub.grants_of(s.worker_function.role)
    queue = [{"Fn::GetAtt": [hub.logical_id(s.queue), "Arn"]}]
    logs = [{"Fn::GetAtt": [hub.logical_id(s.worker_function.log_group), "Arn"]}]
    table = table_resources(hub)
    ses = [
        {
            "Fn::Join": [
                "",
                ["arn:", {"Ref": "AWS::Partition"}, ":ses:*:", {"Ref": "AWS::AccountId"}, tail],
            ]
        }
        for tail in (":identity/*", ":configuration-set/*")
    ]
    assert grants == {
        "dynamodb:GetItem": table,
        "dynamodb:PutItem": table,
        "dynamodb:UpdateItem": table,
        "dynamodb:Query": table,
        "dynamodb:ConditionCheckItem": table,
        "sqs:ReceiveMessage": queue,
        "sqs:DeleteMessage": queue,
        "sqs:ChangeMessageVisibility": queue,
        "sqs:GetQueueAttributes": queue,
        "sqs:GetQueueUrl": queue,
        "kms:Decrypt": [{"Fn::GetAtt": [hub.logical_id(s.credentials_key), "Arn"]}],
        "ses:SendEmail": ses,
        "logs:CreateLogStream": logs,
        "logs:PutLogEvents": logs,
    }


SMS_PUBLISH = {
    "Sid": SMS_PUBLISH_SID,
    "Effect": "Allow",
    "Action": "sns:Publish",
    "Resource": "*",
    "Condition": {"StringEquals": {"aws:RequestedRegion": {"Ref": "AWS::Region"}}},
}


def test_the_worker_may_publish_sms_only_in_its_region(hub: Synthesized) -> None:
    # SNS evaluates a Publish to a phone number against the number, which has
    # no ARN: "*" is the only resource allowing it. Narrowed to the one action
    # and the stack's region.
    sms = [
        st
        for st in hub.statements_of(hub.stack.worker_function.role)
        if "sns:Publish" in st["Action"]
    ]
    assert sms == [SMS_PUBLISH]


def test_a_regional_stack_publishes_sms_in_its_own_region(regional: list[Synthesized]) -> None:
    for stack in regional:
        [sms] = [
            st
            for st in stack.statements_of(stack.stack.worker_function.role)
            if st.get("Sid") == SMS_PUBLISH_SID
        ]
        assert sms["Condition"] == {"StringEquals": {"aws:RequestedRegion": stack.stack.region}}
        assert stack.stack.region in ("eu-west-1", "us-east-1")


def test_no_identity_policy_allows_every_resource(hub: Synthesized) -> None:
    # The only "*" is in the KMS key policy, where it means "this key" (a key
    # policy cannot name its own ARN), and in the worker's SMS statement
    # (SMS_PUBLISH: one action, one region), which no other role has.
    worker = {"Ref": hub.logical_id(hub.stack.worker_function.role)}
    for policy in hub.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not any(action.endswith("*") for action in as_list(statement["Action"]))
            if statement == SMS_PUBLISH:
                assert policy["Properties"]["Roles"] == [worker]
                continue
            assert "*" not in as_list(statement["Resource"])
    for role in hub.resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


def test_the_reconciler_may_only_query_the_received_index_touch_items_and_send(
    hub: Synthesized,
) -> None:
    """Re-enqueue (UpdateItem) and expire deliveries (GetItem, UpdateItem + PutItem)."""
    s = hub.stack
    grants = hub.grants_of(s.reconciler_function.role)
    table = {"Fn::GetAtt": [hub.logical_id(s.table), "Arn"]}
    logs = [{"Fn::GetAtt": [hub.logical_id(s.reconciler_function.log_group), "Arn"]}]
    assert grants == {
        "dynamodb:Query": [{"Fn::Join": ["", [table, "/index/GSI4"]]}],
        "dynamodb:GetItem": [table],
        "dynamodb:PutItem": [table],
        "dynamodb:UpdateItem": [table],
        "sqs:SendMessage": [{"Fn::GetAtt": [hub.logical_id(s.queue), "Arn"]}],
        "logs:CreateLogStream": logs,
        "logs:PutLogEvents": logs,
    }


def test_the_reconcilers_index_is_the_one_the_backend_queries() -> None:
    """Both periodic jobs it runs read one index: RECEIVED for reconcile, sent for expiry."""
    tables = pytest.importorskip("integration_hub.adapters.aws.tables")
    assert tables.RECEIVED_INDEX == RECONCILER_INDEX
    assert tables.SENT_INDEX == RECONCILER_INDEX
    assert RECONCILER_INDEX in tables.GSIS


@pytest.mark.parametrize(("fixture", "minutes", "after"), [("hub", 1, 300), ("tuned", 5, 600)])
def test_an_eventbridge_rule_runs_the_reconciler_on_schedule(
    fixture: str, minutes: int, after: int, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(fixture)
    rule = s.one("AWS::Events::Rule", {"Description": Match.string_like_regexp("Re-enqueue")})[
        "Properties"
    ]
    unit = "minute" if minutes == 1 else "minutes"
    assert rule["ScheduleExpression"] == f"rate({minutes} {unit})"
    assert rule["State"] == "ENABLED"
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [s.logical_id(s.stack.reconciler_function), "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0}
    function = s.one("AWS::Lambda::Function", {"Handler": RECONCILE_HANDLER})["Properties"]
    assert function["Environment"]["Variables"]["IHUB_RECONCILE_AFTER_SECONDS"] == str(after)
    # Runs never pile up: one ends before the next starts.
    assert function["Timeout"] <= 60 * minutes
    permission = s.one(
        "AWS::Lambda::Permission",
        {
            "Principal": "events.amazonaws.com",
            "FunctionName": {"Fn::GetAtt": [s.logical_id(s.stack.reconciler_function), "Arn"]},
        },
    )
    assert permission["Properties"]["SourceArn"] == {
        "Fn::GetAtt": [s.logical_id(s.stack.reconcile_rule), "Arn"]
    }


def test_an_eventbridge_rule_runs_the_webhook_delivery_loop_every_minute(
    hub: Synthesized,
) -> None:
    s = hub.stack
    rule = hub.one("AWS::Events::Rule", {"Description": Match.string_like_regexp("webhooks")})[
        "Properties"
    ]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [hub.logical_id(s.webhooks_function), "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0}
    permission = hub.one(
        "AWS::Lambda::Permission",
        {
            "Principal": "events.amazonaws.com",
            "FunctionName": {"Fn::GetAtt": [hub.logical_id(s.webhooks_function), "Arn"]},
        },
    )
    assert permission["Properties"]["SourceArn"] == {
        "Fn::GetAtt": [hub.logical_id(s.webhooks_rule), "Arn"]
    }
    function = hub.one("AWS::Lambda::Function", {"Handler": WEBHOOKS_HANDLER})["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["IHUB_WEBHOOKS_TIMEOUT_SECONDS"] == str(WEBHOOK_REQUEST_TIMEOUT_SECONDS)
    # It claims for its timeout less one request and the handler's margin: that
    # covers the whole minute, so claiming never pauses between invocations,
    # and what is in flight finishes before Lambda's timeout.
    from integration_hub.entrypoints.aws_lambda import WEBHOOKS_MARGIN_SECONDS

    claiming = function["Timeout"] - WEBHOOK_REQUEST_TIMEOUT_SECONDS - WEBHOOKS_MARGIN_SECONDS
    assert claiming >= WEBHOOKS_EVERY_SECONDS
    assert function["Timeout"] <= 900


def test_the_webhook_loop_may_touch_the_table_and_open_secrets_only(hub: Synthesized) -> None:
    s = hub.stack
    grants = hub.grants_of(s.webhooks_function.role)
    table = table_resources(hub)
    logs = [{"Fn::GetAtt": [hub.logical_id(s.webhooks_function.log_group), "Arn"]}]
    assert grants == {
        "dynamodb:GetItem": table,
        "dynamodb:PutItem": table,
        "dynamodb:UpdateItem": table,
        "dynamodb:DeleteItem": table,
        "dynamodb:Query": table,
        "dynamodb:ConditionCheckItem": table,
        "kms:Decrypt": [{"Fn::GetAtt": [hub.logical_id(s.credentials_key), "Arn"]}],
        "logs:CreateLogStream": logs,
        "logs:PutLogEvents": logs,
    }


def test_only_this_http_api_may_invoke_the_api_function(hub: Synthesized) -> None:
    permissions = hub.resources(
        "AWS::Lambda::Permission", {"Principal": "apigateway.amazonaws.com"}
    )
    assert len(permissions) == 6  # one per route
    for found in permissions.values():
        permission = found["Properties"]
        assert permission["FunctionName"] == {
            "Fn::GetAtt": [hub.logical_id(hub.stack.api_function), "Arn"]
        }
        assert hub.logical_id(hub.stack.http_api) in json.dumps(permission["SourceArn"])


def test_the_receipt_callbacks_are_public_routes_to_the_api_function(hub: Synthesized) -> None:
    """Providers sign their callbacks and cannot present an authorizer's credentials."""
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in hub.resources("AWS::ApiGatewayV2::Route").values()
    }
    receipts = {key: route for key, route in routes.items() if "/v1/receipts/" in key}
    assert sorted(receipts) == [
        "GET /v1/receipts/whatsapp/{tenant}",
        "POST /v1/receipts/ses/{tenant}",
        "POST /v1/receipts/twilio/{tenant}",
        "POST /v1/receipts/twilio_whatsapp/{tenant}",
        "POST /v1/receipts/whatsapp/{tenant}",
    ]
    [integration] = hub.resources("AWS::ApiGatewayV2::Integration")
    for route in [*receipts.values(), routes["$default"]]:
        assert route["AuthorizationType"] == "NONE"
        assert "AuthorizerId" not in route
        assert route["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration}]]}


def test_the_api_function_serves_every_receipt_route() -> None:
    """The routes the stack opens are the ones the FastAPI app (the API function) has."""
    api = pytest.importorskip("integration_hub.entrypoints.api")
    # Skipped only where the receipt endpoints are not part of the app at all.
    pytest.importorskip("integration_hub.entrypoints.api.receipts")
    receipts = [f"{method.value} {path}" for path, methods in RECEIPT_ROUTES for method in methods]
    assert len(receipts) == 5
    # The OpenAPI document lists every route of the app, included routers too.
    paths = api.create_app().openapi()["paths"]
    for key in receipts:
        method, path = key.split(" ")
        assert method.lower() in paths.get(path, {}), f"{key} has no FastAPI route"


# -- alarms and outputs ----------------------------------------------------------


def alarm(s: Synthesized, metric: str) -> Json:
    props: Json = s.one("AWS::CloudWatch::Alarm", {"MetricName": metric})["Properties"]
    assert props["AlarmActions"] == [{"Ref": s.logical_id(s.stack.alarm_topic)}]
    assert props["TreatMissingData"] == "notBreaching"
    return props


def test_a_message_in_the_dlq_raises_an_alarm(hub: Synthesized) -> None:
    props = alarm(hub, "ApproximateNumberOfMessagesVisible")
    assert props["Namespace"] == "AWS/SQS"
    assert props["Dimensions"] == [
        {
            "Name": "QueueName",
            "Value": {"Fn::GetAtt": [hub.logical_id(hub.stack.dead_letter_queue), "QueueName"]},
        }
    ]
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Threshold"] == 0


@pytest.mark.parametrize(("fixture", "threshold"), [("hub", 900), ("tuned", 1800)])
def test_an_old_message_in_the_queue_raises_an_alarm(
    fixture: str, threshold: int, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(fixture)
    props = alarm(s, "ApproximateAgeOfOldestMessage")
    assert props["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": [s.logical_id(s.stack.queue), "QueueName"]
    }
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Threshold"] == threshold


def errors_alarm_of(hub: Synthesized, function: Any) -> Json:
    """The properties of the alarm on ``function``'s Errors metric."""
    alarms = hub.resources("AWS::CloudWatch::Alarm", {"MetricName": "Errors"})
    by_function = {
        a["Properties"]["Dimensions"][0]["Value"]["Ref"]: a["Properties"] for a in alarms.values()
    }
    found: Json = by_function[hub.logical_id(function)]
    return found


def test_worker_errors_raise_an_alarm(hub: Synthesized) -> None:
    worker = errors_alarm_of(hub, hub.stack.worker_function)
    assert worker["Namespace"] == "AWS/Lambda"
    assert worker["Statistic"] == "Sum"
    assert worker["Threshold"] == 0
    assert worker["AlarmActions"] == [{"Ref": hub.logical_id(hub.stack.alarm_topic)}]


def test_reconciler_errors_raise_an_alarm(hub: Synthesized) -> None:
    reconciler = errors_alarm_of(hub, hub.stack.reconciler_function)
    assert reconciler["Threshold"] == 0
    assert reconciler["AlarmActions"] == [{"Ref": hub.logical_id(hub.stack.alarm_topic)}]


def test_webhook_loop_errors_raise_an_alarm(hub: Synthesized) -> None:
    loop = errors_alarm_of(hub, hub.stack.webhooks_function)
    assert loop["Threshold"] == 0
    assert loop["AlarmActions"] == [{"Ref": hub.logical_id(hub.stack.alarm_topic)}]


def test_alarm_email_subscribes_to_the_alarm_topic(hub: Synthesized, tuned: Synthesized) -> None:
    assert "Subscription" not in hub.one("AWS::SNS::Topic")["Properties"]
    tuned.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"}
    )


def test_the_outputs_name_the_api_queue_and_table(hub: Synthesized) -> None:
    outputs = hub.template.find_outputs("*")
    s = hub.stack
    assert outputs["QueueUrl"]["Value"] == {"Ref": hub.logical_id(s.queue)}
    assert outputs["TableName"]["Value"] == {"Ref": hub.logical_id(s.table)}
    assert hub.logical_id(s.http_api) in json.dumps(outputs["ApiUrl"]["Value"])
    assert set(outputs) >= {"ApiUrl", "QueueUrl", "DeadLetterQueueUrl", "TableName"}


# -- regions and context ---------------------------------------------------------


def test_a_regions_context_makes_one_stack_per_region_with_its_countries(
    regional: list[Synthesized],
) -> None:
    by_region = {s.stack.region: s for s in regional}
    assert {s.stack.stack_name for s in regional} == {
        f"{STACK_NAME}-eu-west-1",
        f"{STACK_NAME}-us-east-1",
    }
    expected = {"eu-west-1": "ES,FR,IT,GR", "us-east-1": "US,GB"}
    for region, countries in expected.items():
        functions = by_region[region].resources("AWS::Lambda::Function")
        # API, worker, reconciler and webhook loop of this region's table
        assert len(functions) == 4
        assert len(by_region[region].resources("AWS::Events::Rule")) == 2
        for function in functions.values():
            variables = function["Properties"]["Environment"]["Variables"]
            assert variables["IHUB_ENABLED_COUNTRIES"] == countries


def test_without_regions_there_is_a_single_stack(hub: Synthesized) -> None:
    assert hub.stack.stack_name == STACK_NAME
    assert hub.stack.countries == ()


@pytest.mark.parametrize(
    ("regions", "error"),
    [
        ("{not json", "not JSON"),
        ('["ES"]', "must be an object"),
        ('{"europe": ["ES"]}', "not an AWS region"),
        ('{"eu-west-1": []}', "non-empty list"),
        ('{"eu-west-1": ["ESP"]}', "two-letter"),
        ('{"eu-west-1": ["GB"], "us-east-1": ["UK"]}', "GB is in both eu-west-1 and us-east-1"),
    ],
)
def test_a_bad_regions_context_is_refused(regions: str, error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        parse_regions(regions)


@pytest.mark.parametrize(
    ("context", "error"),
    [
        ({"maxReceiveCount": "0"}, "maxReceiveCount must be between 1 and 1000"),
        ({"maxReceiveCount": "five"}, "maxReceiveCount must be an integer"),
        ({"workerTimeoutSeconds": "20"}, "workerTimeoutSeconds must be between 30 and 900"),
        ({"lambdaBundle": "no/such/dir"}, "is not a directory"),
        ({"prefix": "Bad_Prefix"}, "prefix"),
        ({"reconcileEveryMinutes": "0"}, "reconcileEveryMinutes must be between 1 and 60"),
        ({"reconcileAfterSeconds": "5"}, "reconcileAfterSeconds must be between 60 and 86400"),
    ],
)
def test_bad_context_parameters_are_refused_before_synthesis(context: Json, error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        build(App(context=context))


def test_the_app_entry_point_writes_the_assembly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    assembly = app_module.main(["-c", "maxReceiveCount=7"])
    assert assembly == tmp_path
    template = json.loads((tmp_path / f"{STACK_NAME}.template.json").read_text())
    redrives = [
        r["Properties"]["RedrivePolicy"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
    ]
    assert [redrive["maxReceiveCount"] for redrive in redrives] == [7]
    assert f"{STACK_NAME}.template.json" in capsys.readouterr().out
