"""Reads of a fixed shape compiled to SQL once: the start path's hottest reads.

Django compiles a QuerySet to SQL every time it runs. For a turn read with the rows it needs
(``select_related``, an ``Exists``) that is 2-3 ms of Python on this kind of machine, against a
few hundredths of a millisecond of database work, on every turn. A ``PreparedRead`` builds its
QuerySet once per process with stand-in arguments, keeps the SQL, its columns and how a row
becomes objects (Django's own converters and populators), and runs that SQL again with each
call's arguments on the calling thread's connection. (Once per process, not per thread: a
worker's hundred threads would each compile it at their first turn, all in the first burst.)

Which parameters the arguments are is found by compiling with two sets of stand-ins, then
checked against a third compiled the ordinary way. A shape that fails that (its SQL depends on
the arguments, an argument it cannot place) is read the ordinary way on every call, and
``PreparedRead.prepare`` says why (the tests call it).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections
from django.db.models.query import FlatValuesListIterable, ModelIterable, QuerySet, ValuesListIterable, get_related_populators

logger = logging.getLogger(__name__)

_FORMS = {
    uuid.UUID: {
        "uuid": lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
        "hex": lambda v: (v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))).hex,
        "str": lambda v: str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))),
    },
    int: {"int": int, "str": lambda v: str(int(v))},
}


def _converted(row, converters: dict, connection) -> list:
    """A row through Django's converters (``SQLCompiler.apply_converters``), on this thread's connection."""
    row = list(row)
    for position, (functions, expression) in converters.items():
        value = row[position]
        for function in functions:
            value = function(value, expression, connection)
        row[position] = value
    return row


def _stand_ins(kinds, salt: int) -> tuple:
    return tuple(
        uuid.UUID(int=(salt << 64) | (i + 1)) if kind is uuid.UUID else 900_000_000 + salt * 100 + i
        for i, kind in enumerate(kinds)
    )


@dataclass
class _Plan:
    vendor: str
    sql: str
    params: list
    places: list[tuple[int, int, Callable]]  # (parameter index, argument index, its form)
    model: type | None
    converters: dict
    iterable: type
    # models only
    init_list: list | None = None
    model_range: tuple[int, int] | None = None
    populators: list | None = None
    annotations: dict | None = None


_ALL: list[PreparedRead] = []


def prepare_all() -> None:
    """Compile every prepared read of the modules imported so far (``prepare``), on this thread's
    connection, which is then closed: a process's warm-up, in a thread of its own. A read that
    cannot be compiled now (the database away at boot) is compiled at its first use."""
    try:
        for read in list(_ALL):
            try:
                read.prepare()
            except Exception as exc:
                read._plan = None  # (``_prepare`` may have failed half-way)
                logger.warning(
                    "prepared read %s: not compiled at boot (%s)", getattr(read.build, "__qualname__", read.build), exc
                )
    finally:
        connections.close_all()


class PreparedRead:
    """``build(*args)`` → the QuerySet (each argument used only as a parameter, of the type in
    ``kinds``: ``uuid.UUID`` or ``int``). ``run(*args)`` → its rows as that QuerySet would give them
    (model instances, or ``values_list`` tuples / flat values), in a list."""

    def __init__(self, build: Callable[..., QuerySet], *, kinds: tuple[type, ...], lock: bool = False, using: str = "default"):
        """``lock``: the rows are locked (``FOR UPDATE``, where the database has it) by the
        transaction ``run`` is called in, as ``select_for_update()`` would (which Django will not
        compile outside a transaction)."""
        self.build, self.kinds, self.lock, self.using = build, kinds, lock, using
        self._lock = threading.Lock()
        self._plan: _Plan | bool | None = None
        self.refused: str | None = None  # why this shape is read the ordinary way
        _ALL.append(self)

    def run(self, *args) -> list:
        connection = connections[self.using]
        plan = self._plan
        if plan is None or (plan is not False and plan.vendor != connection.vendor):
            with self._lock:  # one thread compiles it; the others wait for it
                plan = self._plan
                if plan is None or (plan is not False and plan.vendor != connection.vendor):
                    plan = self._plan = self._prepare()
        if plan is False:
            return list(self.build(*args))
        params = list(plan.params)
        for index, argument, form in plan.places:
            params[index] = form(args[argument])
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
            rows = cursor.fetchall()
        if plan.converters:
            rows = [_converted(row, plan.converters, connection) for row in rows]
        if plan.iterable is FlatValuesListIterable:
            return [row[0] for row in rows]
        if plan.iterable is ValuesListIterable:
            return [tuple(row) for row in rows]
        start, end = plan.model_range
        model = plan.model
        objects = []
        for row in rows:
            obj = model.from_db(self.using, plan.init_list, row[start:end])
            for populator in plan.populators:
                populator.populate(row, obj)
            for name, position in plan.annotations.items():
                setattr(obj, name, row[position])
            objects.append(obj)
        return objects

    def prepare(self) -> str | None:
        """Compile it now (a process's warm-up, off its first requests); None when it runs
        prepared on this database, else why not."""
        with self._lock:
            self._plan = self._prepare()
        return None if self._plan is not False else self.refused

    def _prepare(self) -> _Plan | bool:
        first, second, third = (_stand_ins(self.kinds, salt) for salt in (1, 2, 3))
        queryset = self.build(*first)
        if queryset._iterable_class not in (ModelIterable, ValuesListIterable, FlatValuesListIterable):
            return self._refuse(f"its rows are {queryset._iterable_class.__name__}")
        if queryset._known_related_objects or queryset._prefetch_related_lookups:
            return self._refuse("it has known related objects or prefetches")
        compiler = queryset.query.get_compiler(using=self.using)
        sql, params = compiler.as_sql()
        sql_2, params_2 = self.build(*second).query.get_compiler(using=self.using).as_sql()
        if sql != sql_2 or len(params) != len(params_2):
            return self._refuse("its SQL depends on its arguments")
        places = []
        for index, (one, two) in enumerate(zip(params, params_2, strict=True)):
            if one == two:
                continue
            place = self._place(one, two, first, second)
            if place is None:
                return self._refuse(f"parameter {index} is no argument it can place")
            places.append((index, *place))
        sql_3, params_3 = self.build(*third).query.get_compiler(using=self.using).as_sql()
        made = list(params)
        for index, argument, form in places:
            made[index] = form(third[argument])
        if sql_3 != sql or made != list(params_3):
            return self._refuse("its parameters did not come out as Django's own")
        fields = [column[0] for column in compiler.select[0 : compiler.col_count]]
        if self.lock and compiler.connection.features.has_select_for_update:
            sql = f"{sql} FOR UPDATE"
        plan = _Plan(
            vendor=compiler.connection.vendor,
            sql=sql,
            params=list(params),
            places=places,
            model=compiler.klass_info["model"] if queryset._iterable_class is ModelIterable else None,
            converters=compiler.get_converters(fields),
            iterable=queryset._iterable_class,
        )
        if plan.iterable is ModelIterable:
            select, klass_info = compiler.select, compiler.klass_info
            start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
            plan.model_range = (start, end)
            plan.init_list = [column[0].target.attname for column in select[start:end]]
            plan.populators = get_related_populators(klass_info, select, self.using)
            plan.annotations = dict(compiler.annotation_col_map or {})
        return plan

    def _place(self, one, two, first, second) -> tuple[int, Callable] | None:
        for argument, kind in enumerate(self.kinds):
            for form in _FORMS[kind].values():
                if form(first[argument]) == one and form(second[argument]) == two and type(one) is type(form(first[argument])):
                    return argument, form
        return None

    def _refuse(self, why: str) -> bool:
        self.refused = why
        logger.warning("prepared read %s: read the ordinary way (%s)", getattr(self.build, "__qualname__", self.build), why)
        return False
