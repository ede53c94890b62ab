"""Writes compiled to SQL before their transaction, run inside it.

SQLite lets one writer in at a time, and a transaction holds that turn from its first write to
its commit. The ORM compiles each statement when it runs it: inside the transaction, that
Python (a millisecond or two per statement, several times that when the process waits for a
core) is time every other writer of every process waits. Compiled here first, a transaction
runs only the database's own work. PostgreSQL's row locks are held for less time the same way.

``update`` and ``insert`` compile what ``QuerySet.update`` and ``QuerySet.bulk_create`` would
run (the same SQL: Django's compilers), ``execute`` runs one on the transaction's connection.
What they leave out: signals (neither sends any) and ``bulk_create``'s handling of unsaved
related objects (the rows here name their relations by id).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections
from django.db.models import QuerySet
from django.db.models.sql import InsertQuery, UpdateQuery


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple


def update(queryset: QuerySet, **values) -> Statement:
    """``queryset.update(**values)``, compiled (a filter without joins: no related updates)."""
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    query.annotations = {}
    sql, params = query.get_compiler(queryset.db).as_sql()
    return Statement(sql, tuple(params))


def insert(objs: list, using: str = "default") -> list[Statement]:
    """``type(objs[0]).objects.bulk_create(objs)``, compiled (primary keys set by the caller or
    their defaults); ``auto_now_add`` fields are filled in on the objects now, as it would."""
    model = type(objs[0])
    if any(obj.pk is None for obj in objs):
        raise ValueError("every row needs its primary key before it is compiled")
    fields = [field for field in model._meta.concrete_fields if not field.generated]
    query = InsertQuery(model)
    query.insert_values(fields, objs, raw=False)
    return [Statement(sql, tuple(params)) for sql, params in query.get_compiler(using).as_sql()]


def execute(statement: Statement, using: str = "default") -> int:
    """Run it; the rows it changed."""
    with connections[using].cursor() as cursor:
        cursor.execute(statement.sql, statement.params)
        return cursor.rowcount


def saved(objs: list, using: str = "default") -> None:
    """Mark rows inserted by ``insert`` as saved, as ``bulk_create`` does."""
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using
