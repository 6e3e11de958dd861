"""The AWS deployment of the hub: API Gateway → Lambda, SQS → Lambda, DynamoDB, KMS,
and the reconciler Lambda on an EventBridge schedule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import (
    Annotations,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from integration_hub_infra.settings import (
    PROVIDER_TIMEOUT_SECONDS,
    WEBHOOK_REQUEST_TIMEOUT_SECONDS,
    WEBHOOKS_EVERY_SECONDS,
    WEBHOOKS_FUNCTION_TIMEOUT_SECONDS,
    HubSettings,
)

# The worker's statement allowing SMS through SNS: the one identity policy
# statement whose resource is "*" (see where it is added).
SMS_PUBLISH_SID = "SmsPublishToPhoneNumbers"

API_HANDLER = "integration_hub.entrypoints.aws_lambda.api_handler"
WORKER_HANDLER = "integration_hub.entrypoints.aws_lambda.worker_handler"
RECONCILE_HANDLER = "integration_hub.entrypoints.aws_lambda.reconcile_handler"
WEBHOOKS_HANDLER = "integration_hub.entrypoints.aws_lambda.webhooks_handler"
# The sparse index of RECEIVED notifications, the only one the reconciler reads.
RECONCILER_INDEX = "GSI4"
TTL_ATTRIBUTE = "expires_ttl"
# The public receipt callbacks (issue 15): WhatsApp verifies a webhook with a GET.
RECEIPT_ROUTES = (
    ("/v1/receipts/twilio/{tenant}", (apigw.HttpMethod.POST,)),
    ("/v1/receipts/twilio_whatsapp/{tenant}", (apigw.HttpMethod.POST,)),
    ("/v1/receipts/whatsapp/{tenant}", (apigw.HttpMethod.GET, apigw.HttpMethod.POST)),
    ("/v1/receipts/ses/{tenant}", (apigw.HttpMethod.POST,)),
)
# IHUB_MAX_ATTEMPTS's default, which the stack does not override.
DEFAULT_MAX_ATTEMPTS = 5
GSIS = ("GSI1", "GSI2", "GSI3", "GSI4", "GSI5")


def table_name(prefix: str) -> str:
    """The table that ``IHUB_DATABASE_URL=dynamodb://<prefix>`` names."""
    return f"{prefix}-hub"


# DynamoDB has no IAM action for TransactWriteItems: each item of a
# transaction is authorised by its own action (Put/Update/DeleteItem), and a
# ConditionCheck by dynamodb:ConditionCheckItem.
TRANSACT_ITEM_ACTIONS = ("dynamodb:ConditionCheckItem",)
# The API accepts (idempotency reservation + notification + queue entry in one
# transaction), reads, lists through the GSIs and runs the admin API. DeleteItem
# is there because a refused request must leave no state: its idempotency
# reservation is deleted (README, "Idempotency").
API_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    *TRANSACT_ITEM_ACTIONS,
)
# The worker claims (conditional update), records attempts, finishes and
# dead-letters (transactions) and reads tenants; expiry is DynamoDB's TTL, so
# it deletes nothing.
WORKER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    *TRANSACT_ITEM_ACTIONS,
)
# The reconciler re-enqueues (UpdateItem) and expires deliveries (GetItem, then
# a transaction of UpdateItem + PutItem of the event).
RECONCILER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
# The webhook delivery loop fans events out (Query of the sharded GSI5 queues,
# a transaction of the deliveries' PutItem and the event's UpdateItem), claims
# (conditional UpdateItem; its ConditionCheck of earlier deliveries of the same
# notification, read through GSI3), records attempts, disables failing endpoints
# with an endpoint.disabled event (PutItem), reads endpoints (GetItem, Query) and
# deletes the deliveries of an endpoint deleted meanwhile (DeleteItem).
WEBHOOKS_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    *TRANSACT_ITEM_ACTIONS,
)
# The admin API's /queue-dead-letters lists and redrives SQS's own DLQ: it finds
# the DLQ through the queue's RedrivePolicy, receives (short visibility, then
# visible again), and deletes only what it has sent back to the queue.
API_MAIN_QUEUE_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes")
API_DLQ_ACTIONS = (
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
)
API_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
WORKER_KEY_ACTIONS = ("kms:Decrypt",)
# Endpoint secrets are sealed with the tenant's data key: the loop only opens them.
WEBHOOKS_KEY_ACTIONS = ("kms:Decrypt",)


class HubStack(Stack):
    """One deployment of the hub in one region, optionally for a set of countries."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: HubSettings,
        countries: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.countries = tuple(countries)
        data_removal = RemovalPolicy.DESTROY if settings.destroy_data else RemovalPolicy.RETAIN

        # Envelope encryption of tenant provider credentials: the hub asks KMS
        # for a per-tenant data key and stores it wrapped (docs/security.md).
        # This key is for that only; table and queues use AWS-managed encryption, so the
        # Lambdas' KMS permissions stay exactly the two the envelope needs.
        self.credentials_key = kms.Key(
            self,
            "CredentialsKey",
            description=f"{settings.prefix}: wraps the tenant data keys of provider credentials",
            enable_key_rotation=True,
            removal_policy=data_removal,
            pending_window=Duration.days(7) if settings.destroy_data else None,
        )

        # One table, single-table design, exactly as the DynamoDB backend
        # defines it (integration_hub/adapters/aws/tables.py): string PK/SK and
        # overloaded GSIs GSI1..GSI5 (listings by tenant+status and
        # tenant+country, lookups, the sharded index of RECEIVED items the
        # reconciler reads, the sharded webhook queues of unfanned events and
        # due deliveries: ADR 0021), TTL on expires_ttl. CloudFormation adds
        # one GSI per update, so an existing stack takes GSI5 in one deploy.
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name(settings.prefix),
            partition_key=dynamodb.Attribute(name="PK", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="SK", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=data_removal,
        )
        for index in GSIS:
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(
                    name=f"{index}PK", type=dynamodb.AttributeType.STRING
                ),
                sort_key=dynamodb.Attribute(name=f"{index}SK", type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType.ALL,
            )

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{settings.prefix}-notifications-dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=f"{settings.prefix}-notifications",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(settings.visibility_timeout_seconds),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=settings.max_receive_count
            ),
        )

        code = lambda_.Code.from_asset(str(settings.lambda_bundle))
        if settings.uses_placeholder_bundle:
            Annotations.of(self).add_warning_v2(
                "ihub:placeholder-bundle",
                "Lambda code is infra/lambda_placeholder (no handler): build the bundle"
                " and pass -c lambdaBundle=<dir> before deploying (docs/aws-deploy.md)",
            )
        if settings.max_receive_count <= DEFAULT_MAX_ATTEMPTS:
            # Every retry is another receive: SQS would dead-letter live work.
            Annotations.of(self).add_warning_v2(
                "ihub:max-receive-count",
                f"maxReceiveCount {settings.max_receive_count} is not above the hub's default"
                f" attempt budget ({DEFAULT_MAX_ATTEMPTS}): retries would end in the SQS DLQ"
                " (docs/aws-deploy.md)",
            )
        environment = {
            "IHUB_DATABASE_URL": f"dynamodb://{settings.prefix}?queue={self.queue.queue_url}",
            "IHUB_KMS_KEY_ID": self.credentials_key.key_arn,
            "IHUB_PROVIDER_TIMEOUT_SECONDS": str(PROVIDER_TIMEOUT_SECONDS),
            "IHUB_VISIBILITY_TIMEOUT_SECONDS": str(settings.visibility_timeout_seconds),
        }
        if self.countries:
            environment["IHUB_ENABLED_COUNTRIES"] = ",".join(self.countries)

        self.api_function = self._function(
            "ApiFunction",
            handler=API_HANDLER,
            code=code,
            environment=environment,
            memory_mb=512,
            # Below the 30 s integration limit of API Gateway: the API only
            # writes to DynamoDB and SQS, it never calls a provider.
            timeout_seconds=15,
        )
        self.worker_function = self._function(
            "WorkerFunction",
            handler=WORKER_HANDLER,
            code=code,
            environment=environment,
            # More memory is more CPU, for TLS to providers across a batch.
            memory_mb=1024,
            timeout_seconds=settings.worker_timeout_seconds,
        )

        self.reconciler_function = self._function(
            "ReconcilerFunction",
            handler=RECONCILE_HANDLER,
            code=code,
            environment=environment
            | {"IHUB_RECONCILE_AFTER_SECONDS": str(settings.reconcile_after_seconds)},
            memory_mb=512,
            # No longer than the interval, so scheduled runs do not pile up
            # (an overlap would only send harmless duplicate messages).
            timeout_seconds=min(60 * settings.reconcile_every_minutes, 300),
        )

        self.webhooks_function = self._function(
            "WebhooksFunction",
            handler=WEBHOOKS_HANDLER,
            code=code,
            environment=environment
            | {"IHUB_WEBHOOKS_TIMEOUT_SECONDS": str(WEBHOOK_REQUEST_TIMEOUT_SECONDS)},
            # The loop waits on the tenants' receivers, it computes little.
            memory_mb=512,
            timeout_seconds=WEBHOOKS_FUNCTION_TIMEOUT_SECONDS,
        )

        self.table.grant(self.api_function, *API_TABLE_ACTIONS)
        self.table.grant(self.worker_function, *WORKER_TABLE_ACTIONS)
        self.queue.grant(self.api_function, *API_MAIN_QUEUE_ACTIONS)
        self.dead_letter_queue.grant(self.api_function, *API_DLQ_ACTIONS)
        self._reconciler_schedule()
        self.credentials_key.grant(self.api_function, *API_KEY_ACTIONS)
        self.credentials_key.grant(self.worker_function, *WORKER_KEY_ACTIONS)
        self._webhooks_schedule()
        # The event source grants the worker exactly what Lambda's poller needs
        # on this queue (Receive/Delete/ChangeMessageVisibility/GetQueueAttributes,
        # GetQueueUrl). A failed record goes back to the queue alone; after
        # maxReceiveCount receives SQS moves it to the DLQ.
        self.worker_function.add_event_source(
            event_sources.SqsEventSource(self.queue, batch_size=10, report_batch_item_failures=True)
        )
        self.worker_function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ses:SendEmail"],
                # Sender identities and configuration sets are tenant data,
                # stored at run time, so they cannot be listed here; this is
                # the narrowest form that allows them: this account's
                # identities and configuration sets, in any region because a
                # tenant's SES settings name their own region.
                resources=[
                    self.format_arn(
                        service="ses", region="*", resource="identity", resource_name="*"
                    ),
                    self.format_arn(
                        service="ses",
                        region="*",
                        resource="configuration-set",
                        resource_name="*",
                    ),
                ],
            )
        )
        self.worker_function.add_to_role_policy(
            iam.PolicyStatement(
                sid=SMS_PUBLISH_SID,
                actions=["sns:Publish"],
                # SMS through SNS (provider kind sns) publishes to a phone
                # number, not a topic: IAM evaluates that Publish against the
                # number itself, which has no ARN, so "*" is the only resource
                # that allows it. The one "*" of the identity policies, kept
                # narrow: this action alone, in this stack's region alone (a
                # tenant's sns settings must name it; SMS stays in the region
                # its countries are served from).
                resources=["*"],
                conditions={"StringEquals": {"aws:RequestedRegion": self.region}},
            )
        )

        self.api_integration = integrations.HttpLambdaIntegration(
            "ApiIntegration", self.api_function
        )
        self.http_api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=f"{settings.prefix}-api",
            description="Integration Hub API (/v1/notifications, /v1/receipts, /admin/v1,"
            " /healthz)",
            default_integration=self.api_integration,
        )
        self._receipt_routes()

        self._alarms()

        CfnOutput(self, "ApiUrl", value=self.http_api.api_endpoint, description="API base URL")
        CfnOutput(self, "QueueUrl", value=self.queue.queue_url, description="notification queue")
        CfnOutput(
            self, "DeadLetterQueueUrl", value=self.dead_letter_queue.queue_url, description="DLQ"
        )
        CfnOutput(self, "TableName", value=self.table.table_name, description="DynamoDB table")
        CfnOutput(
            self,
            "CredentialsKeyArn",
            value=self.credentials_key.key_arn,
            description="KMS key of the tenant credentials (IHUB_KMS_KEY_ID)",
        )

    def _receipt_routes(self) -> None:
        """The providers' receipt callbacks, as routes of their own with no authorizer.

        They reach the API function like every other path (the ``$default``
        route would take them too); naming them keeps them public if the API
        ever gains a default authorizer: a provider cannot present one, it
        signs the request instead, and the hub checks that signature
        (docs/receipts.md). The function gets the body and headers unchanged.
        """
        for path, methods in RECEIPT_ROUTES:
            self.http_api.add_routes(
                path=path,
                methods=list(methods),
                integration=self.api_integration,
                authorizer=apigw.HttpNoneAuthorizer(),
            )

    def _reconciler_schedule(self) -> None:
        """Run the reconciler every few minutes, allowed only what ``reconcile`` does."""
        function = self.reconciler_function
        # It queries the sparse RECEIVED index, moves an item's index entry
        # (a conditional UpdateItem on the table) and sends to the queue. It
        # also expires deliveries nobody reported on (the periodic job of
        # issue 15: no worker process runs on AWS): it queries the SENT
        # entries of the same index, reads each notification (GetItem) and
        # writes its state with an event item in one transaction (UpdateItem
        # + PutItem).
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[f"{self.table.table_arn}/index/{RECONCILER_INDEX}"],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=list(RECONCILER_TABLE_ACTIONS), resources=[self.table.table_arn]
            )
        )
        self.queue.grant(function, "sqs:SendMessage")  # its URL is in IHUB_DATABASE_URL
        self.reconcile_rule = events.Rule(
            self,
            "ReconcileSchedule",
            description="Re-enqueue notifications an SQS send lost (ADR 0011)",
            schedule=events.Schedule.rate(Duration.minutes(self.settings.reconcile_every_minutes)),
            # A missed run is covered by the next one: no retries, no pile-up.
            targets=[targets.LambdaFunction(function, retry_attempts=0)],
        )

    def _webhooks_schedule(self) -> None:
        """Run the webhook delivery loop every minute, for most of each minute.

        One invocation claims for its timeout less one request's and a margin,
        then finishes what it has in flight while the next one starts: claims
        are leased in the table, so the overlap, or an invocation killed
        mid-request, sends nothing a receiver cannot tell apart by webhook-id.
        """
        function = self.webhooks_function
        self.table.grant(function, *WEBHOOKS_TABLE_ACTIONS)
        self.credentials_key.grant(function, *WEBHOOKS_KEY_ACTIONS)
        self.webhooks_rule = events.Rule(
            self,
            "WebhooksSchedule",
            description="Deliver the tenants' status webhooks (ADR 0021)",
            schedule=events.Schedule.rate(Duration.seconds(WEBHOOKS_EVERY_SECONDS)),
            # A missed run is covered by the next one: no retries, no pile-up.
            targets=[targets.LambdaFunction(function, retry_attempts=0)],
        )

    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        code: lambda_.Code,
        environment: dict[str, str],
        memory_mb: int,
        timeout_seconds: int,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Our own role instead of CDK's default, which attaches the managed
        # AWSLambdaBasicExecutionRole (logs on every resource): this one may
        # write to its own log group only.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{self.settings.prefix} {construct_id}",
        )
        log_group.grant_write(role)
        return lambda_.Function(
            self,
            construct_id,
            role=role,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=code,
            environment=environment,
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_seconds),
            log_group=log_group,
        )

    def _alarms(self) -> None:
        # Alarm notifications carry alarm names and states only, and CloudWatch
        # cannot publish to a topic under an AWS-managed SNS key; hence no SSE.
        self.alarm_topic = sns.Topic(
            self, "AlarmTopic", display_name=f"{self.settings.prefix} alarms"
        )
        if self.settings.alarm_email:
            self.alarm_topic.add_subscription(
                subscriptions.EmailSubscription(self.settings.alarm_email)
            )
        action = cw_actions.SnsAction(self.alarm_topic)
        one_minute = Duration.minutes(1)
        alarms = [
            cloudwatch.Alarm(
                self,
                "DeadLetterQueueNotEmpty",
                alarm_description="Messages in the DLQ: notifications that SQS gave up on"
                " after maxReceiveCount receives (docs/aws-deploy.md)",
                metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=one_minute, statistic="Maximum"
                ),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self,
                "QueueOldestMessageAge",
                alarm_description="The oldest queued notification waits too long: workers"
                " fail, are throttled or fall behind (docs/aws-deploy.md)",
                metric=self.queue.metric_approximate_age_of_oldest_message(
                    period=one_minute, statistic="Maximum"
                ),
                threshold=self.settings.oldest_message_age_alarm_seconds,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            self._errors_alarm(
                "WorkerErrors",
                self.worker_function,
                "Worker invocations failed as a whole (crash, timeout):"
                " the batch comes back after the visibility timeout (docs/aws-deploy.md)",
                evaluation_periods=1,
            ),
            self._errors_alarm(
                "ReconcilerErrors",
                self.reconciler_function,
                "The reconciler failed: notifications whose SQS send was"
                " lost wait until it runs again (docs/aws-deploy.md)",
                evaluation_periods=3,
            ),
            self._errors_alarm(
                "WebhooksErrors",
                self.webhooks_function,
                "The webhook delivery Lambda failed (crash, timeout): deliveries wait"
                " until its next run takes their lapsed claims (docs/aws-deploy.md)",
                evaluation_periods=3,
            ),
            self._errors_alarm(
                "ApiErrors",
                self.api_function,
                "API invocations failed (clients saw 5xx from API Gateway)",
                evaluation_periods=1,
            ),
        ]
        for alarm in alarms:
            alarm.add_alarm_action(action)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)

    def _errors_alarm(
        self,
        alarm_id: str,
        function: lambda_.IFunction,
        description: str,
        *,
        evaluation_periods: int,
    ) -> cloudwatch.Alarm:
        """An alarm on any failed invocation of ``function`` in five-minute periods."""
        return cloudwatch.Alarm(
            self,
            alarm_id,
            alarm_description=description,
            metric=function.metric_errors(period=Duration.minutes(5)),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
