"""The dispatcher: one attempt at one notification, from a received message to its verdict.

    model.py       Result, Claim, DispatchSettings: the values callers see
    dispatcher.py  Dispatcher: claim, route, call, record the verdict, settle
    calls.py       one provider call, every failure classified; its attempt record
    replay.py      recording what the outcome journal kept of stopped workers
    tracing.py     the attempt and provider-call spans (on ``integration_hub.tracing``)

What the attempt's answer means (done, retry after how long, failed and
why) is decided by ``domain/verdict.py``; the claim and completion rules by
``domain/lifecycle.py``. The dispatcher only carries the decisions out.
"""

from __future__ import annotations

from integration_hub.service.dispatch.dispatcher import Dispatcher
from integration_hub.service.dispatch.model import QUIET, Claim, DispatchSettings, Result

__all__ = ["QUIET", "Claim", "DispatchSettings", "Dispatcher", "Result"]
