"""Inputs a newcomer found that broke the API, kept fixed."""

import pytest
from conftest import make_app
from sqlalchemy import func, select

from models import Movie, db


def click_count(app, movie_id):
    with app.app_context():
        return db.session.scalar(select(Movie.click_count).where(Movie.id == movie_id))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/login", b"[" * 1000 + b"]" * 1000),
        ("/api/auth/register", b"[" * 30000 + b"]" * 30000),
        ("/api/auth/login", b'{"username": ' + b"1" * 4401 + b', "password": "x"}'),
        ("/api/movies/1/rating", b'{"rating": ' + b"5" * 5001 + b"}"),
    ],
    ids=["nested-1000", "nested-30000", "huge-int-login", "huge-int-rating"],
)
def test_undecodable_json_is_a_400_not_a_500(ml_client, path, body):
    method = ml_client.put if path.endswith("rating") else ml_client.post
    response = method(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_username_cannot_end_in_a_newline(ml_client, auth):
    name = auth.unique_username()
    response = ml_client.post(
        "/api/auth/register", json={"username": name + "\n", "password": "password-1"}
    )
    assert response.status_code == 422
    assert "username" in response.get_json()["error"]["details"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/auth/login", 405, "method_not_allowed"),
        ("get", "/api/ai/chat", 405, "method_not_allowed"),
        ("post", "/api/nope", 404, "not_found"),
        ("put", "/api/movies/-1/rating", 404, "not_found"),
    ],
)
def test_api_paths_never_fall_through_to_the_front_end(
    ml_client, method, path, status, code
):
    response = getattr(ml_client, method)(path)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_head_shows_a_film_without_counting_a_view(ml_app, ml_client):
    before = click_count(ml_app, 2)
    for _ in range(3):
        assert ml_client.head("/api/movies/detail/2").status_code == 200
    assert click_count(ml_app, 2) == before
    ml_client.get("/api/movies/detail/2")
    assert click_count(ml_app, 2) == before + 1


def test_front_end_routes_fall_back_but_missing_assets_are_404(db_url, tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=app></div>")
    (dist / "assets" / "main.js").write_text("console.log(1)")
    client = make_app(db_url, FRONTEND_DIST=str(dist)).test_client()

    assert b"id=app" in client.get("/movies/1").data
    assert client.get("/assets/main.js").data == b"console.log(1)"
    missing = client.get("/assets/main-old.js")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"


def test_year_comes_from_the_title_not_the_rerelease_date(ml_client):
    fargo = ml_client.get("/api/movies/detail/100").get_json()
    assert fargo["title"] == "Fargo (1996)"
    assert fargo["release_date"] == "1997-02-14"
    assert fargo["year"] == 1996

    found = ml_client.get("/api/movies?q=jedi&year_from=1983&year_to=1983").get_json()
    assert [item["title"] for item in found["items"]] == ["Return of the Jedi (1983)"]


def test_upgrade_adds_the_year_column_to_an_older_database(tmp_path):
    from sqlalchemy import create_engine, inspect, text

    from init_dataset import upgrade_schema

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    db.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_movie_year"))
        conn.execute(text("ALTER TABLE movie DROP COLUMN year"))
        conn.execute(text("ALTER TABLE client DROP COLUMN history_version"))
        # Older versions indexed click_count, which every film page rewrites.
        conn.execute(text("CREATE INDEX ix_movie_click_count ON movie (click_count)"))
    upgrade_schema(engine)
    inspector = inspect(engine)
    assert "year" in {column["name"] for column in inspector.get_columns("movie")}
    client_columns = {column["name"] for column in inspector.get_columns("client")}
    assert "history_version" in client_columns
    indexes = {index["name"] for index in inspector.get_indexes("movie")}
    assert "ix_movie_year" in indexes
    assert "ix_movie_click_count" not in indexes
    engine.dispose()


def test_best_scored_list_damps_films_with_few_ratings(ml_client):
    top = ml_client.get("/api/movies?sort=score&per_page=10").get_json()["items"]
    # Raw means would open with films rated 5.0 by one to three viewers.
    assert all(item["rating_count"] >= 50 for item in top)
    assert "Schindler's List (1993)" in [item["title"] for item in top[:3]]


def test_film_page_ignores_a_disabled_clients_session(ml_app, ml_client, auth):
    user = auth.register_and_login(ml_client)
    ml_client.get("/api/movies/detail/3")
    with ml_app.app_context():
        from models import Client, Footprint

        db.session.get(Client, user["id"]).is_active = False
        db.session.commit()
        before = db.session.scalar(
            select(func.count()).where(Footprint.client_id == user["id"])
        )
    body = ml_client.get("/api/movies/detail/4").get_json()
    with ml_app.app_context():
        after = db.session.scalar(
            select(func.count()).where(Footprint.client_id == user["id"])
        )
    assert before == 1 and after == 1  # treated as a visitor: no footprint
    assert body["my_rating"] is None
    assert ml_client.get("/api/me/history").status_code == 403


@pytest.mark.parametrize("change", ["password", "deleted"])
def test_stale_client_session_is_a_visitor_on_home_and_film_pages(
    ml_app, ml_client, auth, change
):
    """Home and film pages check the session inside their own statement."""
    user = auth.register_and_login(ml_client)
    assert ml_client.put("/api/movies/4/rating", json={"rating": 5}).status_code == 201
    assert ml_client.get("/api/movies/detail/4").get_json()["my_rating"] == 5
    if change == "deleted":
        admin = ml_app.test_client()
        auth.login_admin(admin)
        assert admin.delete(f"/api/admin/clients/{user['id']}").status_code == 200
    with ml_app.app_context():
        from models import Client, Footprint

        if change == "password":
            # Changed elsewhere (another device, an admin reset): a new hash.
            db.session.get(Client, user["id"]).password_hash = "scrypt:other"
            db.session.commit()
        footprints = db.session.scalar(
            select(func.count()).where(Footprint.client_id == user["id"])
        )
    ml_app.extensions.get("personal_home_cache", {}).clear()

    body = ml_client.get("/api/movies/detail/4").get_json()
    home = ml_client.get("/api/movies/home")

    assert body["my_rating"] is None
    assert home.status_code == 200 and len(home.get_json()["recs"]) == 12
    # No personal page was made for the stale session, and no view was recorded.
    assert user["id"] not in ml_app.extensions.get("personal_home_cache", {})
    with ml_app.app_context():
        assert footprints == db.session.scalar(
            select(func.count()).where(Footprint.client_id == user["id"])
        )
    assert ml_client.get("/api/me/history").status_code in (401, 403)
