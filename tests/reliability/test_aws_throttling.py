"""DynamoDB throttling under load: real ``ihub api`` and ``ihub worker`` processes on
DynamoDB + SQS (moto), their DynamoDB calls through a proxy that throttles a
share of them over HTTP (``aws/throttle.py``): refused with
ProvisionedThroughputExceededException, ThrottlingException or
RequestLimitExceeded, or a transaction cancelled with ThrottlingError.

Clients behave as the README asks (503/409 + Retry-After: retry with the same
key). Asserts what a client must see (202, or a retryable problem+json with
Retry-After, never a 500) and the invariants: nothing lost, nothing sent
twice outside the crash window, every notification finished.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from aws.motoserver import FAKE_KEY, REGION, MotoAws, start_moto
from aws.throttle import Throttle, throttling_proxy
from hubs import FAST, HubProcesses
from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings
from reliability.harness import load
from reliability.invariants import TERMINAL, Facts, Ledger, check, record, scale
from reliability.test_aws_duplicates import facts_of

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

BUDGET = 5
RATE = 0.25  # of every DynamoDB call of the API and the worker


@pytest.fixture(scope="module")
def moto_aws() -> Iterator[MotoAws]:
    """A moto server for this module."""
    yield from start_moto()


async def read(url: str, ids: list[str]) -> Facts:
    """The facts, read straight from moto (not through the proxy)."""
    hub = await build_hub(Settings(database_url=url))
    try:
        return await facts_of(hub, ids)
    finally:
        await hub.close()


def test_throttled_dynamodb_answers_503_or_202_and_loses_or_duplicates_nothing(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": FAKE_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
        "IHUB_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    sqs = moto_aws.boto3_client("sqs")
    prefix = "ihub-throttle-" + secrets.token_hex(3)
    queue = sqs.create_queue(QueueName=prefix)["QueueUrl"]
    direct = f"dynamodb://{prefix}?queue={queue}&region={REGION}&endpoint={moto_aws.endpoint}"
    throttle = Throttle(rate=0.0)
    try:
        with throttling_proxy(moto_aws.endpoint, throttle) as endpoint:
            url = direct.replace(moto_aws.endpoint, endpoint)
            env = {
                **os.environ,
                **FAST,
                "IHUB_DATABASE_URL": url,
                "IHUB_MAX_ATTEMPTS": str(BUDGET),
                "IHUB_DATABASE_POOL_SIZE": "4",
                # Longer than claim + call + record with the SDK's own backoff
                # (up to a few seconds per throttled call): with the 3 s lease of
                # FAST, a third of the attempts outlived their lease and were
                # sent again (crash-window duplicates, every one explained).
                "IHUB_VISIBILITY_TIMEOUT_SECONDS": "10",
            }
            hub = HubProcesses(tmp_path, url, env)
            try:
                hub.create_tenant("acme")
                hub.start_api()
                hub.start_worker()
                throttle.rate = RATE  # from the first request of the load on
                ledger = Ledger()
                total = scale(60)
                sent = asyncio.run(load(hub, ledger, total, concurrency=8))
                ids = [s.id for s in sent]
                deadline = time.monotonic() + 180
                while True:  # the worker waits the throttling out
                    facts = asyncio.run(read(direct, ids))
                    done = all(r.status in TERMINAL for r in facts.rows.values())
                    if (done and len(facts.rows) == total) or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                throttle.rate = 0.0
                worker_log = (tmp_path / "worker.log").read_text(errors="replace")
                api_log = (tmp_path / "api.log").read_text(errors="replace")
            finally:
                hub.stop()
    finally:
        moto_aws.boto3_client("dynamodb").delete_table(TableName=f"{prefix}-hub")
        sqs.delete_queue(QueueUrl=queue)
    report = check(ledger, facts, budget=BUDGET)
    faults = f"{throttle.total()} of {throttle.total() + sum(throttle.passed.values())} calls"
    record("11 DynamoDB throttling", "dynamodb+sqs", report, ledger, faults)
    print(f"\nthrottled: {dict(throttle.injected)}")
    explained = Counter(
        (outcome or "abandoned", error)
        for nid, row in facts.rows.items()
        if facts.deliveries[nid] > 1
        for outcome, error in zip(row.outcomes, row.error_classes, strict=True)
    )
    print(f"attempts of the notifications delivered twice: {dict(explained)}")
    report.assert_ok()
    assert report.statuses == {"DONE": total}, report.statuses
    # The harness fails on any answer but 202 or a retryable one with Retry-After.
    assert throttle.total() > 0
    assert "Traceback" not in api_log, api_log[-3000:]
    # A throttled transaction is classified (Unavailable, "is throttling requests"),
    # never an escaped TransactionCanceledException.
    raw = [
        line
        for line in (worker_log + api_log).splitlines()
        if "TransactionCanceledException" in line and "is throttling requests" not in line
    ]
    assert not raw, raw[:3]
