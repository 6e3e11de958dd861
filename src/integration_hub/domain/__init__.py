"""Pure domain: models, statuses, routing, retry policy and errors. No I/O."""
