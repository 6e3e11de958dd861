"""What every ``ihub`` command shares: consoles, options, settings, a wired hub."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from integration_hub.bootstrap import Hub, build_hub
from integration_hub.config import ConfigurationError, Settings
from integration_hub.domain.errors import HubError, InvariantBreach

T = TypeVar("T")

console = Console()
err = Console(stderr=True)

Database = Annotated[
    str | None,
    typer.Option("--database", "-d", help="database URL (default: IHUB_DATABASE_URL)"),
]
Host = Annotated[str | None, typer.Option(help="bind address (default: IHUB_HOST)")]
Port = Annotated[int | None, typer.Option(help="port (default: IHUB_PORT)")]


def settings_for(database: str | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with command-line options on top."""
    update = {k: v for k, v in overrides.items() if v is not None}
    if database:
        update["database_url"] = database
    settings = Settings()
    return settings.model_copy(update=update) if update else settings


def with_hub(settings: Settings, fn: Callable[[Hub], Awaitable[T]]) -> T:
    """Run ``fn`` against a wired hub, closing it afterwards; errors become exit 1."""

    async def run() -> T:
        hub = await build_hub(settings)
        try:
            return await fn(hub)
        finally:
            await hub.close()

    try:
        return asyncio.run(run())
    except (HubError, ConfigurationError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except InvariantBreach as exc:
        raise broken(exc) from None


# sysexits.h EX_SOFTWARE: an internal software error, not the operator's doing.
BREACH_EXIT = 70


def broken(exc: InvariantBreach) -> typer.Exit:
    """Print one line for a bug the hub caught in itself; the exit to raise (70).

    No traceback: the kind and message say which rule broke (docs/runbook.md,
    "IhubInvariantBreach"), and nothing in them is a secret.
    """
    err.print(
        f"[red]internal error ({exc.kind}):[/red] {exc.message}; this is a bug, report it",
        soft_wrap=True,  # one line, whatever the terminal's width
    )
    return typer.Exit(BREACH_EXIT)
