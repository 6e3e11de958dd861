"""Which stacks an app holds: one by default, or one per region of `regions`."""

from __future__ import annotations

import os

from aws_cdk import App, Environment

from integration_hub_infra.settings import HubSettings, parse_regions
from integration_hub_infra.stack import HubStack

STACK_NAME = "IntegrationHub"


def build(app: App) -> list[HubStack]:
    """Add the hub's stacks to ``app``, as its context asks."""
    settings = HubSettings.from_context(app.node)
    regions = parse_regions(app.node.try_get_context("regions"))
    # Account (and region) come from the CDK CLI's profile when deploying;
    # without them the stack is environment-agnostic, which synth accepts.
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    if not regions:
        region = os.environ.get("CDK_DEFAULT_REGION")
        env = Environment(account=account, region=region) if account or region else None
        return [HubStack(app, STACK_NAME, settings=settings, env=env)]
    return [
        HubStack(
            app,
            f"{STACK_NAME}-{region}",
            settings=settings,
            countries=countries,
            env=Environment(account=account, region=region),
            description=f"Integration Hub for {', '.join(countries)} in {region}",
        )
        for region, countries in regions.items()
    ]
