"""Film clicks counted in the process and written in batches (models.ViewBuffer).

The rest of the suite runs with CLICK_FLUSH_SECONDS=0 (each view writes its click);
production's default batches them. tests/test_scale_out.py covers real gunicorn
processes: each writes within its interval, and a stopping one writes the rest.
"""

import os
import threading
import time

import pytest
from api_data import ADMIN_PASSWORD, ADMIN_USERNAME, count_rows, seed
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from test_movies import StatementCounter
from werkzeug.test import Client

import models
from config import ConfigError, load_settings
from models import Client as Account
from models import Footprint, Movie, ViewBuffer, db

pytestmark = pytest.mark.usefixtures("json_secret_scan")


@pytest.fixture
def buffered(app):
    """The seeded app with a click buffer whose writer waits an hour."""
    seed(app)
    buffer = app.extensions["views"] = ViewBuffer(app, 3600)
    yield app, buffer
    buffer.close()  # into this test's database, before it is dropped


def stored_clicks(app, *movie_ids):
    with app.app_context():
        rows = db.session.execute(
            select(Movie.id, Movie.click_count).where(Movie.id.in_(movie_ids))
        )
        return dict(rows.all())


def shown_clicks(http, movie_id):
    response = http.get(f"/api/movies/detail/{movie_id}")
    assert response.status_code == 200
    return response.get_json()["click_count"]


def test_clicks_show_at_once_and_reach_the_database_in_one_batch(buffered, auth):
    app, buffer = buffered
    visitor, client = app.test_client(), app.test_client()
    user = auth.register_and_login(client)

    assert [shown_clicks(visitor, 4), shown_clicks(visitor, 4)] == [1, 2]
    assert shown_clicks(client, 4) == 3
    assert shown_clicks(client, 5) == 1
    # HEAD counts nothing (a plain werkzeug client: the JSON scan wants a body).
    assert Client(app).head("/api/movies/detail/4").status_code == 200
    # The clicks and the footprints wait for the batch.
    assert count_rows(app, Footprint, client_id=user["id"]) == 0
    assert stored_clicks(app, 4, 5) == {4: 0, 5: 0}
    assert (buffer.unwritten(4), buffer.unwritten(5)) == (3, 1)

    assert buffer.flush() == 2

    assert stored_clicks(app, 4, 5) == {4: 3, 5: 1}
    assert count_rows(app, Footprint, client_id=user["id"]) == 2
    assert buffer.unwritten(4) == 0
    assert buffer.flush() == 0
    assert shown_clicks(visitor, 4) == 4


def test_a_film_page_writes_no_click_of_its_own(buffered, auth):
    app, _ = buffered
    visitor, client = app.test_client(), app.test_client()
    auth.register_and_login(client)
    shown_clicks(client, 2)  # the session check is read once per worker

    with StatementCounter() as for_visitor:
        shown_clicks(visitor, 2)
    with StatementCounter() as for_client:
        assert shown_clicks(client, 2) == 3

    # The film's live counts (and the client's rating and session check): the
    # click and the footprint wait in the buffer.
    assert [sql.split()[0] for sql in for_visitor.statements] == ["SELECT"]
    assert [sql.split()[0] for sql in for_client.statements] == ["SELECT"]
    assert (for_visitor.round_trips, for_client.round_trips) == (1, 1)


def fail_writes(monkeypatch, name):
    """Make ``models.<name>`` fail as with the database gone; return the real one."""
    real_write = getattr(models, name)

    def lost_database(batch):
        raise OperationalError(name, {}, Exception("server has gone away"))

    monkeypatch.setattr(models, name, lost_database)
    return real_write


def test_a_failed_write_keeps_the_clicks_for_the_next(buffered, monkeypatch):
    app, buffer = buffered
    http = app.test_client()
    shown_clicks(http, 6)
    shown_clicks(http, 7)
    real_write = fail_writes(monkeypatch, "write_clicks")
    with pytest.raises(OperationalError):
        buffer.flush()
    assert shown_clicks(http, 6) == 2  # counted while the database was away
    monkeypatch.setattr(models, "write_clicks", real_write)

    assert buffer.flush() == 2
    assert stored_clicks(app, 6, 7) == {6: 2, 7: 1}


def test_the_writer_writes_each_interval_and_rests_when_idle(app):
    seed(app)
    buffer = app.extensions["views"] = ViewBuffer(app, 0.05)
    http = app.test_client()
    for _ in range(3):
        shown_clicks(http, 3)

    deadline = time.monotonic() + 10
    while stored_clicks(app, 3)[3] != 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored_clicks(app, 3) == {3: 3}
    while buffer._writer is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert buffer._writer is None  # no thread left behind between busy spells

    assert shown_clicks(http, 3) == 4  # a new click starts a writer again
    while stored_clicks(app, 3)[3] != 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored_clicks(app, 3) == {3: 4}
    buffer.close()


def test_clicks_on_a_film_deleted_since_are_dropped(buffered, auth, monkeypatch):
    app, buffer = buffered
    monkeypatch.setattr(models, "CLICKS_PER_STATEMENT", 2)  # three statements
    http = app.test_client()
    for movie_id in (1, 2, 3, 5, 6):
        shown_clicks(http, movie_id)
    admin = app.test_client()
    auth.login(admin, ADMIN_USERNAME, ADMIN_PASSWORD, role="admin")
    assert admin.delete("/api/admin/movies/3").status_code == 200

    assert buffer.flush() == 5

    assert stored_clicks(app, 1, 2, 3, 5, 6) == {1: 1, 2: 1, 5: 1, 6: 1}


def test_admin_stats_count_this_processs_unwritten_clicks(buffered, auth):
    app, buffer = buffered
    http = app.test_client()
    for movie_id in (1, 1, 8):
        shown_clicks(http, movie_id)
    admin = app.test_client()
    auth.login(admin, ADMIN_USERNAME, ADMIN_PASSWORD, role="admin")

    body = admin.get("/api/admin/stats").get_json()

    assert body["total_clicks"] == 3
    assert buffer.unwritten(1) == 0
    assert stored_clicks(app, 1, 8) == {1: 2, 8: 1}


def test_a_forked_child_starts_without_its_parents_clicks(buffered):
    app, buffer = buffered
    shown_clicks(app.test_client(), 9)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it would write, then leave at once
        os.write(write_end, str(buffer.unwritten(9)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 16) == b"0"
    os.close(read_end)
    assert buffer.unwritten(9) == 1  # the parent still writes its own


def test_click_batches_are_configured_from_the_environment():
    assert load_settings({}, load_dotenv_file=False)["CLICK_FLUSH_SECONDS"] == 1.0
    every_view = load_settings({"CLICK_FLUSH_SECONDS": "0"}, load_dotenv_file=False)
    assert every_view["CLICK_FLUSH_SECONDS"] == 0
    with pytest.raises(ConfigError, match="CLICK_FLUSH_SECONDS"):
        load_settings({"CLICK_FLUSH_SECONDS": "-1"}, load_dotenv_file=False)
    with pytest.raises(ConfigError, match="CLICK_FLUSH_SECONDS"):
        load_settings({"CLICK_FLUSH_SECONDS": "soon"}, load_dotenv_file=False)


def _block_writes(monkeypatch, fail_first=False):
    """Make write_clicks wait until released; return (entered, release).

    With ``fail_first``, the first write then fails (the server gone for a moment).
    """
    real_write = models.write_clicks
    entered, release = threading.Event(), threading.Event()
    calls = []

    def slow_write(clicks):
        calls.append(dict(clicks))
        entered.set()
        assert release.wait(10)
        if fail_first and len(calls) == 1:
            raise OperationalError("UPDATE movie", {}, Exception("gone away"))
        real_write(clicks)

    monkeypatch.setattr(models, "write_clicks", slow_write)
    return entered, release


def _flush_in_background(buffer):
    errors = []

    def run():
        try:
            buffer.flush()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


# A write in flight -------------------------------------------------------------


def test_flush_returns_only_once_clicks_taken_by_a_write_in_flight_are_written(
    buffered, monkeypatch
):
    # The writer thread has taken the clicks and is writing them: a flush at exit
    # (worker_exit, atexit) waits for that write, or the daemon thread could be
    # stopped mid-transaction with the clicks in it.
    app, buffer = buffered
    http = app.test_client()
    for _ in range(3):
        shown_clicks(http, 4)
    entered, release = _block_writes(monkeypatch)
    writer, errors = _flush_in_background(buffer)  # the interval's write
    assert entered.wait(5)

    # The exit flush, while the interval's write is in flight.
    done = threading.Thread(target=models.flush_views)
    done.start()
    done.join(0.5)
    exit_flush_returned_early = not done.is_alive()
    release.set()
    writer.join(10)
    done.join(10)
    assert not errors
    assert not exit_flush_returned_early, (
        "flush_views() returned while 3 clicks were still being written"
    )


def test_admin_stats_count_clicks_being_written_by_the_writer(
    buffered, auth, monkeypatch
):
    app, buffer = buffered
    http = app.test_client()
    for _ in range(3):
        shown_clicks(http, 4)
    entered, release = _block_writes(monkeypatch)
    writer, errors = _flush_in_background(buffer)
    assert entered.wait(5)
    admin = app.test_client()
    auth.login(admin, ADMIN_USERNAME, ADMIN_PASSWORD, role="admin")
    # The in-flight write ends shortly after stats started: their flush waits.
    threading.Timer(0.5, release.set).start()

    body = admin.get("/api/admin/stats").get_json()

    writer.join(10)
    assert not errors
    assert body["total_clicks"] == 3


def test_a_page_shown_during_a_write_does_not_lose_the_clicks_being_written(
    buffered, monkeypatch
):
    app, buffer = buffered
    http = app.test_client()
    assert [shown_clicks(http, 4) for _ in range(3)] == [1, 2, 3]
    entered, release = _block_writes(monkeypatch)
    writer, errors = _flush_in_background(buffer)
    assert entered.wait(5)
    try:
        shown = shown_clicks(http, 4)  # 3 stored-or-pending + this one
    finally:
        release.set()
        writer.join(10)
    assert not errors
    assert shown == 4  # not 1: the clicks being written still count


# Client pages with batched clicks -------------------------------------------------


def test_buffered_client_pages_survive_password_change_and_disabling(
    buffered, auth, returning
):
    app, buffer = buffered
    browser = app.test_client()
    user = auth.register_and_login(browser, auth.unique_username(), "first-pass-1")
    browser.put("/api/movies/4/rating", json={"rating": 2})
    assert browser.get("/api/movies/detail/4").get_json()["click_count"] == 1  # first
    body = browser.get("/api/movies/detail/4").get_json()  # the hash is known
    assert (body["click_count"], body["my_rating"]) == (2, 2)
    other = app.test_client()
    auth.login(other, user["username"], "first-pass-1")
    changed = other.put(
        "/api/auth/password",
        json={"old_password": "first-pass-1", "new_password": "second-pass-2"},
    )
    assert changed.status_code == 200

    body = browser.get("/api/movies/detail/4").get_json()
    assert (body["click_count"], body["my_rating"]) == (3, None)
    # Views made before the change still count; the refused session's does not.
    buffer.flush()
    assert count_rows(app, Footprint, client_id=user["id"]) == 2
    body = other.get("/api/movies/detail/4").get_json()
    assert (body["click_count"], body["my_rating"]) == (4, 2)
    body = other.get("/api/movies/detail/4").get_json()
    assert (body["click_count"], body["my_rating"]) == (5, 2)
    buffer.flush()
    assert count_rows(app, Footprint, client_id=user["id"]) == 4

    with app.app_context():
        db.session.get(Account, user["id"]).is_active = False
        db.session.commit()
    body = other.get("/api/movies/detail/4").get_json()
    assert (body["click_count"], body["my_rating"]) == (6, None)
    # HEAD counts nothing for anyone.
    assert Client(app).head("/api/movies/detail/4").status_code == 200
    assert buffer.unwritten(4) == 1
    buffer.flush()
    assert count_rows(app, Footprint, client_id=user["id"]) == 4
    assert stored_clicks(app, 4) == {4: 6}


def test_buffered_pages_of_a_deleted_film_are_404_and_count_nothing(
    buffered, auth, returning
):
    app, buffer = buffered
    browser = app.test_client()
    auth.register_and_login(browser)
    browser.get("/api/movies/detail/3")
    browser.get("/api/movies/detail/3")
    admin = app.test_client()
    auth.login(admin, ADMIN_USERNAME, ADMIN_PASSWORD, role="admin")
    assert admin.delete("/api/admin/movies/3").status_code == 200
    for http in (browser, app.test_client()):
        response = http.get("/api/movies/detail/3")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "movie_not_found"
    assert buffer.unwritten(3) == 2
    assert buffer.flush() == 1  # skipped in the database


def test_huge_film_ids_are_a_json_404(buffered):
    app, _ = buffered
    for method in ("get", "head"):
        response = getattr(Client(app), method)(
            "/api/movies/detail/99999999999999999999999"
        )
        assert response.status_code == 404, method


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_click_flush_seconds_must_be_a_finite_number(value):
    # time.sleep(nan) raises, and the writer would die on its first sleep.
    with pytest.raises(ConfigError, match="CLICK_FLUSH_SECONDS"):
        load_settings({"CLICK_FLUSH_SECONDS": value}, load_dotenv_file=False)


def test_clicks_of_a_write_failing_while_the_exit_flush_runs_are_not_lost(
    buffered, monkeypatch
):
    # The interval's write is in flight as the worker stops and fails (the server
    # gone for a moment): the exit's flush waits for it, then writes them.
    app, buffer = buffered
    http = app.test_client()
    for _ in range(3):
        shown_clicks(http, 5)
    entered, release = _block_writes(monkeypatch, fail_first=True)
    writer, errors = _flush_in_background(buffer)
    assert entered.wait(5)
    threading.Timer(0.3, release.set).start()

    models.flush_views()  # worker_exit / atexit

    writer.join(10)
    assert len(errors) == 1
    assert stored_clicks(app, 5) == {5: 3}


# Client footprints in the buffer --------------------------------------------------


def history_ids(http):
    response = http.get("/api/me/history")
    assert response.status_code == 200
    return [item["movie"]["id"] for item in response.get_json()["items"]]


def footprints_of(app, client_id):
    with app.app_context():
        rows = db.session.execute(
            select(Footprint.movie_id)
            .where(Footprint.client_id == client_id)
            .order_by(Footprint.id)
        )
        return list(rows.scalars())


def test_a_history_shows_this_processs_buffered_views_at_once_in_order(buffered, auth):
    app, buffer = buffered
    browser = app.test_client()
    user = auth.register_and_login(browser)
    for movie_id in (7, 3, 9, 3):
        shown_clicks(browser, movie_id)
    assert footprints_of(app, user["id"]) == []

    assert history_ids(browser) == [3, 9, 7]  # the history wrote them first

    assert footprints_of(app, user["id"]) == [7, 3, 9, 3]  # in the order made
    assert stored_clicks(app, 3, 7, 9) == {3: 2, 7: 1, 9: 1}
    assert buffer.unwritten(3) == 0


def test_views_buffered_before_a_clear_in_another_process_are_not_written(
    buffered, auth
):
    app, buffer = buffered
    browser = app.test_client()
    user = auth.register_and_login(browser)
    shown_clicks(browser, 2)
    buffer.flush()
    shown_clicks(browser, 5)  # waits in this "process"'s buffer
    # Another process clears the views (its own buffer is empty).
    other_process = ViewBuffer(app, 3600)
    app.extensions["views"] = other_process
    cleared = browser.delete("/api/me/history")
    assert (cleared.status_code, cleared.get_json()["deleted"]) == (200, 1)
    app.extensions["views"] = buffer

    buffer.flush()
    assert footprints_of(app, user["id"]) == []
    shown_clicks(browser, 6)  # a view after the clear counts
    assert history_ids(browser) == [6]
    assert stored_clicks(app, 2, 5, 6) == {2: 1, 5: 1, 6: 1}
    other_process.close()


def test_views_of_deleted_films_and_accounts_are_dropped(buffered, auth):
    app, buffer = buffered
    stays, goes = app.test_client(), app.test_client()
    kept = auth.register_and_login(stays)
    gone = auth.register_and_login(goes)
    for movie_id in (1, 3, 4):
        shown_clicks(stays, movie_id)
        shown_clicks(goes, movie_id)
    admin = app.test_client()
    auth.login(admin, ADMIN_USERNAME, ADMIN_PASSWORD, role="admin")
    assert admin.delete("/api/admin/movies/3").status_code == 200
    assert admin.delete(f"/api/admin/clients/{gone['id']}").status_code == 200
    # A view whose account was replaced by a new one with its id (SQLite may
    # reuse the id of the latest account deleted): another creation time.
    with app.app_context():
        created_at = db.session.get(Account, kept["id"]).created_at
    buffer.add_footprint(
        models.pending_footprint(
            kept["id"], 4, models.utcnow(), created_at.replace(year=2001), 0
        )
    )

    assert buffer.flush() == 3

    assert footprints_of(app, kept["id"]) == [1, 4]
    assert footprints_of(app, gone["id"]) == []


def test_a_failed_write_keeps_the_footprints_for_the_next(buffered, auth, monkeypatch):
    app, buffer = buffered
    browser = app.test_client()
    user = auth.register_and_login(browser)
    shown_clicks(browser, 8)
    real_write = fail_writes(monkeypatch, "write_footprints")
    with pytest.raises(OperationalError):
        buffer.flush()
    assert stored_clicks(app, 8) == {8: 1}  # the clicks did not wait for them
    shown_clicks(browser, 9)  # made while the footprints could not be written
    monkeypatch.setattr(models, "write_footprints", real_write)

    assert buffer.flush() == 1
    assert footprints_of(app, user["id"]) == [8, 9]
    assert stored_clicks(app, 8, 9) == {8: 1, 9: 1}


def test_a_clear_during_a_batch_leaves_none_of_the_views_made_before_it(buffered, auth):
    app, buffer = buffered
    browser = app.test_client()
    user = auth.register_and_login(browser)
    with app.app_context():
        created_at = db.session.get(Account, user["id"]).created_at
    other_process = ViewBuffer(app, 3600)
    clear = {}

    def clear_elsewhere():
        # Another process (its buffer empty) clears the views.
        app.extensions["views"] = other_process
        clear["response"] = browser.delete("/api/me/history")

    class ClearsWhenChecked:
        """The view's account creation time: comparing it, while the batch has
        read the accounts and not yet inserted, starts the clear."""

        def __eq__(self, other):
            if not clear:
                clear["thread"] = threading.Thread(target=clear_elsewhere)
                clear["thread"].start()
                time.sleep(0.3)  # the clear reaches the database meanwhile
            return other == created_at

        __hash__ = None

    shown_clicks(browser, 4)
    buffer.add_footprint(
        models.pending_footprint(user["id"], 5, models.utcnow(), ClearsWhenChecked(), 0)
    )
    buffer.flush()  # the clear waits for the batch, then deletes its views
    clear["thread"].join(30)
    app.extensions["views"] = buffer
    other_process.close()

    assert clear["response"].status_code == 200
    assert clear["response"].get_json()["deleted"] == 2
    assert footprints_of(app, user["id"]) == []


def test_a_history_lists_views_by_time_whichever_process_wrote_them_first(
    buffered, auth
):
    app, first_worker = buffered
    browser = app.test_client()
    user = auth.register_and_login(browser)
    with app.app_context():
        created_at = db.session.get(Account, user["id"]).created_at
    earlier = models.utcnow()
    later = earlier.replace(year=earlier.year + 1)
    second_worker = ViewBuffer(app, 3600)
    first_worker.add_footprint(
        models.pending_footprint(user["id"], 7, earlier, created_at, 0)
    )
    second_worker.add_footprint(
        models.pending_footprint(user["id"], 3, later, created_at, 0)
    )
    second_worker.close()  # its interval came first: the later view has the lower id

    assert history_ids(browser) == [3, 7]
    assert footprints_of(app, user["id"]) == [3, 7]


def test_a_batch_of_views_waits_for_a_rating_instead_of_deadlocking(
    buffered, auth, backend
):
    app, buffer = buffered
    if backend != "mysql":  # SQLite has one writer at a time: no row locks
        assert buffer.flush() == 0
        return
    rater, viewer = app.test_client(), app.test_client()
    rater_user = auth.register_and_login(rater)
    auth.register_and_login(viewer)
    shown_clicks(rater, 5)  # the batch locks the rater's account
    shown_clicks(viewer, 3)  # and film 3, which is being rated
    with app.app_context():
        engine = db.engine
    outcome = {}
    with engine.connect() as rating:
        transaction = rating.begin()
        rating.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 10")
        # A rating change's locks, in its order: the film, then the account.
        rating.exec_driver_sql("SELECT id FROM movie WHERE id = 3 FOR UPDATE").all()

        def flush():
            try:
                outcome["flush"] = buffer.flush()
            except Exception as exc:
                outcome["flush"] = repr(exc)

        writer = threading.Thread(target=flush)
        writer.start()
        time.sleep(0.5)  # the batch waits for film 3, holding no account yet
        rating.exec_driver_sql(
            "UPDATE client SET history_version = COALESCE(history_version, 0) + 1"
            f" WHERE id = {int(rater_user['id'])}"
        )
        transaction.commit()
        writer.join(20)

    assert outcome == {"flush": 2}
    assert footprints_of(app, rater_user["id"]) == [5]
