"""Admin routes: the guard on every route, stats, clients, films, charts, training."""

import time
from datetime import date

import pytest
from api_data import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    FakeHolder,
    FakePack,
    count_rows,
    movie_row,
    seed,
    seeded_app,
)
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from models import Client, Footprint, Movie, Rating, db

pytestmark = pytest.mark.usefixtures("json_secret_scan")


@pytest.fixture
def seeded(app):
    seed(app)
    return app


@pytest.fixture(scope="module")
def read_only_app(backend, tmp_path_factory):
    """The hand-made catalogue, shared by tests that change nothing."""
    app, teardown = seeded_app(backend, tmp_path_factory, "admin_ro")
    yield app
    teardown()


@pytest.fixture
def read_only_admin(read_only_app, auth):
    client = read_only_app.test_client()
    auth.login_admin(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    return client


@pytest.fixture
def admin_client(seeded, auth):
    client = seeded.test_client()
    auth.login_admin(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    return client


def admin_routes(app):
    """Every (method, url) under /api/admin, with 1 for each URL argument."""
    adapter = app.url_map.bind("localhost")
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/admin"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            url = adapter.build(rule.endpoint, dict.fromkeys(rule.arguments, 1))
            routes.append((method, url))
    return routes


def test_every_admin_route_needs_an_admin(app, auth):
    routes = admin_routes(app)
    assert len(routes) >= 11
    visitor = app.test_client()
    member = app.test_client()
    auth.register_and_login(member)

    for method, url in routes:
        body = None if method == "GET" else {}
        logged_out = visitor.open(url, method=method, json=body)
        assert logged_out.status_code == 401, (method, url)
        assert logged_out.get_json()["error"]["code"] == "login_required"
        as_client = member.open(url, method=method, json=body)
        assert as_client.status_code == 403, (method, url)
        assert as_client.get_json()["error"]["code"] == "admin_required"


# Stats ----------------------------------------------------------------------------


def test_stats_count_the_catalogue(seeded, admin_client, auth):
    visitor = seeded.test_client()
    for _ in range(2):
        auth.register_and_login(visitor)
    for movie_id in (1, 1, 6):
        visitor.get(f"/api/movies/detail/{movie_id}")

    response = admin_client.get("/api/admin/stats")
    assert response.status_code == 200
    assert response.get_json() == {
        "movie_count": 11,
        "client_count": 2,
        "dataset_user_count": 4,
        "total_clicks": 3,
        "rating_count": 14,
        "model_loaded": False,
        "rmse": None,
        "mae": None,
        "within_one_star": None,
        "precision_at_10": None,
        "ndcg_at_10": None,
        "coverage": None,
        "eval_date": None,
    }


def test_stats_read_metrics_from_the_loaded_pack(seeded, admin_client):
    pack = FakePack()
    pack.metrics = {
        "rmse": 0.91,
        "mae": 0.72,
        "within_one_star": 0.74,
        "precision_at_10": 0.24,
        "recall_at_10": 0.1,
        "ndcg_at_10": 0.33,
        "coverage_at_10": 0.18,
        "eval_date": "2026-12-03T17:09:03+00:00",
    }
    seeded.extensions["recommender"] = FakeHolder(pack)

    body = admin_client.get("/api/admin/stats").get_json()
    assert body["model_loaded"] is True
    assert (body["rmse"], body["mae"], body["within_one_star"]) == (0.91, 0.72, 0.74)
    assert (body["precision_at_10"], body["ndcg_at_10"]) == (0.24, 0.33)
    assert body["coverage"] == 0.18
    assert body["eval_date"] == "2026-12-03T17:09:03+00:00"


def test_stats_on_the_real_data(ml_app, ml_client, auth):
    auth.login_admin(ml_client)
    body = ml_client.get("/api/admin/stats").get_json()
    with ml_app.app_context():
        n_ratings = db.session.scalar(select(func.count()).select_from(Rating))
        n_registered = db.session.scalar(
            select(func.count()).where(Client.source == "registered")
        )
    assert body["dataset_user_count"] == 943
    assert body["rating_count"] == n_ratings >= 100000
    assert body["client_count"] == n_registered


# Clients --------------------------------------------------------------------------


def test_clients_list_with_counts_and_filters(seeded, admin_client, auth):
    member = seeded.test_client()
    alice = auth.register_and_login(member, "alice")
    member.put("/api/movies/1/rating", json={"rating": 5})
    member.put("/api/movies/2/rating", json={"rating": 4})
    member.get("/api/movies/detail/3")
    auth.register(seeded.test_client(), "bob_99")

    body = admin_client.get("/api/admin/clients?q=ALI").get_json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert item == {
        "id": alice["id"],
        "username": "alice",
        "source": "registered",
        "created_at": alice["created_at"],
        "last_login_at": item["last_login_at"],
        "is_active": True,
        "rating_count": 2,
        "footprint_count": 1,
    }
    assert item["last_login_at"] is not None

    dataset = admin_client.get("/api/admin/clients?source=movielens").get_json()
    assert dataset["total"] == 4
    assert {i["username"] for i in dataset["items"]} == {
        f"ml_user_{n}" for n in range(1, 5)
    }
    assert {i["username"]: i["rating_count"] for i in dataset["items"]} == {
        "ml_user_1": 4,
        "ml_user_2": 4,
        "ml_user_3": 3,
        "ml_user_4": 3,
    }

    page = admin_client.get("/api/admin/clients?per_page=2&page=1").get_json()
    assert page["total"] == 6
    # Newest first: the two accounts registered in this test.
    assert [i["username"] for i in page["items"]] == ["bob_99", "alice"]

    bad = admin_client.get("/api/admin/clients?source=elsewhere")
    assert bad.status_code == 422


def test_reset_password_returns_a_temporary_password_once(seeded, admin_client, auth):
    member = seeded.test_client()
    alice = auth.register_and_login(member, "alice")

    response = admin_client.post(f"/api/admin/clients/{alice['id']}/reset-password")
    assert response.status_code == 200
    body = response.get_json()
    temporary = body["temporary_password"]
    assert (body["id"], body["username"]) == (alice["id"], "alice")
    assert len(temporary) >= 12
    with seeded.app_context():
        stored = db.session.get(Client, alice["id"]).password_hash
    assert stored != temporary
    assert check_password_hash(stored, temporary)

    # The old password and the old session stop working; the new one logs in.
    assert member.get("/api/auth/me").status_code == 401
    assert auth.login(seeded.test_client(), "alice").status_code == 401
    assert auth.login(seeded.test_client(), "alice", temporary).status_code == 200

    missing = admin_client.post("/api/admin/clients/9999/reset-password")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "client_not_found"


def test_disable_and_enable_a_client(seeded, admin_client, auth):
    member = seeded.test_client()
    alice = auth.register_and_login(member, "alice")

    response = admin_client.patch(
        f"/api/admin/clients/{alice['id']}", json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.get_json()["is_active"] is False
    assert member.put("/api/movies/1/rating", json={"rating": 3}).status_code == 403
    # /me says why once, then the session is gone.
    assert member.get("/api/auth/me").status_code == 403
    assert member.get("/api/auth/me").status_code == 401
    assert auth.login(seeded.test_client(), "alice").status_code == 403

    admin_client.patch(f"/api/admin/clients/{alice['id']}", json={"is_active": True})
    assert auth.login(seeded.test_client(), "alice").status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"is_active": "yes"}, {"is_active": None}, {}, {"is_active": True, "role": "x"}],
)
def test_patch_client_validates(read_only_app, read_only_admin, body):
    response = read_only_admin.patch("/api/admin/clients/1", json=body)
    assert response.status_code == 422
    assert count_rows(read_only_app, Client, is_active=True) == 4


def test_delete_client_removes_their_data_and_rescores_films(
    seeded, admin_client, auth
):
    member = seeded.test_client()
    alice = auth.register_and_login(member, "alice")
    member.put("/api/movies/2/rating", json={"rating": 1})
    member.get("/api/movies/detail/2")
    assert movie_row(seeded, 2) == (pytest.approx(3.0), 3)

    response = admin_client.delete(f"/api/admin/clients/{alice['id']}")
    assert response.status_code == 200
    assert response.get_json() == {"deleted": 1, "rescored_movies": 1}
    assert movie_row(seeded, 2) == (pytest.approx(4.0), 2)
    assert count_rows(seeded, Rating, client_id=alice["id"]) == 0
    assert count_rows(seeded, Footprint, client_id=alice["id"]) == 0
    assert count_rows(seeded, Client, id=alice["id"]) == 0
    assert member.get("/api/auth/me").status_code == 401

    again = admin_client.delete(f"/api/admin/clients/{alice['id']}")
    assert again.status_code == 404


# Films ----------------------------------------------------------------------------


def test_create_update_and_delete_a_film(seeded, admin_client, auth):
    created = admin_client.post(
        "/api/admin/movies",
        json={
            "title": "  霸王别姬  ",
            "tags": ["Drama", "Romance"],
            "director": "陈凯歌",
            "release_date": "1993-01-01",
            "imdb_url": "https://www.imdb.com/title/tt0106332/",
        },
    )
    assert created.status_code == 201
    film = created.get_json()
    assert film["title"] == "霸王别姬"
    assert film["tags"] == ["Drama", "Romance"]
    assert (film["score"], film["rating_count"], film["click_count"]) == (None, 0, 0)
    assert film["year"] == 1993
    # New films show up in search and in the tag counts at once.
    assert admin_client.get("/api/movies?q=陈凯歌").get_json()["total"] == 1
    tags = {t["tag"]: t["count"] for t in admin_client.get("/api/movies/tags").json}
    assert tags["Drama"] == 4

    patched = admin_client.patch(
        f"/api/admin/movies/{film['id']}", json={"summary": "京剧", "tags": []}
    )
    assert patched.status_code == 200
    assert patched.get_json()["summary"] == "京剧"
    assert patched.get_json()["tags"] == []
    assert patched.get_json()["title"] == "霸王别姬"

    member = seeded.test_client()
    auth.register_and_login(member)
    member.put(f"/api/movies/{film['id']}/rating", json={"rating": 5})
    member.get(f"/api/movies/detail/{film['id']}")

    deleted = admin_client.delete(f"/api/admin/movies/{film['id']}")
    assert deleted.status_code == 200
    assert count_rows(seeded, Movie, id=film["id"]) == 0
    assert count_rows(seeded, Rating, movie_id=film["id"]) == 0
    assert count_rows(seeded, Footprint, movie_id=film["id"]) == 0
    assert admin_client.get(f"/api/movies/detail/{film['id']}").status_code == 404
    assert admin_client.delete(f"/api/admin/movies/{film['id']}").status_code == 404
    assert (
        admin_client.patch("/api/admin/movies/999", json={"title": "x"}).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 256}, "title"),
        ({"title": None}, "title"),
        ({"title": "ok", "score": 5.0}, "score"),
        ({"title": "ok", "rating_count": 9}, "rating_count"),
        ({"title": "ok", "click_count": 9}, "click_count"),
        ({"title": "ok", "tags": "Drama"}, "tags"),
        ({"title": "ok", "tags": ["a,b"]}, "tags"),
        ({"title": "ok", "release_date": "someday"}, "release_date"),
        ({"title": "ok", "imdb_url": "not a url"}, "imdb_url"),
    ],
)
def test_film_writes_are_validated(read_only_app, read_only_admin, body, field):
    response = read_only_admin.post("/api/admin/movies", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]
    assert count_rows(read_only_app, Movie) == 11


def test_patch_cannot_blank_the_title(read_only_admin):
    for body in ({"title": None}, {"title": ""}, {"click_count": 0}):
        response = read_only_admin.patch("/api/admin/movies/1", json=body)
        assert response.status_code == 422
    title = read_only_admin.get("/api/movies/detail/1").json["title"]
    assert title == "Star Wars (1977)"


# Charts ---------------------------------------------------------------------------


def test_charts(seeded, admin_client, auth):
    member = seeded.test_client()
    auth.register_and_login(member)
    for movie_id in (1, 1, 6):
        member.get(f"/api/movies/detail/{movie_id}")

    response = admin_client.get("/api/admin/charts")
    assert response.status_code == 200
    body = response.get_json()
    assert body["ratings_histogram"] == [
        {"rating": 1, "count": 1},
        {"rating": 2, "count": 2},
        {"rating": 3, "count": 2},
        {"rating": 4, "count": 5},
        {"rating": 5, "count": 4},
    ]
    assert body["movies_per_tag"][0] == {"tag": "Action", "count": 4}
    clicks = {item["tag"]: item["clicks"] for item in body["clicks_per_tag"]}
    assert (clicks["Action"], clicks["Sci-Fi"], clicks["Western"]) == (2, 2, 1)
    assert clicks["Comedy"] == 0
    assert body["top_clicked"][:3] == [
        {"id": 1, "title": "Star Wars (1977)", "click_count": 2},
        {"id": 6, "title": "Unforgiven (1992)", "click_count": 1},
        {"id": 2, "title": "Empire Strikes Back (1980)", "click_count": 0},
    ]
    assert len(body["top_clicked"]) == 10
    registrations = body["registrations"]
    assert len(registrations) == 30
    assert registrations[-1]["date"] == date.today().isoformat()
    assert registrations[-1]["count"] == 1
    assert sum(day["count"] for day in registrations) == 1


# Training -------------------------------------------------------------------------


def wait_for_state(client, states, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get("/api/admin/model").get_json()
        if body["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"training never reached {states}: {body}")


@pytest.fixture
def training_app(seeded, tmp_path):
    seeded.config["MODEL_PATH"] = str(tmp_path / "model.joblib")
    return seeded


def test_training_runs_in_the_background_one_at_a_time(training_app, auth, tmp_path):
    training_app.config["MODEL_TRAINER"] = "fake_trainer:train"
    client = training_app.test_client()
    auth.login_admin(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert client.get("/api/admin/model").get_json()["state"] == "idle"

    started = client.post("/api/admin/model/train")
    assert started.status_code == 202
    assert started.get_json()["state"] == "running"
    busy = client.post("/api/admin/model/train")
    assert busy.status_code == 409
    assert busy.get_json()["error"]["code"] == "training_running"
    running = wait_for_state(client, {"running"})
    assert running["started_at"] is not None

    (tmp_path / "model.joblib.release").touch()
    done = wait_for_state(client, {"done", "failed"})
    assert done["state"] == "done"
    assert done["progress"] == 1.0
    assert done["last_error"] is None
    assert done["metrics"] == {"rmse": 0.95, "mae": 0.75, "eval_date": "2026-12-03"}
    assert done["model"]["loaded"] is False
    lock = tmp_path / "model.joblib.training.lock"
    deadline = time.monotonic() + 5
    while lock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lock.exists()


def test_training_failure_is_reported_and_can_be_retried(training_app, auth, tmp_path):
    training_app.config["MODEL_TRAINER"] = "fake_trainer:fail"
    client = training_app.test_client()
    auth.login_admin(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    (tmp_path / "model.joblib.release").touch()

    assert client.post("/api/admin/model/train").status_code == 202
    failed = wait_for_state(client, {"failed", "done"})
    assert failed["state"] == "failed"
    assert failed["last_error"] == "ValueError: no ratings to train on"
    assert failed["finished_at"] is not None

    assert client.post("/api/admin/model/train").status_code == 202
    assert wait_for_state(client, {"failed", "done"})["state"] == "failed"
