"""Settings every suite shares."""

from __future__ import annotations

import os

from support import LOCAL_OUTBOUND_ENV

# Before any test builds Settings or spawns a hub: the fake providers on this
# machine must be reachable (tests of the outbound rule pass their own policy).
for _name, _value in LOCAL_OUTBOUND_ENV.items():
    os.environ.setdefault(_name, _value)
