"""Accounts and sessions: register, login, logout, me, password change, rate limit."""

import pytest
from api_data import ADMIN_PASSWORD, ADMIN_USERNAME, seed, seeded_app
from conftest import make_app
from sqlalchemy import select
from werkzeug.security import check_password_hash

from api import limiter
from models import Client, db, dispose_engines

pytestmark = pytest.mark.usefixtures("json_secret_scan")


@pytest.fixture(scope="module")
def read_only_app(backend, tmp_path_factory):
    """A database shared by tests that create no account."""
    app, teardown = seeded_app(backend, tmp_path_factory, "auth_ro")
    yield app
    teardown()


def client_row(app, username):
    with app.app_context():
        return db.session.scalar(select(Client).where(Client.username == username))


def test_register_creates_a_client_with_a_hashed_password(app, client):
    response = client.post(
        "/api/auth/register", json={"username": "小明_01", "password": "password-123"}
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body == {"id": body["id"], "username": "小明_01"}
    row = client_row(app, "小明_01")
    assert row.source == "registered"
    assert row.is_active is True
    assert row.password_hash != "password-123"
    assert check_password_hash(row.password_hash, "password-123")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"username": "ab", "password": "password-123"}, ["username"]),
        ({"username": "a" * 33, "password": "password-123"}, ["username"]),
        ({"username": "bad name", "password": "password-123"}, ["username"]),
        ({"username": "bad-name", "password": "password-123"}, ["username"]),
        ({"username": "alice", "password": "short"}, ["password"]),
        ({"username": "alice", "password": "p" * 129}, ["password"]),
        ({"username": "alice"}, ["password"]),
        ({"password": "password-123"}, ["username"]),
        ({"username": 123, "password": "password-123"}, ["username"]),
        ({"username": "alice", "password": "password-123", "admin": True}, ["admin"]),
    ],
)
def test_register_rejects_bad_input(read_only_app, body, fields):
    app = read_only_app
    response = app.test_client().post("/api/auth/register", json=body)

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert sorted(error["details"]) == fields
    assert error["message"].startswith("请求参数校验失败")
    assert client_row(app, "alice") is None


@pytest.mark.parametrize("taken", ["alice", "ALICE"])
def test_register_refuses_a_taken_username(client, auth, taken):
    auth.register(client, "alice")
    response = auth.register(client, taken)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "username_taken"


def test_login_starts_a_client_session(app, client, auth):
    auth.register(client, "alice")
    response = auth.login(client, "alice")

    assert response.status_code == 200
    body = response.get_json()
    assert body["msg"] == "登录成功"
    assert body["role"] == "client"
    assert body["user"]["username"] == "alice"
    assert body["user"]["last_login_at"] is not None
    assert client_row(app, "alice").last_login_at is not None
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert client.get("/api/auth/me").get_json()["user"]["username"] == "alice"


def test_session_cookie_is_secure_when_configured(db_url, tmp_path, auth):
    app = make_app(db_url, SESSION_COOKIE_SECURE=True, MODEL_PATH=str(tmp_path / "m"))
    with app.app_context():
        db.drop_all()
        db.create_all()
    client = app.test_client()
    auth.register(client, "alice")
    response = auth.login(client, "alice")
    assert "Secure" in response.headers["Set-Cookie"]
    with app.app_context():
        db.drop_all()
        dispose_engines()


def test_wrong_username_and_wrong_password_look_the_same(client, auth):
    auth.register(client, "alice")
    wrong_password = auth.login(client, "alice", "not-the-password")
    wrong_username = auth.login(client, "nobody", "not-the-password")

    assert wrong_password.status_code == wrong_username.status_code == 401
    assert wrong_password.get_json() == wrong_username.get_json()
    assert wrong_password.get_json()["error"] == {
        "code": "invalid_credentials",
        "message": "用户名或密码错误",
    }
    assert client.get("/api/auth/me").status_code == 401


def test_dataset_users_without_password_cannot_log_in(app, client, auth):
    seed(app)
    response = auth.login(client, "ml_user_1", "")
    assert response.status_code == 422
    response = auth.login(client, "ml_user_1", "anything-at-all")
    assert response.status_code == 401


def test_disabled_client_is_refused(app, client, auth):
    auth.register(client, "alice")
    with app.app_context():
        db.session.scalar(
            select(Client).where(Client.username == "alice")
        ).is_active = False
        db.session.commit()

    response = auth.login(client, "alice")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "account_disabled"


def test_login_clears_the_old_session(app, client, auth):
    seed(app)
    auth.register(client, "alice")
    with client.session_transaction() as session:
        session["planted"] = "by-an-attacker"
    auth.login_admin(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    with client.session_transaction() as session:
        assert "planted" not in session
        admin_cookie = dict(session)

    auth.login(client, "alice")
    with client.session_transaction() as session:
        assert "admin_id" not in session
        assert session["client_id"] != admin_cookie.get("client_id")
    me = client.get("/api/auth/me").get_json()
    assert me["role"] == "client"
    assert client.get("/api/admin/stats").status_code == 403


def test_admin_login_uses_the_admin_table(app, client, auth):
    seed(app)
    wrong_role = auth.login(client, ADMIN_USERNAME, ADMIN_PASSWORD, role="client")
    assert wrong_role.status_code == 401

    response = auth.login(client, ADMIN_USERNAME, ADMIN_PASSWORD, role="admin")
    assert response.status_code == 200
    assert response.get_json()["role"] == "admin"
    assert response.get_json()["user"]["username"] == ADMIN_USERNAME
    me = client.get("/api/auth/me").get_json()
    assert (me["role"], me["user"]["username"]) == ("admin", ADMIN_USERNAME)


def test_logout_ends_the_session(client, auth):
    auth.register_and_login(client, "alice")
    response = auth.logout(client)
    assert response.status_code == 200
    assert response.get_json() == {"msg": "已退出登录"}
    me = client.get("/api/auth/me")
    assert me.status_code == 401
    assert me.get_json()["error"]["code"] == "login_required"


def test_a_remembered_session_cookie_still_expires_and_tampering_fails(
    app, client, auth, monkeypatch
):
    import time

    import api.security

    auth.register_and_login(client, "alice")
    assert client.get("/api/auth/me").status_code == 200  # verified, remembered
    cookie = client.get_cookie("session").value

    # One byte changed in the payload: not the remembered cookie, and its
    # signature fails.
    forged = ("A" if cookie[0] != "A" else "B") + cookie[1:]
    other = app.test_client()
    other.set_cookie("session", forged)
    refused = other.get("/api/auth/me")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "login_required"

    # Past the session lifetime the remembered cookie is refused too.
    lifetime = app.permanent_session_lifetime.total_seconds()
    later = time.time() + lifetime + 60
    monkeypatch.setattr(api.security.time, "time", lambda: later)
    expired = client.get("/api/auth/me")
    assert expired.status_code == 401
    assert expired.get_json()["error"]["code"] == "login_required"


def test_password_change(app, client, auth):
    auth.register_and_login(client, "alice", "first-pass-1")
    other_device = app.test_client()
    auth.login(other_device, "alice", "first-pass-1")

    wrong = client.put(
        "/api/auth/password",
        json={"old_password": "not-it-at-all", "new_password": "second-pass-2"},
    )
    assert wrong.status_code == 403
    assert wrong.get_json()["error"]["code"] == "wrong_password"

    too_short = client.put(
        "/api/auth/password",
        json={"old_password": "first-pass-1", "new_password": "short"},
    )
    assert too_short.status_code == 422

    changed = client.put(
        "/api/auth/password",
        json={"old_password": "first-pass-1", "new_password": "second-pass-2"},
    )
    assert changed.status_code == 200
    assert changed.get_json() == {"msg": "密码已修改"}
    # This session goes on; the other one ended with the old password.
    assert client.get("/api/auth/me").status_code == 200
    assert other_device.get("/api/auth/me").status_code == 401
    assert auth.login(app.test_client(), "alice", "first-pass-1").status_code == 401
    assert auth.login(app.test_client(), "alice", "second-pass-2").status_code == 200


def test_password_change_needs_login(client):
    response = client.put(
        "/api/auth/password",
        json={"old_password": "first-pass-1", "new_password": "second-pass-2"},
    )
    assert response.status_code == 401


@pytest.fixture
def limited_client(tmp_path, auth):
    """A client of an app with rate limits on (the test settings turn them off)."""
    app = make_app(
        f"sqlite:///{tmp_path / 'limited.db'}",
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        MODEL_PATH=str(tmp_path / "model.joblib"),
    )
    with app.app_context():
        db.create_all()
    client = app.test_client()
    auth.register(client, "alice")
    yield client
    # The limiter is shared by every app of the session: leave it off again.
    limiter.reset()
    limiter.enabled = False
    with app.app_context():
        dispose_engines()


def test_login_is_rate_limited_per_username(limited_client, auth):
    statuses = [
        auth.login(limited_client, "alice", "wrong-password-1").status_code
        for _ in range(5)
    ]
    assert statuses == [401] * 5

    blocked = auth.login(limited_client, "alice")
    assert blocked.status_code == 429
    assert blocked.get_json()["error"]["code"] == "rate_limited"
    assert blocked.get_json()["error"]["message"] == "请求过于频繁,请稍后再试"
    assert int(blocked.headers["Retry-After"]) > 0
    # Another account from the same address is not blocked by alice's failures.
    assert auth.login(limited_client, "bob", "wrong-password-1").status_code == 401


def test_successful_logins_do_not_count_against_the_username(limited_client, auth):
    statuses = [auth.login(limited_client, "alice").status_code for _ in range(8)]
    assert statuses == [200] * 8


def test_login_is_rate_limited_per_address(limited_client, auth):
    statuses = [
        auth.login(limited_client, f"user{index}", "wrong-password-1").status_code
        for index in range(31)
    ]
    assert statuses == [401] * 30 + [429]


def test_simultaneous_registrations_of_one_name_give_one_account(app, auth):
    from concurrent.futures import ThreadPoolExecutor

    def register(_):
        return auth.register(app.test_client(), "same_name").status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(register, range(4)))

    assert statuses == [201, 409, 409, 409]
    with app.app_context():
        rows = db.session.scalars(
            select(Client).where(Client.username == "same_name")
        ).all()
    assert len(rows) == 1
