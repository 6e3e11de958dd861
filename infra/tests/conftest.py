"""The CDK app's tests: make `integration_hub_infra` (in infra/) importable.

The repository's pytest configuration applies (`filterwarnings = error`), and
infra/ is not an installed package, so its directory goes on sys.path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))
