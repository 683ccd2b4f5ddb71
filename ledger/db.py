"""Connections to the ledger's database: SQLite (embedded default) or PostgreSQL, same models.

A unit of work is one ``AsyncSession`` in one transaction. Writes on SQLite go through a
dedicated single-connection engine that opens every transaction with ``BEGIN IMMEDIATE``: SQLite
has one writer anyway, and taking the write lock up front means a read-then-write transaction can
never fail half-way with a busy-snapshot error; waiting writers queue on the pool (an asyncio
wait) instead of spinning in SQLite's busy handler. Other processes are still kept out by the
lock itself and ``busy_timeout``.

The hot paths (a purchase, a nearby search, an API key look-up) skip the session: their SQL is
``Statement``s — Core constructs compiled once per dialect, run straight on the driver — and
``Database.run_direct`` runs such a unit of work as one transaction: on SQLite whole in the
connection's own thread (writes queued meanwhile go together, each its own transaction), on
PostgreSQL as one asyncpg transaction, with ``batch`` sending independent statements as one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Column, Float, Table, bindparam, event
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable, ReturnsRows
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import greenlet_spawn

from ledger.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "sqlite+aiosqlite:///greenpoints-ledger.db"

# PostgreSQL SQLSTATEs after which the whole transaction may simply be run again.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def normalize_url(raw: str) -> URL:
    """Accept the URLs people type (``postgresql://``, ``sqlite:///x.db``); pick async drivers."""
    url = make_url(raw)
    backend = url.get_backend_name()
    if backend == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    elif backend in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"unsupported database URL scheme {url.drivername!r}")
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver must not open transactions on its own: we emit BEGIN ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    # Pages straight from the OS page cache, shared by every connection, instead of a read()
    # per page into each connection's own small cache: random lookups cost a memory access.
    cur.execute("PRAGMA mmap_size=1073741824")
    cur.close()


def _drop_closed(_dbapi_conn: Any, _record: Any, proxy: Any) -> None:
    """Instead of a ping per checkout (three round trips with asyncpg): a connection the server
    closed (restart, terminated backend) is already known to be closed here, and is replaced."""
    driver = proxy.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this connection")


def _begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _is_retryable(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return sqlstate in _RETRYABLE_SQLSTATES


class Database:
    """Engines and sessions for one ledger database."""

    def __init__(self, url: str | URL, *, pool_size: int = 20, echo: bool = False) -> None:
        self.url = normalize_url(str(url)) if isinstance(url, str) else url
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = self.url.database or ""
            if database in {"", ":memory:"}:
                raise ValueError("the ledger needs a SQLite file, not an in-memory database")
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.read_engine = self._sqlite_engine(pool_size, echo, _begin_deferred)
            self.write_engine = self._sqlite_engine(1, echo, _begin_immediate)
        else:
            engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=60,
                echo=echo,
                connect_args={"timeout": 10, "command_timeout": 30},
            )
            event.listen(engine.sync_engine, "checkout", _drop_closed)
            self.read_engine = self.write_engine = engine
        self._sqlite_writer = _SqliteWriter(self.write_engine)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)

    def _sqlite_engine(self, size: int, echo: bool, begin: Callable[[Any], None]) -> AsyncEngine:
        engine = create_async_engine(
            self.url, pool_size=size, max_overflow=0, pool_timeout=300, echo=echo
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", begin)
        return engine

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.url.database or "") if self.is_sqlite else None

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work."""
        try:
            async with self._read_sessions() as session, session.begin():
                yield session
        except (OperationalError, DBAPIError, OSError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connection_problem(exc):
                raise
            raise Unavailable("the ledger database is unavailable") from exc

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A read-write unit of work: commits on success, rolls back on any exception."""
        try:
            async with self._write_sessions() as session, session.begin():
                yield session
        except (OperationalError, DBAPIError, OSError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connection_problem(exc):
                raise
            raise Unavailable("the ledger database is unavailable") from exc

    async def run_write(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 5
    ) -> T:
        """Run ``work`` in one write transaction, again if it was chosen as a deadlock victim."""
        for attempt in range(attempts):
            try:
                async with self.write() as session:
                    return await work(session)
            except DBAPIError as exc:
                if not _is_retryable(exc) or attempt == attempts - 1:
                    raise
                log.info("retrying transaction after %s", exc.orig.__class__.__name__)
                await asyncio.sleep(0.005 * (2**attempt))
        raise AssertionError("unreachable")

    async def run_direct(
        self, work: Callable[[Conn], Awaitable[T]], *, attempts: int = 5, readonly: bool = False
    ) -> T:
        """``run_write`` for a unit of work made only of ``Statement`` calls, without a session.

        SQLite: the whole unit of work runs in the write connection's own thread, from
        ``BEGIN IMMEDIATE`` to ``COMMIT``, in one hand-off instead of one per statement (and
        with the others queued meanwhile; see ``_SqliteWriter``); ``work`` must await nothing
        but Statements (it then never really suspends). PostgreSQL: one asyncpg transaction,
        each Statement sent as it comes. Errors come out as SQLAlchemy's would and an
        unreachable database as ``Unavailable``. The work runs again when it was chosen as a
        deadlock victim, or lost its connection before ``COMMIT`` was sent (so it cannot have
        committed). Once begun it runs to its end even if the caller is cancelled, so it must be
        read-only or keyed (idempotent). ``readonly``: a read-only unit of work on the read
        engine (on PostgreSQL one repeatable-read snapshot for all its statements).
        """
        for attempt in range(attempts):
            state = _Attempt()
            try:
                if self.is_sqlite:  # runs to its end in the driver's thread in any case
                    return await self._direct_once(work, state, readonly)
                # Once begun, to COMMIT or ROLLBACK even if the caller stops waiting: cancelling
                # asyncpg mid-statement leaves a connection fit only to be thrown away.
                attempt_task = asyncio.ensure_future(self._direct_once(work, state, readonly))
                attempt_task.add_done_callback(_retrieve)
                return await asyncio.shield(attempt_task)
            except DBAPIError as exc:
                again = _is_retryable(exc) or (exc.connection_invalidated and not state.committing)
                if again and attempt < attempts - 1:
                    log.info("retrying transaction after %s", exc.orig.__class__.__name__)
                    await asyncio.sleep(0.005 * (2**attempt))
                    continue
                if _is_connection_problem(exc):
                    raise Unavailable("the ledger database is unavailable") from exc
                raise
            except OSError as exc:
                raise Unavailable("the ledger database is unavailable") from exc
        raise AssertionError("unreachable")

    async def _direct_once(
        self, work: Callable[[Conn], Awaitable[T]], state: _Attempt, readonly: bool
    ) -> T:
        if self.is_sqlite and not readonly:
            return await self._sqlite_writer.run(work)
        engine = self.read_engine if readonly else self.write_engine
        async with _pooled(engine) as raw:
            adapter, driver = raw.dbapi_connection, cast(Any, raw.driver_connection)
            try:
                if self.is_sqlite:
                    direct = _SqliteDirect(engine.dialect, driver._conn, "BEGIN")
                    # aiosqlite's own queue to its thread, as SQLAlchemy's adapter uses it.
                    return cast(T, await driver._execute(direct.run, work))
                pg = _AsyncpgDirect(engine.dialect, adapter, driver)
                return await pg.run(work, state, readonly)
            except BaseException as exc:
                lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
                if lost or (not self.is_sqlite and driver.is_in_transaction()):
                    error = exc if isinstance(exc, Exception) else None
                    await greenlet_spawn(raw.invalidate, error)
                raise

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()


_SQLITE_STATEMENT_FAULTS = (
    "syntax error",
    "no such column",
    "no such function",
    "unrecognized token",
)


def _is_connection_problem(exc: DBAPIError) -> bool:
    """True when the database could not be reached, as opposed to a statement being refused."""
    if exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        # SQLite says "operational" of a locked file and of a statement that cannot compile
        # alike; the latter is our bug, to surface as one, not a database that is away.
        return not any(m in str(exc.orig).lower() for m in _SQLITE_STATEMENT_FAULTS)
    text = f"{exc.orig!r}".lower()
    markers = ("connection", "cannotconnectnow", "adminshutdown", "closed", "terminat")
    return any(m in text for m in markers)


def url_from_env() -> str:
    return os.environ.get("GREENPOINTS_LEDGER_URL") or DEFAULT_URL


def insert_on_conflict(session: AsyncSession, table: Any) -> Any:
    """An INSERT that can say ON CONFLICT: both databases have it, spelled by their dialects."""
    bind = session.bind
    return dialect_insert(bind.dialect.name if bind is not None else "sqlite", table)


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """``insert(table)`` of the named dialect, which knows ``ON CONFLICT``."""
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


Row = Sequence[Any]
Processor = Callable[[Any], Any]
_LINK = "ledger.db.link"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the driver's positional parameters, in order
    defaults: dict[str, Any]  # values written into the statement itself
    binds: dict[str, Processor]  # type conversions on the way in, where the type has one
    returns_rows: bool
    results: tuple[Processor | None, ...] | None  # and on the way out, when any column has one

    def args(self, params: dict[str, Any]) -> list[Any]:
        values = {**self.defaults, **params}
        args = []
        for name in self.names:
            value = values[name]
            convert = self.binds.get(name)
            args.append(convert(value) if convert is not None else value)
        return args

    def convert(self, rows: list[Row]) -> list[Row]:
        if self.results is None:
            return rows
        converts = self.results
        return [
            tuple(v if f is None else f(v) for f, v in zip(converts, row, strict=True))
            for row in rows
        ]


@dataclass(frozen=True)
class _Link:
    """The driver connection under a session's current transaction."""

    transaction: object
    connection: AsyncConnection
    dialect: Dialect
    adapter: Any
    driver: Any
    asyncpg: bool

    def in_transaction(self) -> bool:
        if self.asyncpg:
            return bool(self.driver.is_in_transaction())
        return bool(self.driver.in_transaction)


async def _link(session: AsyncSession) -> _Link:
    transaction = session.sync_session.get_transaction()
    link: _Link | None = session.info.get(_LINK)
    if link is not None and transaction is not None and link.transaction is transaction:
        return link
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    link = _Link(
        session.sync_session.get_transaction(),
        connection,
        connection.dialect,
        raw.dbapi_connection,
        raw.driver_connection,
        connection.dialect.driver == "asyncpg",
    )
    session.info[_LINK] = link
    return link


def column_params(table: Table, skip: Sequence[str] = ("id",)) -> dict[Column[Any], Any]:
    """``VALUES`` for every column but ``skip``, as parameters named ``p_<column>``."""
    return {c: bindparam(f"p_{c.name}", type_=c.type) for c in table.c if c.name not in skip}


class Statement:
    """A Core statement compiled once per dialect and handed straight to the driver.

    The hot transactions (a purchase is a dozen short statements) spent several times longer in
    SQLAlchemy's per-execution work — building the statement, its cache key, an execution
    context and a result — than in the database. A ``Statement`` keeps the SQL written as Core
    constructs over the same tables, with the same type conversions, and runs it on the
    session's own connection inside its transaction, so commit, rollback and error handling stay
    SQLAlchemy's. Until the driver has opened the transaction (asyncpg opens it lazily, at the
    first statement) the statement simply goes through the session.

    ``build`` is the statement, or a function of the dialect name for statements spelled
    differently per database (``ON CONFLICT``).
    """

    def __init__(self, build: Executable | Callable[[str], Executable]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[Executable, _Compiled]] = {}

    def build(self, dialect_name: str) -> Executable:
        """The Core statement for one dialect."""
        return self._build if isinstance(self._build, Executable) else self._build(dialect_name)

    def _for(self, dialect: Dialect) -> tuple[Executable, _Compiled]:
        hit = self._compiled.get(dialect.name)
        if hit is None:
            stmt = self.build(dialect.name)
            hit = self._compiled[dialect.name] = (stmt, _compile(stmt, dialect))
        return hit

    def bind(self, **params: Any) -> Bound:
        """This statement with its parameters, to run later in a ``batch``."""
        return Bound(self, params)

    async def rows(self, conn: Conn, **params: Any) -> list[Row]:
        """Run in ``conn``'s transaction; the rows it returns (``RETURNING`` included)."""
        if isinstance(conn, Direct):
            compiled = self._for(conn.dialect)[1]
            return compiled.convert(await conn.fetch(compiled.sql, compiled.args(params)))
        session = conn
        link = await _link(session)
        stmt, compiled = self._for(link.dialect)
        if session.new or session.dirty or session.deleted:
            await session.flush()  # what the session would have done before a statement
        if not link.in_transaction():
            result = await session.execute(stmt, params)
            return [tuple(r) for r in result] if compiled.returns_rows else []
        args = compiled.args(params)
        try:
            if link.asyncpg:
                rows: list[Row] = await link.driver.fetch(compiled.sql, *args)
            else:
                rows = await link.driver.execute_fetchall(compiled.sql, args)
        except Exception as exc:
            error = _translate(link.dialect, link.adapter, compiled.sql, args, exc)
            if error is exc:
                raise
            if getattr(error, "connection_invalidated", False):
                await link.connection.invalidate(exc)
            raise error from exc
        return compiled.convert(rows)

    async def one(self, conn: Conn, **params: Any) -> Row:
        rows = await self.rows(conn, **params)
        if len(rows) != 1:
            raise AssertionError(f"expected one row, got {len(rows)}")
        return rows[0]

    async def first(self, conn: Conn, **params: Any) -> Row | None:
        rows = await self.rows(conn, **params)
        return rows[0] if rows else None

    async def scalar(self, conn: Conn, **params: Any) -> Any:
        return (await self.one(conn, **params))[0]


@dataclass(frozen=True)
class Bound:
    statement: Statement
    params: dict[str, Any]

    async def rows(self, conn: Conn) -> list[Row]:
        return await self.statement.rows(conn, **self.params)


_BATCHES: dict[tuple[Statement, ...], Statement] = {}


async def batch(conn: Conn, *parts: Bound) -> list[Row]:
    """Run independent statements as one: the last one's rows.

    On PostgreSQL they go as one statement, all but the last as data-modifying CTEs: one round
    trip instead of several. Elsewhere they run one after the other (on SQLite a round trip
    costs nothing). So they must be independent: no two touch the same row, none reads what
    another writes (CTEs all see the snapshot from before the statement), and a parameter name
    they share has the same value in each.
    """
    if dialect_name(conn) != "postgresql" or len(parts) == 1:
        rows: list[Row] = []
        for part in parts:
            rows = await part.statement.rows(conn, **part.params)
        return rows
    key = tuple(part.statement for part in parts)
    combined = _BATCHES.get(key)
    if combined is None:
        combined = _BATCHES[key] = Statement(lambda name: _combine(name, key))
    params: dict[str, Any] = {}
    for part in parts:
        for name, value in part.params.items():
            if params.setdefault(name, value) is not value and params[name] != value:
                raise ValueError(f"batched statements disagree on parameter {name!r}")
    return await combined.rows(conn, **params)


def dialect_name(conn: Conn) -> str:
    """``postgresql`` or ``sqlite``: for the few places that say a thing differently on each."""
    return str((conn.dialect if isinstance(conn, Direct) else conn.get_bind().dialect).name)


def _combine(dialect: str, statements: tuple[Statement, ...]) -> Executable:
    *first, last = (s.build(dialect) for s in statements)
    ctes = [cast(Any, stmt).cte(f"batch_{n}") for n, stmt in enumerate(first)]
    return cast(Executable, cast(Any, last).add_cte(*ctes))


def _compile(stmt: Executable, dialect: Dialect) -> _Compiled:
    compiled: Any = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
    if compiled.escaped_bind_names:
        raise ValueError("parameter names that need escaping are not supported")
    defaults: dict[str, Any] = {}
    binds: dict[str, Processor] = {}
    for name, bind in compiled.binds.items():
        if not bind.required:
            defaults[name] = bind.effective_value
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            binds[name] = convert
    columns = list(stmt.exported_columns) if isinstance(stmt, ReturnsRows) else []
    processors = tuple(_result_processor(c.type, dialect) for c in columns)
    results = processors if any(p is not None for p in processors) else None
    names = tuple(compiled.positiontup or ())
    return _Compiled(compiled.string, names, defaults, binds, bool(columns), results)


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    if isinstance(type_, Float) and not type_.asdecimal:
        return None  # every driver hands floats back as floats (asyncpg's wants the column oid)
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def _translate(dialect: Dialect, adapter: Any, sql: str, args: Any, exc: Exception) -> Exception:
    """The exception SQLAlchemy itself would have raised for a driver's ``exc``."""
    if isinstance(exc, DBAPIError) or not isinstance(exc, Exception):
        return exc
    dbapi = dialect.loaded_dbapi
    orig: Exception = exc
    if not isinstance(exc, dbapi.Error) and adapter is not None:
        try:
            adapter._handle_exception(exc)  # the dialect's own driver → DBAPI translation
        except dbapi.Error as translated:
            orig = translated
        except Exception:  # not a database error: report the original as it is
            pass
    if not isinstance(orig, dbapi.Error):
        return exc
    invalidated = bool(dialect.is_disconnect(cast(Any, orig), adapter, None))
    return DBAPIError.instance(
        sql, args, orig, dbapi.Error, connection_invalidated=invalidated, dialect=dialect
    )


class Direct:
    """A write transaction on the bare driver connection; see ``Database.run_direct``."""

    def __init__(self, dialect: Dialect, adapter: Any) -> None:
        self.dialect = dialect
        self.adapter = adapter

    async def fetch(self, sql: str, args: list[Any]) -> list[Row]:
        raise NotImplementedError


Conn = AsyncSession | Direct


class _SqliteDirect(Direct):
    """Runs in the connection's own thread: every statement completes without suspending."""

    def __init__(self, dialect: Dialect, conn: sqlite3.Connection, begin: str) -> None:
        super().__init__(dialect, None)
        self.conn = conn
        self.begin = begin

    async def fetch(self, sql: str, args: list[Any]) -> list[Row]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _translate(self.dialect, None, sql, args, exc) from exc

    def run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """BEGIN [IMMEDIATE], ``work``, COMMIT — all here, in the driver's thread."""
        self._sql(self.begin)
        try:
            result = _complete(work(self))
        except BaseException:
            if self.conn.in_transaction:
                self._sql("ROLLBACK")
            raise
        self._sql("COMMIT")
        return result

    def run_lot(
        self,
        lot: list[tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """``run`` each unit in turn, answering each caller on ``loop`` as it commits."""
        for work, done in lot:
            try:
                result = self.run(work)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, done, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, done, result, None)

    def _sql(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except sqlite3.Error as exc:
            raise _translate(self.dialect, None, sql, (), exc) from exc


class _SqliteWriter:
    """Direct units of work on SQLite's one write connection, as many per hand-off as are queued.

    SQLite runs one write transaction at a time anyway. Checking the connection out, handing
    the work to its thread and hearing back take the event loop's attention between every two
    transactions, and with many requests in flight that wait, not SQLite, set the pace. So the
    work queued meanwhile goes over together: one checkout and one hand-off for the lot, each
    unit still its own transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on its own failure),
    each caller answered as soon as its own commits. The connection goes back to the pool
    between lots, so sessions waiting for it take their turn.
    """

    MAX_LOT = 64

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.queue: collections.deque[tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]]
        self.queue = collections.deque()
        self.drainer: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.queue.append((work, done))
        loop = asyncio.get_running_loop()
        if self.drainer is None or self.drainer.done() or self.drainer.get_loop() is not loop:
            self.drainer = loop.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        try:
            while self.queue:
                lot = [self.queue.popleft() for _ in range(min(len(self.queue), self.MAX_LOT))]
                loop = asyncio.get_running_loop()
                # Skip callers that gave up, and any left by an event loop that is gone.
                lot = [(w, done) for w, done in lot if not done.done() and done.get_loop() is loop]
                if lot:
                    await self._run_lot(lot)
        finally:
            if self.drainer is asyncio.current_task():
                self.drainer = None

    async def _run_lot(
        self, lot: list[tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with _pooled(self.engine) as raw:
                driver = cast(Any, raw.driver_connection)
                direct = _SqliteDirect(self.engine.dialect, driver._conn, "BEGIN IMMEDIATE")
                await driver._execute(direct.run_lot, lot, loop)
        except BaseException as exc:  # the lot never ran, or the connection failed under it
            for _work, done in lot:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise


@contextlib.asynccontextmanager
async def _pooled(engine: AsyncEngine) -> AsyncIterator[PoolProxiedConnection]:
    """A bare connection from ``engine``'s pool: no ``Connection`` around it, half the cost.

    A connection that cannot be made at all is the database being unavailable. Unlike a
    ``Connection``, ``raw_connection`` hands the driver's error up unwrapped — e.g. PostgreSQL
    still recovering after a restart ("not yet accepting connections") — which would otherwise
    surface as a 500 instead of a 503 the client knows to retry.
    """
    try:
        raw = await engine.raw_connection()
    except cast(Any, engine.dialect).loaded_dbapi.Error as exc:
        raise Unavailable("the ledger database is unavailable") from exc
    try:
        yield raw
    finally:
        await greenlet_spawn(raw.close)  # checking in may talk to the driver


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an outcome nobody may be waiting for any more as seen."""
    if not task.cancelled():
        task.exception()


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():
        return  # its caller gave up waiting
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


def _complete(awaitable: Awaitable[T]) -> T:
    """The result of an awaitable that never suspends (it awaits only ``_SqliteDirect``)."""
    coro = awaitable.__await__()
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    close = getattr(coro, "close", None)
    if close is not None:
        close()
    raise RuntimeError("a direct unit of work awaited something other than a Statement")


@dataclass
class _Attempt:
    committing: bool = False  # COMMIT was sent: a lost connection may have committed


class _AsyncpgDirect(Direct):
    def __init__(self, dialect: Dialect, adapter: Any, driver: Any) -> None:
        super().__init__(dialect, adapter)
        self.driver = driver

    async def run(self, work: Callable[[Conn], Awaitable[T]], state: _Attempt, readonly: bool) -> T:
        if readonly:
            transaction = self.driver.transaction(isolation="repeatable_read", readonly=True)
        else:
            transaction = self.driver.transaction()
        await self._step("BEGIN", transaction.start)
        try:
            result = await work(self)
        except BaseException:
            await self._step("ROLLBACK", transaction.rollback)
            raise
        state.committing = True
        await self._step("COMMIT", transaction.commit)
        return result

    async def _step(self, sql: str, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except Exception as exc:
            error = _translate(self.dialect, self.adapter, sql, (), exc)
            if error is exc:
                raise
            raise error from exc

    async def fetch(self, sql: str, args: list[Any]) -> list[Row]:
        try:
            rows: list[Row] = await self.driver.fetch(sql, *args)
        except Exception as exc:
            raise _translate(self.dialect, self.adapter, sql, args, exc) from exc
        return rows
