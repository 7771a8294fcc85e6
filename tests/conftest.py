"""Shared fixtures: the app on each database backend, clients and the real data.

Every test that takes ``backend`` (directly or through ``app``, ``db_url``,
``ml_app`` ...) runs once on SQLite and once on MariaDB. The MariaDB URL comes from
``TEST_MYSQL_URL``; its database is created when missing. Without a reachable
server the MariaDB half is skipped with a plain message, except under ``CI=true``,
where that is a failure.

The real MovieLens files are read from ``SHARED_DATA_DIR`` (default
``../shared/data`` beside the checkout).
"""

import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from config import testing_settings  # noqa: E402
from models import db, dispose_engines  # noqa: E402

SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))
ML100K_DIR = SHARED_DATA / "ml-100k"
DETAILS_CSV = SHARED_DATA / "ml-100k-details.csv"
POSTERS_CSV = SHARED_DATA / "movielens-posters" / "movie_poster.csv"
TEST_MYSQL_URL = os.environ.get(
    "TEST_MYSQL_URL",
    "mysql+pymysql://root@127.0.0.1:3306/moviedb_test?charset=utf8mb4",
)
ADMIN_PASSWORD = "admin-pass-2026"
IN_CI = os.environ.get("CI", "").lower() == "true"

_mysql_state = {}


def mysql_url(database_suffix=""):
    """Return the MariaDB test URL, with ``database_suffix`` added to its database."""
    url = make_url(TEST_MYSQL_URL)
    return url.set(database=url.database + database_suffix).render_as_string(
        hide_password=False
    )


def ensure_mysql_database(url):
    """Create the database of ``url`` when missing; return an error text or None."""
    url = make_url(url)
    if url.database in _mysql_state:
        return _mysql_state[url.database]
    engine = create_engine(url.set(database=""), pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    f"CREATE DATABASE IF NOT EXISTS `{url.database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
        error = None
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    _mysql_state[url.database] = error
    return error


def require_mysql(url):
    error = ensure_mysql_database(url)
    if error is None:
        return
    message = f"MariaDB not reachable at {make_url(url).host}:{make_url(url).port}"
    if IN_CI:
        pytest.fail(f"{message} ({error}); CI=true requires the MariaDB half")
    _mysql_state.setdefault("skipped", 0)
    _mysql_state["skipped"] += 1
    pytest.skip(f"{message}: MariaDB half skipped")


def pytest_terminal_summary(terminalreporter):
    skipped = _mysql_state.get("skipped")
    if skipped:
        terminalreporter.write_line(
            f"NOTE: {skipped} MariaDB test(s) SKIPPED: no server at "
            f"{make_url(TEST_MYSQL_URL).host}:{make_url(TEST_MYSQL_URL).port}. "
            "Only the SQLite half ran. Start MariaDB or set TEST_MYSQL_URL.",
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session", params=["sqlite", "mysql"])
def backend(request):
    """The database backend under test: every database test runs on both."""
    if request.param == "mysql":
        require_mysql(mysql_url())
    return request.param


@pytest.fixture
def db_url(backend, tmp_path):
    """An empty database for one test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return mysql_url()


def make_app(database_url, **overrides):
    settings = testing_settings(
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(database_url),
        **overrides,
    )
    return create_app(settings)


def _engine_options(database_url):
    from config import engine_options

    return engine_options(database_url)


@pytest.fixture
def app(db_url, tmp_path):
    """The app on a fresh, empty schema (tables created per test)."""
    application = make_app(
        db_url,
        MODEL_PATH=str(tmp_path / "model.joblib"),
        POSTER_DIR=str(tmp_path / "posters"),
    )
    with application.app_context():
        db.drop_all()
        db.create_all()
    yield application
    with application.app_context():
        db.session.remove()
        db.drop_all()
        dispose_engines()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def ml_db_url(backend, tmp_path_factory):
    """A database holding the real MovieLens 100k import, made once per backend.

    Tests that write to it must assert changes relative to what they read first,
    since other tests share it.
    """
    from init_dataset import import_dataset

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ml') / 'movies.db'}"
    else:
        url = mysql_url("_ml")
        require_mysql(url)
    import_dataset(
        url,
        ML100K_DIR,
        DETAILS_CSV,
        reset=True,
        admin_username="root",
        admin_password=ADMIN_PASSWORD,
        progress=False,
    )
    return url


@pytest.fixture(scope="session")
def ml_app(ml_db_url, tmp_path_factory):
    """The app on the imported MovieLens database (shared by many tests)."""
    tmp = tmp_path_factory.mktemp("ml_app")
    application = make_app(
        ml_db_url,
        MODEL_PATH=str(tmp / "model.joblib"),
        POSTER_DIR=str(tmp / "posters"),
    )
    yield application
    with application.app_context():
        db.session.remove()
        dispose_engines()


@pytest.fixture
def ml_client(ml_app):
    return ml_app.test_client()


class AuthActions:
    """Register and log in through the API; remembers every password it used."""

    PASSWORD = "secret-pass-123"

    def __init__(self):
        self.passwords = {ADMIN_PASSWORD, self.PASSWORD}
        self._serial = 0

    def unique_username(self, prefix="user"):
        self._serial += 1
        return f"{prefix}_{os.getpid()}_{self._serial}_{os.urandom(3).hex()}"

    def register(self, client, username, password=PASSWORD):
        self.passwords.add(password)
        return client.post(
            "/api/auth/register", json={"username": username, "password": password}
        )

    def login(self, client, username, password=PASSWORD, role="client"):
        self.passwords.add(password)
        return client.post(
            "/api/auth/login",
            json={"username": username, "password": password, "role": role},
        )

    def register_and_login(self, client, username=None, password=PASSWORD):
        """Create a client and log in as it; return its user JSON."""
        username = username or self.unique_username()
        response = self.register(client, username, password)
        assert response.status_code == 201, response.get_json()
        response = self.login(client, username, password)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["user"]

    def login_admin(self, client, username="root", password=ADMIN_PASSWORD):
        """Log in as the admin the import creates (``ml_*`` fixtures)."""
        response = self.login(client, username, password, role="admin")
        assert response.status_code == 200, response.get_json()
        return response.get_json()["user"]

    def logout(self, client):
        return client.post("/api/auth/logout")


@pytest.fixture
def auth():
    return AuthActions()


HASH_MARKERS = ("pbkdf2:", "scrypt:", "$2b$", "$argon2", "password_hash")


@pytest.fixture
def json_secret_scan(monkeypatch, auth):
    """Fail the test if any JSON response carried a known password or a hash.

    Every request made through a Flask test client is recorded; passwords are those
    the ``auth`` helper used plus every ``*password*`` field sent in a request body.
    Only ``temporary_password``, the admin reset's one-time answer, may carry one.
    """
    from flask.testing import FlaskClient

    original_open = FlaskClient.open
    sent, received = set(), []

    def recording_open(self, *args, **kwargs):
        body = kwargs.get("json")
        if isinstance(body, dict):
            sent.update(
                value
                for key, value in body.items()
                if "password" in key and isinstance(value, str)
            )
        response = original_open(self, *args, **kwargs)
        if response.is_json:
            received.append(response.get_json())
        return response

    monkeypatch.setattr(FlaskClient, "open", recording_open)
    yield received
    secrets_ = {value for value in sent | auth.passwords if len(value) >= 6}
    for body in received:
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "temporary_password"}
        text_ = json.dumps(body, ensure_ascii=False)
        for secret in secrets_:
            assert secret not in text_, "a password appeared in a JSON response"
        for marker in HASH_MARKERS:
            assert marker not in text_, f"{marker!r} appeared in a JSON response"


@pytest.fixture(params=["returning", "no-returning"])
def returning(request, monkeypatch):
    """Film pages with INSERT ... RETURNING (MariaDB, SQLite) and without (MySQL)."""
    if request.param == "no-returning":
        monkeypatch.setattr("api.movies.insert_returning", lambda: False)
    return request.param == "returning"
