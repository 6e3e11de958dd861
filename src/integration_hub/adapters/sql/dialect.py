"""SQL written once, compiled for SQLite or PostgreSQL.

A ``Statement`` is text with named parameters (``:name``) and a few named
slots (``{lock}``) where the two databases differ. A ``Dialect`` fills the
slots and turns the parameters into its own placeholders. Every difference
between the two SQL dialects the stores use is one entry of ``SQLITE`` or
``POSTGRES`` below; the statements themselves are in ``statements.py``.

Slots:

- ``{lock}``: ``FOR UPDATE`` on PostgreSQL, where concurrent transactions
  need the row lock; nothing on SQLite, whose single writer thread already
  serialises every write transaction (ADR 0002, 0013).
- ``{skip_locked}``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent
  receivers and purges take disjoint rows; nothing on SQLite.
- ``{xact_lock}``: on PostgreSQL a transaction-scoped advisory lock on the
  text parameter ``:lock_key`` (held until commit or rollback), for a rule
  over rows that may not exist yet (a tenant's count of webhook endpoints);
  on SQLite just the parameter, the single writer serialising already.
- ``{lateral:TABLE}`` ... ``{end_lateral:TABLE}``: around a subquery of ``id``s
  correlated with the row before it, the rows of TABLE with those ids, as
  ``d``: on PostgreSQL a ``CROSS JOIN LATERAL`` then a join on the id, which
  runs the subquery once per outer row; on SQLite, which has no LATERAL,
  ``JOIN TABLE d ON d.id IN (...)``, which SQLite also runs once per outer
  row, but PostgreSQL once per row of TABLE (quadratic in a backlog).
- ``{one_of:NAME}``: "is one of the list NAME": ``= ANY($n)`` on PostgreSQL
  (an array parameter); ``IN (SELECT value FROM json_each(:NAME))`` on SQLite,
  which has no array type (the list is bound as JSON).

And ``Statement(notify=True)``: on PostgreSQL the statement also sends
``pg_notify`` in the same round trip, so that idle workers LISTENing hear of
the enqueue once it commits; SQLite wakes in-process waiters itself and other
processes notice the commit (``adapters/sqlite/watch.py``).

Placeholders: PostgreSQL numbers the distinct names in order of first
appearance (``$1`` is the first name written); SQLite binds ``:name`` by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_SLOT = re.compile(r"\{(\w+)(?::(\w+))?\}")

NOTIFY_CHANNEL = "ihub_queue"
"""The PostgreSQL LISTEN/NOTIFY channel that wakes idle workers after an enqueue."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement in the shared form (named parameters, named slots)."""

    name: str
    sql: str
    notify: bool = False
    """Wake idle workers of other processes when it commits (an enqueue)."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement in one dialect's form, ready to run."""

    sql: str
    names: tuple[str, ...]
    """The parameter names in the order the dialect binds them."""
    positional: bool
    lists: tuple[str, ...] = ()
    """Parameters bound as a list (``{one_of:NAME}``)."""

    def bind(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The values of ``params`` as this dialect's driver takes them."""
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"missing SQL parameters: {', '.join(missing)}")
        if self.positional:
            return [params[n] for n in self.names]
        return {
            n: json.dumps(list(params[n])) if n in self.lists else params[n] for n in self.names
        }


@dataclass(frozen=True)
class Dialect:
    """How one database spells the slots, the placeholders and a NOTIFY."""

    name: str
    slots: Mapping[str, str]
    one_of: str
    """``{one_of:NAME}``, with ``:NAME`` standing for the list parameter."""
    lateral: tuple[str, str]
    """``{lateral:TABLE}`` and ``{end_lateral:TABLE}``, with ``TABLE`` standing for the table."""
    notify: str
    """A template around a statement that notifies (``{sql}`` is the statement)."""
    positional: bool
    _cache: dict[Statement, Compiled] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def compile(self, statement: Statement) -> Compiled:
        """The statement in this dialect (cached: statements are constants)."""
        found = self._cache.get(statement)
        if found is None:
            found = self._cache[statement] = self._compile(statement)
        return found

    def _compile(self, statement: Statement) -> Compiled:
        lists: list[str] = []

        def slot(match: re.Match[str]) -> str:
            name, arg = match[1], match[2]
            if name == "one_of" and arg:
                lists.append(arg)
                return self.one_of.replace(":NAME", ":" + arg)
            if name in ("lateral", "end_lateral") and arg:
                return self.lateral[name == "end_lateral"].replace("TABLE", arg)
            if arg is not None or name not in self.slots:
                raise KeyError(f"{statement.name}: unknown SQL slot {match[0]!r}")
            return self.slots[name]

        sql = _SLOT.sub(slot, statement.sql).strip()
        if statement.notify:
            sql = self.notify.replace("{sql}", sql)
        names: list[str] = []
        for found in _PARAM.finditer(sql):
            if found[1] not in names:
                names.append(found[1])
        if self.positional:
            sql = _PARAM.sub(lambda m: f"${names.index(m[1]) + 1}", sql)
        return Compiled(sql, tuple(names), self.positional, tuple(lists))


SQLITE = Dialect(
    name="sqlite",
    slots={"lock": "", "skip_locked": "", "xact_lock": ":lock_key"},
    one_of="IN (SELECT value FROM json_each(:NAME))",
    lateral=("JOIN TABLE d ON d.id IN (", ")"),
    notify="{sql}",
    positional=False,
)

POSTGRES = Dialect(
    name="postgresql",
    slots={
        "lock": "FOR UPDATE",
        "skip_locked": "FOR UPDATE SKIP LOCKED",
        "xact_lock": "pg_advisory_xact_lock(hashtextextended(:lock_key, 0))",
    },
    one_of="= ANY(:NAME)",
    lateral=("CROSS JOIN LATERAL (", ") AS lateral_ids JOIN TABLE d ON d.id = lateral_ids.id"),
    # The CTE runs the enqueue (even unreferenced), the SELECT the NOTIFY:
    # one round trip, and both take effect at COMMIT.
    notify=f"WITH queued AS (\n{{sql}}\nRETURNING 1\n)\nSELECT pg_notify('{NOTIFY_CHANNEL}', '')",
    positional=True,
)
