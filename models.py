"""Database models: films, clients, admins, ratings and footprints.

``db`` lives here; the application factory calls ``db.init_app``. Scripts outside
the app use :func:`make_engine` with the same table metadata.
"""

import atexit
import logging
import os
import re
import threading
import time
import weakref
from collections import namedtuple
from datetime import UTC, date, datetime

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from pymysql.constants import CLIENT, SERVER_STATUS
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.pool import Pool

MYSQL_TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def utcnow():
    """Return the current UTC time as a naive datetime (what both databases store)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value):
    """Return an ISO 8601 string for a date or datetime, or None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat() + "Z"
    return value.isoformat()


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection, connection_record):
    """Turn on foreign keys (for cascades), WAL and a busy timeout on SQLite."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA journal_mode")
    mode = cursor.fetchone()[0]
    if mode != "memory":
        # WAL lets readers run beside the one writer; NORMAL is durable under WAL
        # except for the last transactions on power loss, not on a process crash.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# MySQL pools (see config.engine_options) ping a connection before use only when it
# sat in the pool longer than this, and roll back on return only when a transaction
# is open. Each skipped ping or rollback is a round trip saved on every request; a
# connection used a second ago is alive, and one that died anyway fails its
# statement, which invalidates the pool (the request gets a 503, the next ones a
# fresh connection).
PING_AFTER_IDLE = 1.0  # seconds


def _is_mysql(dbapi_connection):
    return type(dbapi_connection).__module__.startswith("pymysql")


@event.listens_for(Pool, "connect")
def _note_connected(dbapi_connection, connection_record):
    connection_record.info["returned_at"] = time.monotonic()


@event.listens_for(Pool, "checkin")
def _note_returned(dbapi_connection, connection_record):
    connection_record.info["returned_at"] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection, connection_record, connection_proxy):
    """Pre-ping a MySQL connection that has been idle for a while."""
    if not _is_mysql(dbapi_connection):
        return
    idle = time.monotonic() - connection_record.info.get("returned_at", 0.0)
    if idle <= PING_AFTER_IDLE:
        return
    try:
        dbapi_connection.ping(reconnect=False)
    except Exception as exc:  # the pool discards it and tries another
        raise DisconnectionError(f"pre-ping failed: {exc}") from exc


@event.listens_for(Pool, "reset")
def _reset_mysql(dbapi_connection, connection_record, reset_state):
    """Roll a returned MySQL connection back only when the server says it is in a
    transaction (the status of the last reply): after a commit there is nothing to
    undo."""
    if not _is_mysql(dbapi_connection) or reset_state.transaction_was_reset:
        return
    if dbapi_connection.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS:
        dbapi_connection.rollback()


_reads_lock = threading.Lock()


def reads_engine():
    """Return the app's autocommit engine for the hot pages' statements, or None.

    Only on MySQL (config.autocommit_options); made on first use, so in each
    worker after the fork. Its connections accept several statements in one packet
    (:func:`write_together` sends a whole transaction at once); only the fixed,
    precompiled statements of this module run there, never SQL built from input.
    SQLite reads run outside transactions already.
    """
    extensions = current_app.extensions
    if "reads_engine" not in extensions:
        with _reads_lock:
            if "reads_engine" not in extensions:
                from config import autocommit_options

                engine = None
                if db.engine.dialect.name == "mysql":
                    options = current_app.config.get("SQLALCHEMY_ENGINE_OPTIONS")
                    engine = create_engine(db.engine.url, **autocommit_options(options))
                    event.listen(engine, "do_connect", _allow_multi_statements)
                extensions["reads_engine"] = engine
    return extensions["reads_engine"]


def _allow_multi_statements(dialect, connection_record, cargs, cparams):
    # OR-ed into the dialect's own flags (it needs FOUND_ROWS for row counts).
    cparams["client_flag"] = cparams.get("client_flag", 0) | CLIENT.MULTI_STATEMENTS


def dispose_engines(close=True):
    """Release the pooled connections of the current app's engines."""
    db.engine.dispose(close=close)
    engine = current_app.extensions.get("reads_engine")
    if engine is not None:
        engine.dispose(close=close)


# The hot pages' statements run on the driver's own cursor. There SQLAlchemy's
# execution layer (connection, context, result objects) costs more than the
# statement itself: a film page's read takes 94 -> 12 us on SQLite and 440 -> 230 us
# on MariaDB. Each statement is compiled once per dialect, with its literal values
# and type conversions; connections still come from the engine's pool (pings,
# recycling), driver errors still arrive as SQLAlchemy's exceptions (a lost
# database is a 503 as everywhere else), and the engines' before_cursor_execute
# listeners still see every statement (with no Connection or context).


class _Compiled:
    """One statement's SQL for one dialect, and how to fill and read it."""

    __slots__ = ("sql", "names", "defaults", "processors", "row_type", "results")

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        # Positional styles (SQLite's "?") list the names in order, repeats included.
        self.names = compiled.positiontup if compiled.positional else None
        self.defaults = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required
        }
        self.processors = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor
        self.row_type = None
        self.results = ()
        # A SELECT's columns, or the RETURNING columns of a write.
        columns = list(getattr(statement, "exported_columns", ()))
        if columns:
            self.row_type = namedtuple(
                "RawRow", [column.key for column in columns], rename=True
            )
            self.results = tuple(
                (index, processor)
                for index, column in enumerate(columns)
                if (
                    processor := column.type.dialect_impl(dialect).result_processor(
                        dialect, None
                    )
                )
            )

    def parameters(self, values):
        merged = {**self.defaults, **values} if self.defaults else dict(values)
        for name, processor in self.processors.items():
            if name in merged:
                merged[name] = processor(merged[name])
        if self.names is None:
            return merged
        return tuple(merged[name] for name in self.names)

    def row(self, values):
        if values is None:
            return None
        if self.results:
            values = list(values)
            for index, processor in self.results:
                values[index] = processor(values[index])
        return self.row_type._make(values)


_compiled_statements = {}


def _compiled(statement, dialect):
    key = (statement, dialect.name)
    compiled = _compiled_statements.get(key)
    if compiled is None:
        compiled = _compiled_statements[key] = _Compiled(statement, dialect)
    return compiled


def _hot_engine():
    engine = reads_engine()
    return db.engine if engine is None else engine


def insert_returning():
    """Whether the app's database answers INSERT ... RETURNING.

    MariaDB (10.5+) and SQLite (3.35+) do; MySQL does not. MariaDB's dialect knows
    only once it has connected: until then this says no.
    """
    return _hot_engine().dialect.insert_returning


def _notify(engine, cursor, sql, parameters):
    for listener in engine.dispatch.before_cursor_execute:
        listener(None, cursor, sql, parameters, None, False)


def _database_error(engine, raw, cursor, exc, sql, parameters):
    """Return SQLAlchemy's exception for a driver error, as its Connection would.

    A lost connection is invalidated with the whole pool (the others are likely
    dead too), so the next request connects afresh.
    """
    dialect = engine.dialect
    disconnected = dialect.is_disconnect(exc, raw.dbapi_connection, cursor)
    if disconnected:
        raw.invalidate(exc)
        engine.dispose()
    return DBAPIError.instance(
        sql,
        parameters,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnected,
        dialect=dialect,
    )


def read_row(statement, parameters):
    """Run a one-statement read and return its first row (a named tuple), or None.

    On MySQL it runs on the autocommit engine (:func:`reads_engine`): no
    transaction is opened, so none is rolled back afterwards.
    """
    engine = _hot_engine()
    compiled = _compiled(statement, engine.dialect)
    values = compiled.parameters(parameters)
    raw = engine.raw_connection()
    cursor = None
    try:
        cursor = raw.cursor()
        _notify(engine, cursor, compiled.sql, values)
        cursor.execute(compiled.sql, values)
        first = cursor.fetchone()
        cursor.close()
    except engine.dialect.loaded_dbapi.Error as exc:
        raise _database_error(engine, raw, cursor, exc, compiled.sql, values) from exc
    finally:
        raw.close()
    return compiled.row(first)


def write_together(statements, parameters, read=None):
    """Run write statements in one transaction, then an optional read, and commit.

    Every statement takes its parameters from the one mapping. On MySQL the whole
    transaction (START TRANSACTION, the statements, the read, COMMIT) goes to the
    server in one packet: one round trip and one log flush; a single write needs
    no transaction there (it commits itself and the read follows it in the same
    packet). Elsewhere the statements run in turn and the connection commits them.

    Args:
        statements: Core INSERT/UPDATE/DELETE statements, run in this order. The
            last may have a RETURNING clause (where the database has one) instead
            of a read.
        parameters: Their bound values, by name.
        read: A SELECT run last, after the writes (it sees them).

    Returns:
        ([row count of each statement], the first row of the read, or of the last
        statement's RETURNING, or None).
    """
    engine = _hot_engine()
    dialect = engine.dialect
    steps = [_compiled(statement, dialect) for statement in statements]
    last = _compiled(read, dialect) if read is not None else None
    raw = engine.raw_connection()
    cursor = None
    sql, values, first = None, None, None
    try:
        cursor = raw.cursor()
        if dialect.name == "mysql":
            # The driver fills each statement in on its own (their literal values
            # may share names), then they go out together.
            filled = [
                cursor.mogrify(step.sql, step.parameters(parameters))
                for step in steps + ([last] if last else [])
            ]
            # A write alone commits itself (autocommit), and a read sent after it
            # sees it: no transaction needed. Several writes go in one.
            alone = len(steps) == 1
            sql = ";".join(
                filled if alone else ["START TRANSACTION", *filled, "COMMIT"]
            )
            _notify(engine, cursor, sql, None)
            cursor.execute(sql)  # its first result: the write's, or START's
            counts = []
            for index, step in enumerate(steps):
                if index or not alone:
                    cursor.nextset()
                count, returned = _written(step, cursor)
                counts.append(count)
                if step.row_type is not None:
                    first = returned
            if last is not None:
                cursor.nextset()
                first = cursor.fetchone()
            while cursor.nextset():  # COMMIT's, if any
                pass
        else:
            counts = []
            for step in steps:
                sql, values = step.sql, step.parameters(parameters)
                _notify(engine, cursor, sql, values)
                cursor.execute(sql, values)
                count, returned = _written(step, cursor)
                counts.append(count)
                if step.row_type is not None:
                    first = returned
            if last is not None:
                sql, values = last.sql, last.parameters(parameters)
                _notify(engine, cursor, sql, values)
                cursor.execute(sql, values)
                first = cursor.fetchone()
            raw.commit()
        cursor.close()
    except engine.dialect.loaded_dbapi.Error as exc:
        _roll_back_quietly(raw)
        raise _database_error(engine, raw, cursor, exc, sql, values) from exc
    finally:
        raw.close()
    if last is None and steps and steps[-1].row_type is not None:
        last = steps[-1]
    return counts, (last.row(first) if last is not None else None)


def _written(step, cursor):
    """Return a write's row count and, when it has RETURNING, its first row."""
    if step.row_type is None:
        return cursor.rowcount, None
    returned = cursor.fetchall()  # the rows written
    return len(returned), (returned[0] if returned else None)


def _roll_back_quietly(raw):
    try:
        raw.rollback()
    except Exception:  # the connection is gone: nothing is left to undo
        pass


def write_alone(statement, parameters):
    """Run a one-statement write, committed at once, and return its row count."""
    counts, _ = write_together([statement], parameters)
    return counts[0]


# Film clicks ----------------------------------------------------------------------

logger = logging.getLogger(__name__)

# Films per UPDATE when clicks are written in a batch.
CLICKS_PER_STATEMENT = 500


def write_clicks(clicks):
    """Add ``{movie_id: clicks}`` to the films' click counts in one transaction.

    Rows are updated in ascending id order, so two processes writing their batches
    at once cannot deadlock; ids of films deleted since are skipped. updated_at
    stays: it marks edits to the film, not views.
    """
    ids = sorted(clicks)
    with db.engine.begin() as connection:
        for start in range(0, len(ids), CLICKS_PER_STATEMENT):
            chunk = [
                int(movie_id) for movie_id in ids[start : start + CLICKS_PER_STATEMENT]
            ]
            # Plain SQL made of integers: compiling a statement this size would
            # cost more than running it (tens of ms holding the interpreter lock),
            # and each size would stay in the engine's compiled-statement cache.
            added = " ".join(f"WHEN {i} THEN {int(clicks[i])}" for i in chunk)
            listed = ",".join(map(str, chunk))
            connection.exec_driver_sql(
                f"UPDATE movie SET click_count = click_count + CASE id {added} END"
                f" WHERE id IN ({listed})"
            )


# A client's view waiting in a ViewBuffer, made with a session accepted at the time.
# It is written if the account is still the same one (its id and creation time: a
# new account may reuse a deleted one's id on SQLite) and has not cleared its views
# since. ``values`` is its row of the INSERT, made with the view: plain SQL of
# integers and a timestamp (the text SQLAlchemy stores for a DateTime on SQLite,
# and a MySQL literal), so the batch costs the writer thread no formatting.
PendingFootprint = namedtuple(
    "PendingFootprint", "client_id movie_id client_created_at views_cleared values"
)


def pending_footprint(client_id, movie_id, viewed_at, client_created_at, views_cleared):
    """Return a :class:`PendingFootprint` for a client's view."""
    client_id, movie_id = int(client_id), int(movie_id)
    return PendingFootprint(
        client_id,
        movie_id,
        client_created_at,
        views_cleared,
        f"({client_id},{movie_id},'{viewed_at.isoformat(' ', 'microseconds')}')",
    )


# Views per INSERT when footprints are written in a batch.
FOOTPRINTS_PER_STATEMENT = 500
# Views a process keeps while its writes fail (about a minute of a busy worker's);
# beyond it the oldest are dropped, so a long outage cannot exhaust memory.
MAX_BUFFERED_FOOTPRINTS = 100_000


def write_footprints(footprints):
    """Write buffered views (:class:`PendingFootprint`, oldest first), one transaction.

    Views of films or accounts deleted since, and those made before the client
    cleared their views, are dropped; the rest are inserted in the order they were
    made (a view made before its account was disabled or given another password
    still counts). The films and accounts checked are locked until the insert is
    committed: on MySQL with shared row locks taken in the order every writer of
    this app takes them (films by ascending id, then accounts), so a rating, a clear
    or another worker's batch waits instead of deadlocking; on SQLite by taking the
    database's write lock first. Returns the number of views written.
    """
    client_ids = sorted({footprint.client_id for footprint in footprints})
    movie_ids = sorted({footprint.movie_id for footprint in footprints})
    listed = ",".join(map(str, movie_ids))
    mysql = db.engine.dialect.name == "mysql"
    lock = " LOCK IN SHARE MODE" if mysql else ""
    # Plain SQL made of integers, like the click batches.
    with db.engine.begin() as connection:
        if not mysql:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        found = connection.exec_driver_sql(
            f"SELECT COUNT(*) FROM movie WHERE id IN ({listed}){lock}"
        ).scalar()
        films = set(movie_ids)
        if found != len(movie_ids):  # some were deleted since
            films = set(
                connection.exec_driver_sql(
                    f"SELECT id FROM movie WHERE id IN ({listed})"
                ).scalars()
            )
        accounts = {
            row.id: (row.created_at, row.views_cleared or 0)
            for row in connection.execute(
                _FOOTPRINT_ACCOUNTS, {"client_ids": client_ids}
            )
        }
        values = [
            footprint.values
            for footprint in footprints
            if footprint.movie_id in films
            and accounts.get(footprint.client_id)
            == (footprint.client_created_at, footprint.views_cleared)
        ]
        for start in range(0, len(values), FOOTPRINTS_PER_STATEMENT):
            rows = ",".join(values[start : start + FOOTPRINTS_PER_STATEMENT])
            connection.exec_driver_sql(
                f"INSERT INTO footprint (client_id, movie_id, viewed_at) VALUES {rows}"
            )
    return len(values)


class ViewBuffer:
    """Film views counted in this process and written to the database in batches.

    A film page adds its click, and a client's page their footprint, here instead of
    writing them itself: a thread of this process writes them every ``interval``
    seconds (:func:`write_footprints`, then :func:`write_clicks`), and the rest at
    exit. So a film page writes nothing of its own (it is one read), a busy film's
    row is written once per interval, not once per view, and the footprints of an
    interval go in one transaction. Pages show the stored count plus this process's
    unwritten clicks; a client's history shows a view once it is written (this
    process's own are written before its history is read). A failed write keeps
    its views for the next try; a process killed without warning (SIGKILL, power
    loss) loses at most its last interval's.
    """

    def __init__(self, app, interval):
        self.app = app
        self.interval = interval
        self._start_afresh()
        _view_buffers.add(self)

    def _start_afresh(self):
        self._lock = threading.Lock()
        # One write at a time: a flush (exit, admin stats, a history) returns only
        # once every view counted before it, including those a write in flight had
        # taken, is in the database (or kept after a failure).
        self._write_lock = threading.Lock()
        self._pending = {}
        self._in_flight = {}  # taken by the write under way, not committed yet
        self._footprints = []
        self._writer = None

    def _wake_writer(self):
        # Called holding self._lock.
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_every_interval, name="view-writer", daemon=True
            )
            self._writer.start()

    def add(self, movie_id):
        """Count one click on the film; return this process's unwritten clicks on it."""
        with self._lock:
            clicks = self._pending[movie_id] = self._pending.get(movie_id, 0) + 1
            clicks += self._in_flight.get(movie_id, 0)
            self._wake_writer()
        return clicks

    def add_footprint(self, footprint):
        """Keep a client's view (a :class:`PendingFootprint`) for the next write."""
        with self._lock:
            self._footprints.append(footprint)
            self._wake_writer()

    def unwritten(self, movie_id):
        """Return this process's clicks on the film not yet in the database."""
        with self._lock:
            return self._pending.get(movie_id, 0) + self._in_flight.get(movie_id, 0)

    def flush(self):
        """Write the unwritten views now; return the number of films clicked.

        The footprints and the clicks are written in transactions of their own: a
        failure of one keeps its views for the next try (and is raised) without
        holding the other back.
        """
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                footprints, self._footprints = self._footprints, []
                self._in_flight = pending
            if not pending and not footprints:
                return 0
            failure = None
            with self.app.app_context():
                if footprints:
                    try:
                        write_footprints(footprints)
                    except Exception as exc:
                        failure = exc
                        self._keep_footprints(footprints)
                if pending:
                    try:
                        write_clicks(pending)
                    except Exception as exc:
                        failure = failure or exc
                        with self._lock:  # keep them, with any counted meanwhile
                            for movie_id, clicks in pending.items():
                                self._pending[movie_id] = (
                                    self._pending.get(movie_id, 0) + clicks
                                )
            with self._lock:
                self._in_flight = {}
            if failure is not None:
                raise failure
            return len(pending)

    def _keep_footprints(self, footprints):
        with self._lock:
            self._footprints[:0] = footprints  # older first
            dropped = len(self._footprints) - MAX_BUFFERED_FOOTPRINTS
            if dropped > 0:  # the database has been away for long: keep the newest
                del self._footprints[:dropped]
        if dropped > 0:
            logger.error("%d buffered film views dropped (database away)", dropped)

    def close(self):
        """Write what is left, and leave the exit's list (an app being torn down)."""
        _view_buffers.discard(self)
        return self.flush()

    def _write_every_interval(self):
        while True:
            time.sleep(self.interval)
            with self._lock:
                if not self._pending and not self._footprints:
                    self._writer = None  # idle: the next view starts a writer again
                    return
            try:
                self.flush()
            except Exception as exc:
                logger.warning("film views not written yet (%r); retrying", exc)


_view_buffers = weakref.WeakSet()


def write_buffered_views(before):
    """Write the current app's buffered views now, for a read that must see them.

    Other processes' views follow within their CLICK_FLUSH_SECONDS. A failure is
    logged (``before`` names the read) and the views stay for the writer's next try.
    """
    buffer = current_app.extensions.get("views")
    if buffer is None:
        return
    try:
        buffer.flush()
    except Exception as exc:
        logger.warning("film views not written before %s: %r", before, exc)


def flush_views():
    """Write every buffer's unwritten views (a worker's exit); log what fails."""
    for buffer in list(_view_buffers):
        try:
            buffer.flush()
        except Exception:
            logger.exception("film views lost at exit")


def _drop_parents_views():
    # A forked child starts empty: its parent still holds and writes its own.
    for buffer in list(_view_buffers):
        buffer._start_afresh()


os.register_at_fork(after_in_child=_drop_parents_views)
atexit.register(flush_views)


def make_engine(database_url, **options):
    """Create an engine outside Flask (scripts), with the app's engine options."""
    from config import engine_options

    merged = engine_options(database_url)
    merged.update(options)
    return create_engine(database_url, **merged)


def _default_year(context):
    """Derive a new film's year from its title (or date) when none is given."""
    parameters = context.get_current_parameters()
    return film_year(parameters.get("title"), parameters.get("release_date"))


class Movie(db.Model):
    __tablename__ = "movie"
    # No index on click_count: every film page bumps it, and an index would be
    # rewritten with each click; only the admin's top-ten chart sorts by it.
    __table_args__ = (
        Index("ix_movie_score", "score"),
        Index("ix_movie_release_date", "release_date"),
        Index("ix_movie_year", "year"),
        Index("ix_movie_title", "title"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    # Genre names in u.genre order, joined with commas ("Animation,Children's,Comedy").
    tags: Mapped[str] = mapped_column(String(255), default="")
    director: Mapped[str | None] = mapped_column(String(255))
    actors: Mapped[str | None] = mapped_column(String(1024))
    summary: Mapped[str | None] = mapped_column(Text)
    # Mean user rating on the 1-5 scale; null while nobody has rated the film.
    score: Mapped[float | None] = mapped_column(Double)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    click_count: Mapped[int] = mapped_column(Integer, default=0)
    release_date: Mapped[date | None] = mapped_column(Date)
    # The film's year, from its title "(1995)": MovieLens release dates are often a
    # later re-release (Fargo: 1997-02-14), so the date cannot give it.
    year: Mapped[int | None] = mapped_column(SmallInteger, default=_default_year)
    imdb_id: Mapped[str | None] = mapped_column(String(16))
    imdb_url: Mapped[str | None] = mapped_column(String(512))
    poster_url: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, onupdate=utcnow
    )

    ratings: Mapped[list["Rating"]] = relationship(
        back_populates="movie", cascade="all, delete-orphan", passive_deletes=True
    )
    footprints: Mapped[list["Footprint"]] = relationship(
        back_populates="movie", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def tag_list(self):
        return [tag for tag in (self.tags or "").split(",") if tag]

    def to_dict(self):
        """Return the film as the JSON the front end uses."""
        return movie_json(self)


GENRE_NAMES = {
    "unknown": "未知类型",
    "Action": "动作",
    "Adventure": "冒险",
    "Animation": "动画",
    "Children's": "儿童",
    "Comedy": "喜剧",
    "Crime": "犯罪",
    "Documentary": "纪录片",
    "Drama": "剧情",
    "Fantasy": "奇幻",
    "Film-Noir": "黑色电影",
    "Horror": "恐怖",
    "Musical": "歌舞",
    "Mystery": "悬疑",
    "Romance": "爱情",
    "Sci-Fi": "科幻",
    "Thriller": "惊悚",
    "War": "战争",
    "Western": "西部",
}


def genre_name(tag):
    """Return the Chinese name of a MovieLens genre (other tags unchanged)."""
    return GENRE_NAMES.get(tag, tag)


# A film's mean rating is shrunk towards the catalogue mean as if it had this many
# more ratings at that mean, so that two 5-star votes do not top the chart.
DAMPING_RATINGS = 15


def damped_score(mean_score):
    """SQL expression: the film's mean rating shrunk towards ``mean_score``."""
    return (
        func.coalesce(Movie.score, 0) * Movie.rating_count
        + DAMPING_RATINGS * mean_score
    ) / (Movie.rating_count + DAMPING_RATINGS)


def rescore_movies(movie_ids=None):
    """UPDATE statement: films' score and rating_count recomputed from the ratings.

    All films, or only ``movie_ids``. updated_at stays: it marks edits, not votes.
    """
    count = (
        select(func.count())
        .where(Rating.movie_id == Movie.id)
        .correlate(Movie)
        .scalar_subquery()
    )
    mean = (
        select(func.avg(Rating.rating))
        .where(Rating.movie_id == Movie.id)
        .correlate(Movie)
        .scalar_subquery()
    )
    statement = update(Movie).values(
        rating_count=count, score=mean, updated_at=Movie.updated_at
    )
    if movie_ids is not None:
        statement = statement.where(Movie.id.in_(list(movie_ids)))
    return statement.execution_options(synchronize_session=False)


TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


def film_year(title, release_date=None):
    """Return the year a title names ("Fargo (1996)"), else the release date's."""
    match = TITLE_YEAR.search(title or "")
    if match:
        return int(match.group(1))
    return release_date.year if release_date else None


def movie_counts_json(movie):
    """Return the JSON fields that change with every rating and click."""
    score = movie.score
    return {
        "score": round(score, 1) if score is not None else None,
        "rating_count": movie.rating_count or 0,
        "click_count": movie.click_count or 0,
    }


def movie_json(movie):
    """Return the front end's JSON for a Movie, or for a Core row of the movie table.

    Hot paths read plain rows (no ORM objects); both give the same document.
    """
    release_date = movie.release_date
    return {
        "id": movie.id,
        "title": movie.title,
        "tags": [tag for tag in (movie.tags or "").split(",") if tag],
        "director": movie.director,
        "actors": movie.actors,
        "summary": movie.summary,
        **movie_counts_json(movie),
        "release_date": iso(release_date),
        "year": movie.year,
        "imdb_id": movie.imdb_id,
        "imdb_url": movie.imdb_url,
        "poster_url": movie.poster_url,
        "poster": f"/posters/{movie.id}",
    }


class Client(db.Model):
    __tablename__ = "client"
    __table_args__ = (
        Index("ix_client_source_created", "source", "created_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # Null for imported MovieLens users: they have no password and cannot log in.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16), default="registered")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Raised in the transaction of every change to the client's history other than a
    # new view (a rating set, changed or removed, a rated film deleted, the views
    # cleared): the home page reuses its recommendations while this and the latest
    # view are unchanged. Null (an older database) counts as 0.
    history_version: Mapped[int | None] = mapped_column(Integer, default=0)
    # Raised each time the client clears their views: a view still waiting in a
    # process's ViewBuffer from before is then not written. Null counts as 0.
    views_cleared: Mapped[int | None] = mapped_column(Integer, default=0)
    age: Mapped[int | None] = mapped_column(SmallInteger)
    gender: Mapped[str | None] = mapped_column(String(1))
    occupation: Mapped[str | None] = mapped_column(String(32))
    zip_code: Mapped[str | None] = mapped_column(String(16))

    ratings: Mapped[list["Rating"]] = relationship(
        back_populates="client", cascade="all, delete-orphan", passive_deletes=True
    )
    footprints: Mapped[list["Footprint"]] = relationship(
        back_populates="client", cascade="all, delete-orphan", passive_deletes=True
    )

    def to_dict(self):
        """Return the public fields; the password hash never leaves the server."""
        return {
            "id": self.id,
            "username": self.username,
            "source": self.source,
            "created_at": iso(self.created_at),
            "last_login_at": iso(self.last_login_at),
            "is_active": bool(self.is_active),
        }


def history_changed(client_ids):
    """Return the UPDATE that marks these clients' histories as changed.

    ``client_ids`` is a list of ids or a SELECT of them; run it in the transaction
    that changes their ratings or clears their views.
    """
    return (
        update(Client)
        .where(Client.id.in_(client_ids))
        .values(history_version=func.coalesce(Client.history_version, 0) + 1)
        .execution_options(synchronize_session=False)
    )


class Admin(db.Model):
    __tablename__ = "admin"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)

    def to_dict(self):
        return {
            "id": self.id,
            "username": self.username,
            "created_at": iso(self.created_at),
            "last_login_at": iso(self.last_login_at),
        }


class Rating(db.Model):
    __tablename__ = "rating"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="ck_rating_range"),
        Index("ix_rating_movie", "movie_id"),
        Index("ix_rating_client_rated_at", "client_id", "rated_at"),
        MYSQL_TABLE_ARGS,
    )

    # One rating per client and film: the pair is the key.
    client_id: Mapped[int] = mapped_column(
        ForeignKey("client.id", ondelete="CASCADE"), primary_key=True
    )
    movie_id: Mapped[int] = mapped_column(
        ForeignKey("movie.id", ondelete="CASCADE"), primary_key=True
    )
    rating: Mapped[int] = mapped_column(SmallInteger)
    rated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    client: Mapped[Client] = relationship(back_populates="ratings")
    movie: Mapped[Movie] = relationship(back_populates="ratings")

    def to_dict(self):
        return {
            "client_id": self.client_id,
            "movie_id": self.movie_id,
            "rating": self.rating,
            "rated_at": iso(self.rated_at),
        }


class Footprint(db.Model):
    __tablename__ = "footprint"
    __table_args__ = (
        Index("ix_footprint_client_viewed", "client_id", "viewed_at"),
        # The latest view of a client (the home page's history fingerprint) is one
        # index probe, however many views the client has.
        Index("ix_footprint_client_id", "client_id", "id"),
        Index("ix_footprint_movie", "movie_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    movie_id: Mapped[int] = mapped_column(ForeignKey("movie.id", ondelete="CASCADE"))
    viewed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    client: Mapped[Client] = relationship(back_populates="footprints")
    movie: Mapped[Movie] = relationship(back_populates="footprints")

    def to_dict(self):
        return {
            "id": self.id,
            "movie_id": self.movie_id,
            "viewed_at": iso(self.viewed_at),
        }


# What write_footprints checks buffered views against, locked (after the films).
_FOOTPRINT_ACCOUNTS = (
    select(Client.id, Client.created_at, Client.views_cleared)
    .where(Client.id.in_(bindparam("client_ids", expanding=True)))
    .order_by(Client.id)
    .with_for_update(read=True)
)
