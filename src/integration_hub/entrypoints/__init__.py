"""Entry points: the HTTP API, the worker, the CLI."""
