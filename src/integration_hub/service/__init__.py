"""Use cases: ingest, dispatch one attempt, redrive, tenants."""
