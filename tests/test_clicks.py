"""Film clicks counted in the process and written in batches (models.ClickBuffer).

The rest of the suite runs with CLICK_FLUSH_SECONDS=0 (each view writes its click);
production's default batches them. tests/test_scale_out.py covers real gunicorn
processes: each writes within its interval, and a stopping one writes the rest.
"""

import os
import time

import pytest
from api_data import ADMIN_PASSWORD, ADMIN_USERNAME, count_rows, seed
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from test_movies import StatementCounter
from werkzeug.test import Client

import models
from config import ConfigError, load_settings
from models import ClickBuffer, Footprint, Movie, db

pytestmark = pytest.mark.usefixtures("json_secret_scan")


@pytest.fixture
def buffered(app):
    """The seeded app with a click buffer whose writer waits an hour."""
    seed(app)
    buffer = app.extensions["clicks"] = ClickBuffer(app, 3600)
    yield app, buffer
    buffer.flush()  # into this test's database, before it is dropped


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
    # The footprint is written with the view; the clicks wait for the batch.
    assert count_rows(app, Footprint, client_id=user["id"]) == 2
    assert stored_clicks(app, 4, 5) == {4: 0, 5: 0}
    assert (buffer.unwritten(4), buffer.unwritten(5)) == (3, 1)

    assert buffer.flush() == 2

    assert stored_clicks(app, 4, 5) == {4: 3, 5: 1}
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

    assert [sql.split()[0] for sql in for_visitor.statements] == ["SELECT"]
    # The footprint, returning the film's counts and the client's rating.
    assert [sql.split()[0] for sql in for_client.statements] == ["INSERT"]
    assert (for_visitor.round_trips, for_client.round_trips) == (1, 1)


def test_a_failed_write_keeps_the_clicks_for_the_next(buffered, monkeypatch):
    app, buffer = buffered
    http = app.test_client()
    shown_clicks(http, 6)
    shown_clicks(http, 7)
    real_write = models.write_clicks

    def lost_database(clicks):
        raise OperationalError("UPDATE movie", {}, Exception("server has gone away"))

    monkeypatch.setattr(models, "write_clicks", lost_database)
    with pytest.raises(OperationalError):
        buffer.flush()
    assert shown_clicks(http, 6) == 2  # counted while the database was away
    monkeypatch.setattr(models, "write_clicks", real_write)

    assert buffer.flush() == 2
    assert stored_clicks(app, 6, 7) == {6: 2, 7: 1}


def test_the_writer_writes_each_interval_and_rests_when_idle(app):
    seed(app)
    buffer = app.extensions["clicks"] = ClickBuffer(app, 0.05)
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
