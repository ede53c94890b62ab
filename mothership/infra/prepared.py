"""Reads and writes of a fixed shape compiled to SQL once: the start path's hottest statements.

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
``PreparedRead.prepare`` says why (the tests call it). A ``PreparedStatement`` does the same for
an UPDATE or INSERT built by ``mothership.infra.statements``: it keeps the SQL and where each
argument goes among its parameters.
"""

from __future__ import annotations

import datetime
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, connections
from django.db.models.query import FlatValuesListIterable, ModelIterable, QuerySet, ValuesListIterable, get_related_populators

from mothership.infra.statements import Statement

logger = logging.getLogger(__name__)

_FORMS = {
    uuid.UUID: {
        "uuid": lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
        "hex": lambda v: (v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))).hex,
        "str": lambda v: str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))),
    },
    int: {"int": int, "str": lambda v: str(int(v))},
    str: {"str": str},
    # As Django hands a datetime to the database (SQLite: text in UTC; PostgreSQL: itself).
    datetime.datetime: {"datetime": lambda v: v, "adapted": lambda v: connection.ops.adapt_datetimefield_value(v)},
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


def _stand_in(kind: type, salt: int, i: int):
    if kind is uuid.UUID:
        return uuid.UUID(int=(salt << 64) | (i + 1))
    if kind is str:
        return f"stand-in {salt}.{i}"
    if kind is datetime.datetime:
        return datetime.datetime(2000 + salt, 1, 1 + i, 12, tzinfo=datetime.UTC)
    return 900_000_000 + salt * 100 + i


def _stand_ins(kinds, salt: int) -> tuple:
    return tuple(_stand_in(kind, salt, i) for i, kind in enumerate(kinds))


def _locate(kinds: tuple[type, ...], compiled: Callable[[tuple], tuple[str, list]], sql: str, params: list, first: tuple):
    """Where the arguments are among ``params`` (``sql`` compiled with the stand-ins ``first``):
    (parameter index, argument index, its form) for each that is one, found by compiling with a
    second set of stand-ins and checked against a third. A str: why they cannot be located."""
    second, third = _stand_ins(kinds, 2), _stand_ins(kinds, 3)
    sql_2, params_2 = compiled(second)
    if sql != sql_2 or len(params) != len(params_2):
        return "its SQL depends on its arguments"
    places = []
    for index, (one, two) in enumerate(zip(params, params_2, strict=True)):
        if one == two:
            continue
        place = _place(kinds, one, two, first, second)
        if place is None:
            return f"parameter {index} is no argument it can place"
        places.append((index, *place))
    sql_3, params_3 = compiled(third)
    made = list(params)
    for index, argument, form in places:
        made[index] = form(third[argument])
    if sql_3 != sql or made != list(params_3):
        return "its parameters did not come out as Django's own"
    return places


def _place(kinds, one, two, first, second) -> tuple[int, Callable] | None:
    for argument, kind in enumerate(kinds):
        for form in _FORMS[kind].values():
            if form(first[argument]) == one and form(second[argument]) == two and type(one) is type(form(first[argument])):
                return argument, form
    return None


def _filled(params: list, places: list, args: tuple) -> list:
    params = list(params)
    for index, argument, form in places:
        params[index] = form(args[argument])
    return params


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


_ALL: list[_Compiled] = []


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
                logger.warning("prepared %s %s: not compiled at boot (%s)", read.what, _name(read.build), exc)
    finally:
        connections.close_all()


class _Compiled:
    """What a prepared read and a prepared statement share: compiled once per process (and
    database), by one thread while the others wait; refused shapes built the ordinary way."""

    what = "compiled"
    otherwise = "built the ordinary way"

    def __init__(self, build: Callable, kinds: tuple[type, ...], using: str):
        self.build, self.kinds, self.using = build, kinds, using
        self._lock = threading.Lock()
        self._plan = None
        self.refused: str | None = None  # why this shape is built the ordinary way
        _ALL.append(self)

    def _current_plan(self, vendor: str):
        plan = self._plan
        if plan is None or (plan is not False and plan.vendor != vendor):
            with self._lock:  # one thread compiles it; the others wait for it
                plan = self._plan
                if plan is None or (plan is not False and plan.vendor != vendor):
                    plan = self._plan = self._prepare()
        return plan

    def prepare(self) -> str | None:
        """Compile it now (a process's warm-up, off its first requests); None when it runs
        prepared on this database, else why not."""
        with self._lock:
            self._plan = self._prepare()
        return None if self._plan is not False else self.refused

    def _prepare(self):
        raise NotImplementedError

    def _refuse(self, why: str) -> bool:
        self.refused = why
        logger.warning("prepared %s %s: %s (%s)", self.what, _name(self.build), self.otherwise, why)
        return False


def _name(build) -> str:
    return getattr(build, "__qualname__", repr(build))


class PreparedRead(_Compiled):
    """``build(*args)`` → the QuerySet (each argument used only as a parameter, of a kind in
    ``kinds``: ``uuid.UUID``, ``int``, ``str``, ``datetime.datetime``). ``run(*args)`` → its rows as
    that QuerySet would give them (model instances, or ``values_list`` tuples / flat values), in a list."""

    what = "read"
    otherwise = "read the ordinary way"

    def __init__(self, build: Callable[..., QuerySet], *, kinds: tuple[type, ...], lock: bool = False, using: str = "default"):
        """``lock``: the rows are locked (``FOR UPDATE``, where the database has it) by the
        transaction ``run`` is called in, as ``select_for_update()`` would (which Django will not
        compile outside a transaction)."""
        super().__init__(build, kinds, using)
        self.lock = lock

    def run(self, *args) -> list:
        connection = connections[self.using]
        plan = self._current_plan(connection.vendor)
        if plan is False:
            return list(self.build(*args))
        params = _filled(plan.params, plan.places, args)
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

    def _prepare(self) -> _Plan | bool:
        first = _stand_ins(self.kinds, 1)
        queryset = self.build(*first)
        if queryset._iterable_class not in (ModelIterable, ValuesListIterable, FlatValuesListIterable):
            return self._refuse(f"its rows are {queryset._iterable_class.__name__}")
        if queryset._known_related_objects or queryset._prefetch_related_lookups:
            return self._refuse("it has known related objects or prefetches")
        compiler = queryset.query.get_compiler(using=self.using)
        sql, params = compiler.as_sql()
        places = _locate(
            self.kinds, lambda args: self.build(*args).query.get_compiler(using=self.using).as_sql(), sql, params, first
        )
        if isinstance(places, str):
            return self._refuse(places)
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


@dataclass(frozen=True)
class _StatementPlan:
    vendor: str
    sql: str
    params: list
    places: list[tuple[int, int, Callable]]


class PreparedStatement(_Compiled):
    """``build(*args)`` → a ``statements.Statement`` (``statements.update``, ``statements.insert``),
    each argument used only as a parameter, of a kind in ``kinds`` (as ``PreparedRead``'s).
    ``statement(*args)`` → the Statement ``build(*args)`` would give, without compiling it.
    (An argument that changes the SQL, a None where the SQL would say NULL, is a shape of its own.)"""

    what = "statement"
    otherwise = "compiled at each call"

    def __init__(self, build: Callable[..., Statement], *, kinds: tuple[type, ...], using: str = "default"):
        super().__init__(build, kinds, using)

    def statement(self, *args) -> Statement:
        plan = self._current_plan(connections[self.using].vendor)
        if plan is False:
            return self.build(*args)
        return Statement(plan.sql, tuple(_filled(plan.params, plan.places, args)))

    def _prepare(self) -> _StatementPlan | bool:
        first = _stand_ins(self.kinds, 1)
        made = self.build(*first)

        def compiled(args):
            statement = self.build(*args)
            return statement.sql, list(statement.params)

        places = _locate(self.kinds, compiled, made.sql, list(made.params), first)
        if isinstance(places, str):
            return self._refuse(places)
        return _StatementPlan(connections[self.using].vendor, made.sql, list(made.params), places)
