"""Across the API: OpenAPI, error shapes, the cross-site check, CORS, concurrency."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from api_data import ADMIN_PASSWORD, ADMIN_USERNAME, seed, seeded_app
from sqlalchemy import func, select
from werkzeug.serving import make_server

from models import Movie, Rating, db

pytestmark = pytest.mark.usefixtures("json_secret_scan")

ALLOWED_ORIGIN = "http://localhost:5173"


@pytest.fixture(scope="module")
def shared_app(backend, tmp_path_factory):
    """The hand-made catalogue, for tests that only add uniquely named accounts."""
    app, teardown = seeded_app(backend, tmp_path_factory, "common")
    yield app
    teardown()


@pytest.fixture
def shared_client(shared_app):
    return shared_app.test_client()


# OpenAPI --------------------------------------------------------------------------


def test_openapi_document_lists_every_route(app, client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"] == "3.0.3"
    assert spec["info"]["title"] == "MovieRec API"
    documented = {
        (path, method) for path, item in spec["paths"].items() for method in item
    }
    for rule in app.url_map.iter_rules():
        is_ours = rule.endpoint.split(".")[0] in {"auth", "movies", "admin"}
        if not is_ours:
            continue
        path = rule.rule.replace("<int:", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)
    register = spec["paths"]["/api/auth/register"]["post"]
    schema_ref = register["requestBody"]["content"]["application/json"]["schema"]
    assert schema_ref["$ref"].endswith("/Register")
    assert set(spec["components"]["schemas"]["Register"]["required"]) == {
        "username",
        "password",
    }


def test_swagger_ui_is_served(shared_client):
    response = shared_client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"swagger-ui" in response.data
    assert b"/api/openapi.json" in response.data


# Error shapes ---------------------------------------------------------------------


def test_malformed_json_is_400(shared_client):
    response = shared_client.post(
        "/api/auth/register", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": "invalid_json",
        "message": "请求体不是合法的 JSON",
        "details": ["Invalid JSON body."],
    }


def test_body_over_64_kb_is_413(shared_client):
    body = '{"username": "alice", "password": "' + "x" * 70_000 + '"}'
    response = shared_client.post(
        "/api/auth/register", data=body, content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert response.get_json()["error"]["message"] == "请求体过大"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("username=alice&password=password-123", "application/x-www-form-urlencoded"),
        ('{"username": "alice", "password": "password-123"}', "text/plain"),
    ],
)
def test_state_changing_bodies_must_be_json(shared_client, data, content_type):
    response = shared_client.post(
        "/api/auth/register", data=data, content_type=content_type
    )
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ([1, 2], {"_schema": ["Invalid input type."]}),
        (
            {"username": "alice", "password": "password-123", "is_admin": True},
            {"is_admin": ["Unknown field."]},
        ),
        (
            {"username": ["alice"], "password": 12345678},
            {"username": ["Not a valid string."], "password": ["Not a valid string."]},
        ),
    ],
)
def test_validation_errors_are_422_with_details(shared_client, body, details):
    response = shared_client.post("/api/auth/register", json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == details
    assert error["message"].startswith("请求参数校验失败")


def test_unknown_query_parameters_are_ignored(shared_client):
    response = shared_client.get("/api/movies?_=1700000000&per_page=2")
    assert response.status_code == 200
    assert len(response.get_json()["items"]) == 2


def test_routing_errors_are_json(shared_client):
    response = shared_client.delete("/api/movies/tags")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


# Cross-site requests and CORS -----------------------------------------------------


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_state_changing_requests_from_other_origins_are_refused(shared_client, origin):
    response = shared_client.post(
        "/api/auth/register",
        json={"username": "alice", "password": "password-123"},
        headers={"Origin": origin},
    )
    assert response.status_code == 403
    assert response.get_json()["error"] == {
        "code": "origin_not_allowed",
        "message": "不允许来自该来源的跨站请求",
    }


@pytest.mark.parametrize("origin", [ALLOWED_ORIGIN, "http://localhost"])
def test_allowed_and_same_origins_may_change_state(shared_client, auth, origin):
    response = shared_client.post(
        "/api/auth/register",
        json={"username": auth.unique_username(), "password": "password-123"},
        headers={"Origin": origin},
    )
    assert response.status_code == 201


def test_reads_from_other_origins_get_no_cors_grant(shared_client):
    response = shared_client.get(
        "/api/movies/tags", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_the_configured_origin_with_credentials(shared_client):
    response = shared_client.options(
        "/api/auth/login",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"

    refused = shared_client.options(
        "/api/auth/login",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert "Access-Control-Allow-Origin" not in refused.headers


# A whole session: no password or hash in any answer -------------------------------


def test_a_full_session_never_reveals_a_password_or_hash(
    app, client, auth, json_secret_scan
):
    seed(app)
    user = auth.register_and_login(client, "alice", "alice-password-1")
    client.get("/api/auth/me")
    client.get("/api/movies/home")
    client.get("/api/movies/detail/1")
    client.put("/api/movies/1/rating", json={"rating": 4})
    client.get("/api/me/ratings")
    client.get("/api/me/history")
    client.put(
        "/api/auth/password",
        json={"old_password": "alice-password-1", "new_password": "alice-password-2"},
    )
    auth.login(client, "alice", "wrong-password-9")

    admin = app.test_client()
    auth.login_admin(admin, ADMIN_USERNAME, ADMIN_PASSWORD)
    for path in ("/api/auth/me", "/api/admin/stats", "/api/admin/clients"):
        assert admin.get(path).status_code == 200
    admin.get("/api/admin/clients?source=movielens")
    admin.get("/api/admin/charts")
    admin.get("/api/admin/model")
    reset = admin.post(f"/api/admin/clients/{user['id']}/reset-password")
    auth.login(app.test_client(), "alice", reset.get_json()["temporary_password"])
    admin.patch(f"/api/admin/clients/{user['id']}", json={"is_active": False})

    # The scan itself runs when the test ends; here, check it saw the session.
    assert len(json_secret_scan) >= 20
    clients = [body for body in json_secret_scan if "items" in body]
    assert any("alice" in str(body) for body in clients)


# Concurrency through a real threaded server ---------------------------------------


@pytest.fixture
def live_server(ml_app):
    """Serve the shared MovieLens app on a random port in a thread."""
    server = make_server("127.0.0.1", 0, ml_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def scalar(app, query):
    with app.app_context():
        value = db.session.scalar(query)
        db.session.remove()
        return value


def test_concurrent_details_count_every_click(ml_app, live_server):
    movie_id = 127
    before = scalar(ml_app, select(Movie.click_count).where(Movie.id == movie_id))

    def view(_):
        with requests.Session() as session:
            return session.get(
                f"{live_server}/api/movies/detail/{movie_id}"
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(view, range(200)))

    assert statuses == [200] * 200
    after = scalar(ml_app, select(Movie.click_count).where(Movie.id == movie_id))
    assert after - before == 200


def test_concurrent_rating_changes_keep_the_score_true(ml_app, live_server, auth):
    movie_id = 258
    sessions = []
    for _ in range(10):
        session = requests.Session()
        username = auth.unique_username("rater")
        for path in ("register", "login"):
            response = session.post(
                f"{live_server}/api/auth/{path}",
                json={"username": username, "password": auth.PASSWORD},
            )
            assert response.status_code in (200, 201), response.text
        sessions.append(session)
    rng = random.Random(7)
    changes = [
        (sessions[i % 10], rng.choice([1, 2, 3, 4, 5, None])) for i in range(100)
    ]

    def change(task):
        session, rating = task
        url = f"{live_server}/api/movies/{movie_id}/rating"
        if rating is None:
            return session.delete(url).status_code
        return session.put(url, json={"rating": rating}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(change, changes))
    for session in sessions:
        session.close()

    assert set(statuses) <= {200, 201, 404}  # 404: deleting a rating not yet made
    assert statuses.count(404) <= sum(1 for _, rating in changes if rating is None)
    with ml_app.app_context():
        n_ratings, average = db.session.execute(
            select(func.count(), func.avg(Rating.rating)).where(
                Rating.movie_id == movie_id
            )
        ).one()
        movie = db.session.get(Movie, movie_id)
        assert movie.rating_count == n_ratings
        assert movie.score == pytest.approx(float(average), abs=1e-3)
        db.session.remove()
