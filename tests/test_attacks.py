"""Attacks on the API: injection, script in data, guards, sessions, floods, secrets.

Complements test_auth.py (session fixation by a planted key, login rate limits),
test_admin.py (every admin route: 401 logged out, 403 for a client) and
test_api_common.py (one oversized body, the cross-site check). Every test here also
scans what the app logged: no password and no password hash in any log line.
"""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from api_data import ADMIN_PASSWORD, ADMIN_USERNAME, FILMS, seeded_app
from conftest import HASH_MARKERS, ROOT, make_app
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import func, select

from api import limiter
from models import Movie, db, dispose_engines

pytestmark = pytest.mark.usefixtures("json_secret_scan", "log_secret_scan")

SQL_PROBES = [
    "' OR 1=1 --",
    "' OR '1'='1",
    '"; DROP TABLE movie; --',
    "1' UNION SELECT username FROM admin --",
    "\\",
    "%' AND 1=0 UNION SELECT 1 --",
]
SCRIPT_TITLE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
# Routes a visitor may call; every other route must answer 401 to a visitor.
PUBLIC_ENDPOINTS = {
    "api-docs.openapi_json",
    "api-docs.openapi_swagger_ui",
    "auth.register",
    "auth.login",
    "auth.logout",
    "movies.home",
    "movies.movie_detail",
    "movies.list_movies",
    "movies.list_tags",
    "chat.chat",
    "chat.chat_stream",
    "posters.get_poster",
    "health",
    "ping",
    "frontend",
}
# Routes for any logged-in account (client or admin); the rest is client- or
# admin-only.
ACCOUNT_ENDPOINTS = {"auth.me", "auth.change_password"}
APP_LOGGERS = ("api", "app", "recommender", "assistant", "werkzeug", "flask_limiter")


@pytest.fixture
def log_secret_scan(caplog, auth):
    """Fail the test if any log line of the app carried a password or a hash."""
    for name in APP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    secrets_ = {value for value in auth.passwords if len(value) >= 6}
    for record in caplog.records:
        line = record.getMessage() + (record.exc_text or "")
        for secret in secrets_:
            assert secret not in line, f"a password was logged: {record.name}"
        for marker in HASH_MARKERS[:4]:
            assert marker not in line, f"a password hash was logged: {record.name}"


@pytest.fixture(scope="module")
def attack_app(backend, tmp_path_factory):
    """The hand-made catalogue; tests add uniquely named rows and remove them."""
    app, teardown = seeded_app(backend, tmp_path_factory, "attacks")
    yield app
    teardown()


@pytest.fixture
def admin(attack_app, auth):
    client = attack_app.test_client()
    auth.login_admin(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    return client


def routes(app):
    """Every (endpoint, method, url) of the app, with 1 for each URL argument."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            arguments = {name: 1 for name in rule.arguments}
            if "path" in arguments:
                arguments["path"] = "index.html"
            found.append(
                (rule.endpoint, method, adapter.build(rule.endpoint, arguments))
            )
    return found


def film_count(app):
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Movie))
        db.session.remove()
        return count


# SQL metacharacters ----------------------------------------------------------------


@pytest.mark.parametrize("probe", SQL_PROBES)
def test_sql_metacharacters_in_search_are_plain_text(attack_app, admin, probe):
    visitor = attack_app.test_client()
    films = film_count(attack_app)
    tag = probe[:32]  # tags are at most 32 characters
    for query in ({"q": probe}, {"tag": tag}, {"q": probe, "sort": "title"}):
        response = visitor.get("/api/movies", query_string=query)
        assert response.status_code == 200
        assert response.get_json()["total"] == 0
    clients = admin.get("/api/admin/clients", query_string={"q": probe})
    assert clients.status_code == 200
    assert clients.get_json()["total"] == 0
    assert film_count(attack_app) == films


def test_like_wildcards_match_only_themselves(attack_app, admin):
    visitor = attack_app.test_client()
    # Film 11 is "Untitled 100% Film_": the only title with % or _ in it.
    for query in ("%", "_", "100%", "% Film_"):
        body = visitor.get("/api/movies", query_string={"q": query}).get_json()
        assert [item["id"] for item in body["items"]] == [11], query
    # The dataset clients are ml_user_1..4: "_" matches them, "%" matches nobody.
    found = admin.get("/api/admin/clients", query_string={"q": "%"}).get_json()
    assert found["total"] == 0
    found = admin.get("/api/admin/clients", query_string={"q": "user_"}).get_json()
    assert sorted(item["username"] for item in found["items"]) == [
        f"ml_user_{n}" for n in range(1, 5)
    ]


def test_sql_in_sort_or_numbers_is_a_validation_error(attack_app):
    visitor = attack_app.test_client()
    for query in (
        {"sort": "title; DROP TABLE movie"},
        {"year_from": "1990 OR 1=1"},
        {"page": "1; SELECT 1"},
        {"per_page": "10 UNION SELECT 1"},
    ):
        response = visitor.get("/api/movies", query_string=query)
        assert response.status_code == 422, query
        assert response.get_json()["error"]["code"] == "validation_error"
        assert set(response.get_json()["error"]["details"]) == set(query)


@pytest.mark.parametrize("probe", SQL_PROBES)
def test_sql_metacharacters_in_login_are_wrong_credentials(attack_app, auth, probe):
    for role in ("client", "admin"):
        response = auth.login(attack_app.test_client(), probe, probe + "xxxxxx", role)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_credentials"
    response = auth.login(
        attack_app.test_client(), f"{ADMIN_USERNAME}' --", "anything1", "admin"
    )
    assert response.status_code == 401


def test_sql_metacharacters_in_admin_fields_are_stored_verbatim(attack_app, admin):
    films = film_count(attack_app)
    fields = {
        "title": "Robert'); DROP TABLE movie;--",
        "director": 'O\'Brien "the" \\ director %_',
        "actors": "' OR 1=1 --, 张三",
        "summary": "1' UNION SELECT username FROM admin --",
        "tags": ["Drama' --"],
    }
    created = admin.post("/api/admin/movies", json=fields)
    assert created.status_code == 201, created.get_json()
    movie_id = created.get_json()["id"]
    try:
        detail = attack_app.test_client().get(f"/api/movies/detail/{movie_id}")
        body = detail.get_json()
        assert {key: body[key] for key in fields} == fields
        assert film_count(attack_app) == films + 1
        patched = admin.patch(
            f"/api/admin/movies/{movie_id}", json={"title": "x' WHERE 1=1; --"}
        )
        assert patched.status_code == 200
        with attack_app.app_context():
            titles = db.session.scalars(select(Movie.title)).all()
            db.session.remove()
        assert "x' WHERE 1=1; --" in titles
        assert {FILMS[1][0], FILMS[2][0]} <= set(titles)  # other rows untouched
    finally:
        assert admin.delete(f"/api/admin/movies/{movie_id}").status_code == 200
    assert film_count(attack_app) == films


# Script in data ------------------------------------------------------------------


def test_script_in_a_film_title_is_returned_as_a_json_string(attack_app, admin):
    created = admin.post("/api/admin/movies", json={"title": SCRIPT_TITLE})
    assert created.status_code == 201
    movie_id = created.get_json()["id"]
    try:
        visitor = attack_app.test_client()
        detail = visitor.get(f"/api/movies/detail/{movie_id}")
        assert detail.mimetype == "application/json"
        assert detail.headers["X-Content-Type-Options"] == "nosniff"
        assert json.loads(detail.data)["title"] == SCRIPT_TITLE
        found = visitor.get("/api/movies", query_string={"q": "<script>"})
        assert [item["title"] for item in found.get_json()["items"]] == [SCRIPT_TITLE]

        # The placeholder poster is SVG on this origin: the title must be escaped.
        poster = visitor.get(f"/posters/{movie_id}")
        assert poster.mimetype == "image/svg+xml"
        assert poster.headers["X-Content-Type-Options"] == "nosniff"
        svg = poster.get_data(as_text=True)
        assert "<script" not in svg and "<img" not in svg
        assert "&lt;script&gt;" in svg
    finally:
        admin.delete(f"/api/admin/movies/{movie_id}")


@pytest.mark.parametrize(
    "username", ["<script>alert(1)</script>", "<b>bob</b>", 'a" onmouseover="x']
)
def test_markup_in_usernames_is_refused(attack_app, auth, username):
    response = auth.register(attack_app.test_client(), username)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["details"]) == ["username"]


def test_the_web_page_never_renders_server_text_as_html():
    """Vue templates escape {{ }}; nothing may bypass that for server data."""
    source = ROOT / "frontend" / "src"
    files = [p for p in source.rglob("*") if p.suffix in {".vue", ".js", ".ts"}]
    assert len(files) >= 20
    forbidden = re.compile(
        r"v-html|innerHTML|outerHTML|insertAdjacentHTML|document\.write|"
        r"dangerouslyUseHTMLString|new Function|\beval\("
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []


# Guards on every route -------------------------------------------------------------


def test_a_visitor_gets_401_from_every_route_that_needs_a_login(attack_app):
    visitor = attack_app.test_client()
    guarded = [r for r in routes(attack_app) if r[0] not in PUBLIC_ENDPOINTS]
    assert len(guarded) >= 15
    for endpoint, method, url in guarded:
        response = visitor.open(
            url, method=method, json=None if method == "GET" else {}
        )
        assert response.status_code == 401, (endpoint, method, url)
        assert response.get_json()["error"]["code"] == "login_required"


def test_an_admin_gets_403_from_every_client_only_route(attack_app, admin):
    client_only = [
        r
        for r in routes(attack_app)
        if r[0] not in PUBLIC_ENDPOINTS | ACCOUNT_ENDPOINTS
        and not r[0].startswith("admin.")
    ]
    assert {endpoint for endpoint, _, _ in client_only} == {
        "movies.rate_movie",
        "movies.unrate_movie",
        "movies.my_ratings",
        "movies.my_history",
        "movies.clear_history",
    }
    for endpoint, method, url in client_only:
        body = {"rating": 3} if endpoint == "movies.rate_movie" else None
        response = admin.open(url, method=method, json=body)
        assert response.status_code == 403, (endpoint, method)
        assert response.get_json()["error"]["code"] == "client_only"


# Sessions ---------------------------------------------------------------------------


def sign_session(secret_key, data):
    """A session cookie as Flask would sign it with ``secret_key``."""
    forger = Flask("forger")
    forger.secret_key = secret_key
    return SecureCookieSessionInterface().get_signing_serializer(forger).dumps(data)


def test_forged_and_tampered_session_cookies_are_refused(attack_app, auth):
    member = attack_app.test_client()
    user = auth.register_and_login(member)
    genuine = member.get_cookie("session").value
    payload, rest = genuine.split(".", 1)
    flipped = ("A" if payload[-1] != "A" else "B") + payload[1:]
    forged = {
        "wrong key, admin": sign_session("not-the-key", {"admin_id": 1}),
        "wrong key, client": sign_session(
            "not-the-key", {"client_id": user["id"], "client_auth": "0" * 16}
        ),
        "tampered payload": f"{flipped}.{rest}",
        "signature cut": payload,
        "garbage": "not-a-session",
        "huge": "x" * 4000,
    }
    for name, cookie in forged.items():
        browser = attack_app.test_client()
        browser.set_cookie("session", cookie)
        for path in ("/api/auth/me", "/api/me/ratings", "/api/admin/stats"):
            response = browser.get(path)
            assert response.status_code == 401, (name, path)
            assert response.get_json()["error"]["code"] == "login_required"
    # The genuine cookie, copied to another browser, still works: it is the key.
    copy = attack_app.test_client()
    copy.set_cookie("session", genuine)
    assert copy.get("/api/auth/me").get_json()["user"]["id"] == user["id"]


def test_a_cookie_signed_with_the_right_key_needs_the_password_fingerprint(
    attack_app, auth
):
    """Whoever learns an account id cannot mint its session without the hash."""
    member = attack_app.test_client()
    user = auth.register_and_login(member)
    key = attack_app.config["SECRET_KEY"]
    for data in (
        {"client_id": user["id"]},
        {"client_id": user["id"], "client_auth": "0123456789abcdef"},
    ):
        browser = attack_app.test_client()
        browser.set_cookie("session", sign_session(key, data))
        assert browser.get("/api/auth/me").status_code == 401


def test_a_session_known_before_login_is_useless_after_it(attack_app, auth):
    """Fixation: an attacker's copy of the pre-login cookie stays a visitor's."""
    victim = attack_app.test_client()
    username = auth.unique_username()
    auth.register(victim, username)
    victim.get("/api/movies/home")
    with victim.session_transaction() as session:
        session["planted"] = "attacker"
    known = victim.get_cookie("session").value
    assert auth.login(victim, username).status_code == 200
    assert victim.get_cookie("session").value != known

    attacker = attack_app.test_client()
    attacker.set_cookie("session", known)
    assert attacker.get("/api/auth/me").status_code == 401
    assert attacker.get("/api/me/history").status_code == 401


# Floods -------------------------------------------------------------------------------


@pytest.fixture
def limited_app(tmp_path):
    """An app with rate limits on (the test settings turn them off)."""
    app = make_app(
        f"sqlite:///{tmp_path / 'limited.db'}",
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        MODEL_PATH=str(tmp_path / "model.joblib"),
    )
    with app.app_context():
        db.create_all()
    yield app
    # The limiter is shared by every app of the session: leave it off again.
    limiter.reset()
    limiter.enabled = False
    with app.app_context():
        dispose_engines()


def test_guessing_the_old_password_is_rate_limited(limited_app, auth):
    member = limited_app.test_client()
    auth.register_and_login(member, "victim")
    statuses = [
        member.put(
            "/api/auth/password",
            json={"old_password": f"guess-{n:04d}", "new_password": "new-pass-1234"},
        ).status_code
        for n in range(31)
    ]
    assert statuses == [403] * 30 + [429]
    blocked = member.put(
        "/api/auth/password",
        json={"old_password": auth.PASSWORD, "new_password": "new-pass-1234"},
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0


def test_mass_registration_is_rate_limited(limited_app, auth):
    visitor = limited_app.test_client()
    statuses = [auth.register(visitor, f"bot_{n}").status_code for n in range(21)]
    assert statuses == [201] * 20 + [429]
    assert visitor.get("/api/movies/tags").status_code == 200  # reading still works


@pytest.mark.parametrize("role", ["client", "admin"])
def test_every_body_over_64_kb_is_413(attack_app, auth, role):
    browser = attack_app.test_client()
    if role == "admin":
        auth.login_admin(browser, ADMIN_USERNAME, ADMIN_PASSWORD)
    else:
        auth.register_and_login(browser)
    body = json.dumps({"padding": "x" * 70_000})
    writes = [
        r for r in routes(attack_app) if r[1] in {"POST", "PUT", "PATCH", "DELETE"}
    ]
    assert len(writes) >= 15
    for endpoint, method, url in writes:
        response = browser.open(
            url, method=method, data=body, content_type="application/json"
        )
        assert response.status_code == 413, (endpoint, method)
        assert response.get_json()["error"]["code"] == "payload_too_large"
    assert browser.get("/api/auth/me").status_code == 200  # still logged in


# Production without a secret key -----------------------------------------------------


def production_env(tmp_path):
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("SECRET_", "DATABASE_", "APP_")):
            del env[name]
    env.update(
        APP_ENV="production",
        SECRET_KEY="",  # set and empty: a .env file cannot supply one either
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.db'}",
        MODEL_PATH=str(tmp_path / "model.joblib"),
        HOST="127.0.0.1",
        PORT="1",  # never reached: start-up must fail first
    )
    return env


@pytest.mark.parametrize("server", ["python app.py", "gunicorn"])
def test_production_without_a_secret_key_refuses_to_start(tmp_path, server):
    if server == "gunicorn":
        command = [
            str(Path(sys.executable).parent / "gunicorn"),
            "--config",
            "gunicorn.conf.py",
            "app:create_app()",
        ]
    else:
        command = [sys.executable, "app.py"]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "SECRET_KEY is not set: production needs a fixed secret key" in output
    assert "Traceback" not in output
    assert "Listening at" not in output and "Running on" not in output
