"""The AWS CDK app of the Integration Hub (the original design: API Gateway,
Lambda, SQS with a DLQ, DynamoDB, KMS). ``build`` adds its stacks to an App."""

from __future__ import annotations

from integration_hub_infra.assembly import STACK_NAME, build
from integration_hub_infra.settings import HubSettings, SettingsError, parse_regions
from integration_hub_infra.stack import HubStack

__all__ = ["STACK_NAME", "HubSettings", "HubStack", "SettingsError", "build", "parse_regions"]
