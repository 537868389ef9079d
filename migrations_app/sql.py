"""What the worker's per-thread statements need to be written as SQL: the pieces Django writes.

A worker runs about a dozen statements for every thread it migrates (take, record its progress,
start its conversation, succeed, its history row). Built by the ORM, each cost about 0.4 ms of
CPU in query building alone, more than PostgreSQL took to run it: at 10,000 requests a minute
they were the largest share of the cluster's CPU (issue 22's profile). `states.py` writes those
statements once, with the same fences as before; this module gives it quoted names, the
database's clock as Django writes it (`Now()`, `Now() + interval`), values prepared by their
own fields, and rows read back as model instances. PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from django.db import connection, models
from django.db.models import NOT_PROVIDED
from django.db.models.functions import Now
from django.db.models.sql import Query

M = TypeVar("M", bound=models.Model)


def table(model: type[models.Model]) -> str:
    return _table(model, connection.vendor)


@functools.cache
def _table(model: type[models.Model], vendor: str) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field), name
    return field


def column(model: type[models.Model], name: str) -> str:
    return connection.ops.quote_name(_field(model, name).column)


def _compiled(expression: Any) -> tuple[str, list[Any]]:
    query = Query(None)
    sql, params = query.get_compiler(connection=connection).compile(
        expression.resolve_expression(query)
    )
    return sql, list(params)


@functools.cache
def _now(vendor: str) -> str:
    sql, params = _compiled(Now())
    assert not params, params
    return sql


def now() -> str:
    """The database's clock in a statement, as `Now()` writes it."""
    return _now(connection.vendor)


def now_plus(seconds: float) -> tuple[str, list[Any]]:
    """`Now() + timedelta(seconds=…)` as SQL and its parameters."""
    sql, params = _now_plus(connection.vendor, seconds)
    return sql, list(params)


@functools.lru_cache(maxsize=64)
def _now_plus(vendor: str, seconds: float) -> tuple[str, tuple[Any, ...]]:
    sql, params = _compiled(Now() + timedelta(seconds=seconds))
    return sql, tuple(params)


def run(statement: str, params: Sequence[Any]) -> int:
    """Execute; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def rows(statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def one_statement() -> bool:
    """Whether writes to several tables can go as one statement (data-modifying WITH): PostgreSQL.
    Elsewhere they go in one transaction, statement after statement."""
    return connection.vendor == "postgresql"


def returning() -> bool:
    """Whether the database answers UPDATE … RETURNING (PostgreSQL; SQLite from 3.35)."""
    return bool(connection.features.can_return_columns_from_insert)


def assignments(model: type[models.Model], values: dict[str, Any]) -> tuple[str, list[Any]]:
    """`col = %s, …` for plain values, each prepared by its field as the ORM would save it."""
    parts, params = [], []
    for name, value in values.items():
        field = _field(model, name)
        parts.append(f"{connection.ops.quote_name(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    return ", ".join(parts), params


@functools.cache
def _insert_plan(
    model: type[models.Model], vendor: str, given: frozenset[str]
) -> tuple[tuple[models.Field[Any, Any], ...], str]:
    """The fields an INSERT of `given` attnames writes (every other field's default, a field with
    a database default left to the database, as the ORM does) and its statement's head."""
    fields = tuple(
        field
        for field in model._meta.concrete_fields
        if not field.primary_key and (field.attname in given or field.db_default is NOT_PROVIDED)
    )
    names = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    return fields, f"INSERT INTO {table(model)} ({names}) VALUES ({marks})"


def insert(model: type[M], values: dict[str, Any]) -> M:
    """INSERT one row: `values` by attname (`thread_id`), every other field's default (a field
    with a database default is left to the database, as the ORM does); returns the instance with
    its pk, as `objects.create` would."""
    inserted = insert_if(model, values)
    assert inserted is not None
    return inserted


def insert_if(
    model: type[M], values: dict[str, Any], given_that: tuple[str, Sequence[Any]] | None = None
) -> M | None:
    """`insert`, or with `given_that` (a data-modifying `WITH done AS (…)` and its parameters,
    PostgreSQL only) one statement that inserts the row only if `done` returned a row: the
    statement before it and the insert commit together, in one round trip. None if not."""
    fields, statement = _insert_plan(model, connection.vendor, frozenset(values))
    given = {field.attname: values[field.attname] if field.attname in values
             else field.get_default() for field in fields}  # fmt: skip
    params = [field.get_db_prep_save(given[field.attname], connection) for field in fields]
    pk = model._meta.pk
    assert pk is not None
    if given_that is not None:
        assert one_statement(), "a data-modifying WITH is PostgreSQL's"
        head, marks = statement.split(" VALUES ")
        statement = f"{given_that[0]} {head} SELECT {marks[1:-1]} FROM done"
        params = [*given_that[1], *params]
    with connection.cursor() as cursor:
        if returning():
            cursor.execute(f"{statement} RETURNING {connection.ops.quote_name(pk.column)}", params)
            found = cursor.fetchone()
            if found is None:
                return None
            key = found[0]
        else:
            cursor.execute(statement, params)
            key = connection.ops.last_insert_id(cursor, model._meta.db_table, pk.column)
    unknown = set(values) - set(given)
    assert not unknown, f"{model.__name__} has no columns {unknown} (give attnames: thread_id)"
    instance = model(**given)
    instance.pk = key
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def columns(model: type[models.Model]) -> str:
    """Every concrete column of the model, for a RETURNING or SELECT list (see `instance`)."""
    return _columns(model, connection.vendor)


@functools.cache
def _columns(model: type[models.Model], vendor: str) -> str:
    return ", ".join(
        connection.ops.quote_name(field.column) for field in model._meta.concrete_fields
    )


@functools.cache
def _reading(model: type[models.Model], vendor: str) -> tuple[Any, Any, list[str]]:
    """How a row of `columns(model)` is converted on this database, as the ORM's own reads do."""
    compiler = Query(model).get_compiler(connection=connection)
    fields = model._meta.concrete_fields
    converters = compiler.get_converters([field.get_col(model._meta.db_table) for field in fields])
    return compiler, converters, [field.attname for field in fields]


def instance(model: type[M], row: Iterable[Any]) -> M:
    """A row of `columns(model)` as an instance, its values converted as the ORM's own reads
    convert them (JSON decoded; on SQLite, times parsed)."""
    compiler, converters, attnames = _reading(model, connection.vendor)
    values = list(row)
    if converters:
        values = list(next(iter(compiler.apply_converters([values], converters))))
    return model.from_db(connection.alias, attnames, values)
