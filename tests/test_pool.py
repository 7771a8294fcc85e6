"""MariaDB connection pools: ping only idle connections, roll back only open work,
and run the hot one-statement reads in autocommit.

Each ping or rollback skipped is a round trip saved on a request (models.py); these
tests show that skipping them loses neither liveness nor isolation.
"""

import pymysql
import pytest
from api_data import seed
from conftest import make_app, mysql_url, require_mysql
from sqlalchemy.engine import make_url

import models
from models import db, dispose_engines


@pytest.fixture
def pool_app(tmp_path):
    url = mysql_url("_pool")
    require_mysql(url)
    app = make_app(url, MODEL_PATH=str(tmp_path / "model.joblib"))
    with app.app_context():
        db.drop_all()
        db.create_all()
    seed(app)
    yield app
    with app.app_context():
        db.session.remove()
        dispose_engines()  # some pooled connections were killed on purpose
        db.drop_all()
        dispose_engines()


def direct_connection(app):
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
        autocommit=True,
    )


def app_connection_ids(app):
    """The server's ids of every connection open on the app's database."""
    database = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    with direct_connection(app) as admin, admin.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM information_schema.processlist"
            " WHERE db = %s AND id <> CONNECTION_ID()",
            (database,),
        )
        return {row[0] for row in cursor.fetchall()}


def kill(app, connection_ids):
    with direct_connection(app) as admin, admin.cursor() as cursor:
        for connection_id in connection_ids:
            cursor.execute(f"KILL CONNECTION {int(connection_id)}")


@pytest.fixture
def count_rollbacks(monkeypatch):
    calls = []
    original = pymysql.connections.Connection.rollback

    def rollback(self):
        calls.append(self.thread_id())
        return original(self)

    monkeypatch.setattr(pymysql.connections.Connection, "rollback", rollback)
    return calls


def test_a_connection_killed_while_idle_is_replaced_before_use(pool_app, monkeypatch):
    client = pool_app.test_client()
    assert client.get("/api/movies/detail/1").status_code == 200
    first = app_connection_ids(pool_app)
    kill(pool_app, first)
    # As if they had sat in the pool for longer than PING_AFTER_IDLE.
    monkeypatch.setattr(models, "PING_AFTER_IDLE", -1.0)

    response = client.get("/api/movies/detail/1")

    assert response.status_code == 200
    assert response.get_json()["title"] == "Star Wars (1977)"
    assert response.get_json()["click_count"] == 2
    assert first and not first & app_connection_ids(pool_app)


def test_a_connection_killed_just_after_use_fails_one_request_cleanly(pool_app):
    client = pool_app.test_client()
    assert client.get("/api/movies/detail/1").status_code == 200
    kill(pool_app, app_connection_ids(pool_app))

    failed = client.get("/api/movies/detail/1")
    recovered = client.get("/api/movies/detail/1")

    assert failed.status_code == 503
    assert failed.get_json()["error"]["code"] == "database_unavailable"
    assert recovered.status_code == 200
    assert recovered.get_json()["click_count"] == 2


def test_a_returned_connection_never_keeps_uncommitted_work(pool_app):
    with pool_app.app_context():
        raw = db.engine.raw_connection()
        with raw.cursor() as cursor:
            cursor.execute("UPDATE movie SET click_count = 100 WHERE id = 1")
        raw.close()  # back to the pool without a commit

    # Another connection can write the same row at once, and never saw the 100.
    with direct_connection(pool_app) as other, other.cursor() as cursor:
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 2")
        cursor.execute("UPDATE movie SET click_count = click_count + 1 WHERE id = 1")
        cursor.execute("SELECT click_count FROM movie WHERE id = 1")
        assert cursor.fetchone() == (1,)


def test_round_trips_spared_on_the_film_page(pool_app, auth, count_rollbacks):
    client = pool_app.test_client()
    auth.register_and_login(client)
    assert client.get("/api/movies/detail/1").status_code == 200
    count_rollbacks.clear()

    # A page that commits its view returns its connection with no rollback.
    assert client.get("/api/movies/detail/2").status_code == 200
    assert count_rollbacks == []
    # The first home page reads the history in a transaction, rolled back once.
    assert client.get("/api/movies/home").status_code == 200
    assert len(count_rollbacks) == 1
    # Served again from the cached recommendations, it runs one autocommit read
    # (session check and history fingerprint) and so has nothing to roll back.
    count_rollbacks.clear()
    assert client.get("/api/movies/home").status_code == 200
    assert count_rollbacks == []


def test_a_clients_film_page_is_one_round_trip(pool_app, auth):
    from test_movies import StatementCounter

    visitor = pool_app.test_client()
    for movie_id in (1, 2):  # the film cards cached, no view counted
        assert visitor.head(f"/api/movies/detail/{movie_id}").status_code == 200
    client = pool_app.test_client()
    auth.register_and_login(client)
    with StatementCounter() as first:
        assert client.get("/api/movies/detail/1").status_code == 200
    with StatementCounter() as counter:
        response = client.get("/api/movies/detail/2")

    # A session's first film page reads the session check, then counts the view.
    assert first.round_trips == 2
    assert response.status_code == 200
    assert response.get_json()["click_count"] == 1
    # Later ones send the click and the footprint (conditioned on the password
    # hash the session was accepted with, returning the film's counts) in one
    # transaction, one packet.
    assert counter.round_trips == 1
    assert [sql.split()[0] for sql in counter.statements] == ["UPDATE", "INSERT"]
    assert " RETURNING " in counter.statements[1]
    with direct_connection(pool_app) as other, other.cursor() as cursor:
        cursor.execute("SELECT click_count FROM movie WHERE id = 2")
        assert cursor.fetchone() == (1,)
        cursor.execute("SELECT COUNT(*) FROM footprint WHERE movie_id = 2")
        assert cursor.fetchone() == (1,)


def test_a_view_whose_footprint_fails_counts_no_click(pool_app, auth):
    client = pool_app.test_client()
    auth.register_and_login(client)
    assert client.get("/api/movies/detail/3").status_code == 200
    with direct_connection(pool_app) as other, other.cursor() as cursor:
        # The footprint insert now fails after the click's update ran.
        cursor.execute(
            "CREATE TRIGGER no_more_views BEFORE INSERT ON footprint FOR EACH ROW"
            " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no more views'"
        )
    try:
        response = client.get("/api/movies/detail/3")
    finally:
        with direct_connection(pool_app) as other, other.cursor() as cursor:
            cursor.execute("DROP TRIGGER no_more_views")

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "database_unavailable"
    with direct_connection(pool_app) as other, other.cursor() as cursor:
        cursor.execute("SELECT click_count FROM movie WHERE id = 3")
        assert cursor.fetchone() == (1,)  # the first view only: rolled back whole
    # The connection went back clean: the next view counts normally.
    assert client.get("/api/movies/detail/3").get_json()["click_count"] == 2
