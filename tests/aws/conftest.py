"""AWS-specific tests: DynamoDB and SQS served by moto over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from aws.motoserver import MotoAws, start_moto
from support import Backend, ManualClock


@pytest.fixture(scope="session")
def moto_aws() -> Iterator[MotoAws]:
    """One moto server for this directory's tests."""
    yield from start_moto()


@pytest.fixture
async def aws(moto_aws: MotoAws) -> AsyncIterator[Backend]:
    """A fresh table and queue on a manual clock."""
    made = await moto_aws.backend(ManualClock())
    try:
        yield made
    finally:
        await made.store.close()
        moto_aws.cleanup()
