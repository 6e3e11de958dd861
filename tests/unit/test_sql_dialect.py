"""The SQL compiler: one statement, each dialect's slots and placeholders."""

from __future__ import annotations

import json

import pytest

from integration_hub.adapters.sql import statements
from integration_hub.adapters.sql.dialect import (
    NOTIFY_CHANNEL,
    POSTGRES,
    SQLITE,
    Dialect,
    Statement,
)


def test_lock_is_for_update_on_postgres_and_nothing_on_sqlite() -> None:
    s = Statement("t", "SELECT * FROM notifications WHERE id = :id {lock}")
    assert POSTGRES.compile(s).sql == "SELECT * FROM notifications WHERE id = $1 FOR UPDATE"
    assert SQLITE.compile(s).sql == "SELECT * FROM notifications WHERE id = :id"


def test_skip_locked_is_for_update_skip_locked_on_postgres_and_nothing_on_sqlite() -> None:
    s = Statement("t", "SELECT id FROM queue LIMIT :limit {skip_locked}")
    assert POSTGRES.compile(s).sql == "SELECT id FROM queue LIMIT $1 FOR UPDATE SKIP LOCKED"
    assert SQLITE.compile(s).sql == "SELECT id FROM queue LIMIT :limit"


def test_one_of_is_an_array_on_postgres_and_a_json_list_on_sqlite() -> None:
    s = Statement("t", "DELETE FROM queue WHERE notification_id {one_of:ids}")
    pg, lite = POSTGRES.compile(s), SQLITE.compile(s)
    assert pg.sql == "DELETE FROM queue WHERE notification_id = ANY($1)"
    assert pg.bind({"ids": ["a", "b"]}) == [["a", "b"]]
    assert (
        lite.sql == "DELETE FROM queue WHERE notification_id IN (SELECT value FROM json_each(:ids))"
    )
    assert lite.bind({"ids": ("a", "b")}) == {"ids": json.dumps(["a", "b"])}


def test_a_notifying_statement_sends_pg_notify_in_the_same_statement_on_postgres_only() -> None:
    s = Statement("t", "INSERT INTO queue (notification_id) VALUES (:id)", notify=True)
    pg = POSTGRES.compile(s).sql
    assert pg.startswith("WITH queued AS (\nINSERT INTO queue (notification_id) VALUES ($1)")
    assert pg.endswith(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")
    assert SQLITE.compile(s).sql == "INSERT INTO queue (notification_id) VALUES (:id)"


def test_postgres_numbers_names_in_order_of_first_appearance_and_reuses_numbers() -> None:
    s = Statement("t", "UPDATE k SET a = :b, c = :a WHERE x <= :b OR y <= :a AND z = :c")
    compiled = POSTGRES.compile(s)
    assert compiled.sql == "UPDATE k SET a = $1, c = $2 WHERE x <= $1 OR y <= $2 AND z = $3"
    assert compiled.names == ("b", "a", "c")
    assert compiled.bind({"a": 1, "b": 2, "c": 3, "unused": 4}) == [2, 1, 3]


def test_sqlite_keeps_named_placeholders_and_binds_by_name() -> None:
    s = Statement("t", "UPDATE k SET a = :b WHERE x <= :b AND z = :c")
    compiled = SQLITE.compile(s)
    assert compiled.sql == "UPDATE k SET a = :b WHERE x <= :b AND z = :c"
    assert compiled.bind({"b": 2, "c": 3, "unused": 4}) == {"b": 2, "c": 3}


def test_casts_and_string_literals_are_not_parameters() -> None:
    s = Statement("t", "SELECT :receipt || '-' || id, '{}'::jsonb, x::text FROM q WHERE a = :a")
    compiled = POSTGRES.compile(s)
    assert compiled.sql == "SELECT $1 || '-' || id, '{}'::jsonb, x::text FROM q WHERE a = $2"
    assert compiled.names == ("receipt", "a")


def test_a_missing_parameter_fails_before_reaching_the_database() -> None:
    compiled = POSTGRES.compile(Statement("t", "SELECT * FROM t WHERE a = :a AND b = :b"))
    with pytest.raises(KeyError, match="b"):
        compiled.bind({"a": 1})


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_an_unknown_slot_fails_to_compile(dialect: Dialect) -> None:
    with pytest.raises(KeyError, match="unknown SQL slot"):
        dialect.compile(Statement("t", "SELECT * FROM t {lok}"))


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_every_statement_compiles_with_no_slot_left(dialect: Dialect) -> None:
    every = statements.every()
    assert len({s.name for s in every}) == len(every), "statement names are unique"
    for statement in every:
        sql = dialect.compile(statement).sql
        assert "{" not in sql.replace("'{}'", ""), (statement.name, sql)
        if dialect is POSTGRES:
            assert ":" not in sql.replace("::", ""), (statement.name, sql)


def test_compiling_is_cached_per_statement() -> None:
    assert POSTGRES.compile(statements.RECEIVE) is POSTGRES.compile(statements.RECEIVE)
