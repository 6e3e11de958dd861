"""``python -m integration_hub`` is the ``ihub`` command."""

from __future__ import annotations

from integration_hub.entrypoints.cli import main

main()
