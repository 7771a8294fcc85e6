"""Films: home, detail, search, tags, ratings and history, with and without a pack."""

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
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from models import Client, Footprint, Movie, Rating, db, dispose_engines

pytestmark = pytest.mark.usefixtures("json_secret_scan")


@pytest.fixture
def seeded(app):
    seed(app)
    return app


@pytest.fixture
def seeded_client(seeded):
    return seeded.test_client()


@pytest.fixture(scope="module")
def read_only_app(backend, tmp_path_factory):
    """The hand-made catalogue, shared by tests that change no film."""
    app, teardown = seeded_app(backend, tmp_path_factory, "movies_ro")
    yield app
    teardown()


@pytest.fixture
def read_only_client(read_only_app):
    return read_only_app.test_client()


@pytest.fixture
def fake_pack(seeded):
    pack = FakePack()
    seeded.extensions["recommender"] = FakeHolder(pack)
    return pack


TRANSACTION_CONTROL = {"", "START TRANSACTION", "COMMIT"}


class StatementCounter:
    """Records the statements of every engine (the app's, and its autocommit one).

    On MySQL one round trip may carry a whole transaction (models.write_together):
    each statement in it counts, the transaction control around them does not.
    """

    def __init__(self, engine=Engine):
        self.engine = engine
        self.statements = []
        self.round_trips = 0

    def _record(self, conn, cursor, statement, *args):
        self.round_trips += 1
        for part in statement.split(";"):
            if part.strip().upper() not in TRANSACTION_CONTROL:
                self.statements.append(part.strip())

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)


def count_statements(app, call):
    with StatementCounter() as counter:
        response = call()
    assert response.status_code == 200, response.get_json()
    return len(counter.statements), response


def ids_of(cards):
    return [card["id"] for card in cards]


# Home -----------------------------------------------------------------------------


def test_visitor_home_mixes_popular_and_random_films(ml_app, ml_client):
    first = ml_client.get("/api/movies/home").get_json()["recs"]
    answers = {tuple(ids_of(first))}
    for _ in range(4):
        answers.add(tuple(ids_of(ml_client.get("/api/movies/home").get_json()["recs"])))

    assert len(first) == 12
    assert len(set(ids_of(first))) == 12
    reasons = {card["reason"] for card in first}
    assert reasons <= {"热门电影,很多人看过", "随机发现,换换口味"}
    assert "热门电影,很多人看过" in reasons
    assert first[0]["poster"] == f"/posters/{first[0]['id']}"
    assert isinstance(first[0]["tags"], list)
    # Five calls giving the same twelve films in the same order would not be random.
    assert len(answers) > 1


def test_visitor_home_popular_half_comes_from_the_most_rated(ml_app, ml_client):
    with ml_app.app_context():
        top = set(
            db.session.scalars(
                select(Movie.id)
                .order_by(Movie.rating_count.desc(), Movie.id)
                .limit(100)
            )
        )
    recs = ml_client.get("/api/movies/home").get_json()["recs"]
    popular = [card for card in recs if card["reason"] == "热门电影,很多人看过"]
    assert len(popular) == 6
    assert {card["id"] for card in popular} <= top


def test_home_follows_the_latest_ratings_without_a_pack(seeded_client, auth):
    auth.register_and_login(seeded_client)
    seeded_client.put("/api/movies/3/rating", json={"rating": 5})

    recs = seeded_client.get("/api/movies/home").get_json()["recs"]
    assert ids_of(recs)[:2] == [1, 2]
    assert recs[0]["reason"] == "因为你喜欢科幻类电影"
    assert 3 not in ids_of(recs)  # rated films are not suggested again

    seeded_client.put("/api/movies/3/rating", json={"rating": 1})
    seeded_client.put("/api/movies/10/rating", json={"rating": 5})
    recs = seeded_client.get("/api/movies/home").get_json()["recs"]
    assert recs[0]["id"] == 6
    assert recs[0]["reason"] == "因为你喜欢西部类电影"
    assert {3, 10}.isdisjoint(ids_of(recs))
    assert len(recs) == 9  # eleven films, two rated


def test_home_uses_views_when_the_client_has_no_ratings(seeded_client, auth):
    auth.register_and_login(seeded_client)
    seeded_client.get("/api/movies/detail/4")

    recs = seeded_client.get("/api/movies/home").get_json()["recs"]
    assert recs[0]["id"] == 5  # Aladdin shares Animation and Children's
    assert recs[0]["reason"] == "因为你喜欢动画、儿童类电影"


def test_home_asks_the_pack_with_ratings_and_views(seeded_client, auth, fake_pack):
    auth.register_and_login(seeded_client)
    seeded_client.get("/api/movies/detail/9")
    seeded_client.put("/api/movies/3/rating", json={"rating": 4})

    recs = seeded_client.get("/api/movies/home").get_json()["recs"]
    assert ids_of(recs)[:2] == [5, 6]
    assert recs[0]["reason"] == "因为你看过《Alien》"
    (call,) = fake_pack.recommend_calls
    assert [(movie_id, rating) for movie_id, rating, _ in call["ratings"]] == [(3, 4)]
    assert [movie_id for movie_id, _ in call["views"]] == [9]
    assert call["exclude"] == {3}
    assert call["n"] == 12
    # The pack gave two films; shared tags fill the rest, never repeating one.
    assert len(set(ids_of(recs))) == len(recs) == 10


@pytest.mark.parametrize("logged_in", [False, True])
def test_home_runs_at_most_four_statements(ml_app, ml_client, auth, logged_in):
    if logged_in:
        auth.register_and_login(ml_client)
        ml_client.put("/api/movies/50/rating", json={"rating": 5})
        ml_client.get("/api/movies/detail/181")
    ml_client.get("/api/movies/home")  # the catalogue index is loaded once

    n_statements, response = count_statements(
        ml_app, lambda: ml_client.get("/api/movies/home")
    )
    assert len(response.get_json()["recs"]) == 12
    # A visitor's home comes wholly from the in-memory catalogue and its cards.
    assert n_statements <= 4 if logged_in else n_statements == 0


def test_client_home_is_reused_until_the_history_changes(ml_app, ml_client, auth):
    auth.register_and_login(ml_client)
    ml_client.put("/api/movies/50/rating", json={"rating": 5})
    first = ids_of(ml_client.get("/api/movies/home").get_json()["recs"])

    # Nothing changed: the same page, from one statement (session check and history
    # fingerprint together).
    n_statements, response = count_statements(
        ml_app, lambda: ml_client.get("/api/movies/home")
    )
    assert ids_of(response.get_json()["recs"]) == first
    assert n_statements == 1

    # Rating a recommended film takes it off the very next page.
    assert (
        ml_client.put(f"/api/movies/{first[0]}/rating", json={"rating": 4}).status_code
        == 201
    )
    second = ids_of(ml_client.get("/api/movies/home").get_json()["recs"])
    assert first[0] not in second
    # Changing that rating (same count of ratings) is noticed too.
    ml_client.put(f"/api/movies/{first[0]}/rating", json={"rating": 1})
    n_statements, _ = count_statements(
        ml_app, lambda: ml_client.get("/api/movies/home")
    )
    assert n_statements == 3  # the check, then the ratings and the recent views


def test_deleting_a_rated_film_renews_its_raters_home(ml_app, ml_client, auth):
    user = auth.register_and_login(ml_client)
    ml_client.put("/api/movies/50/rating", json={"rating": 5})
    ml_client.get("/api/movies/home")
    n_statements, _ = count_statements(
        ml_app, lambda: ml_client.get("/api/movies/home")
    )
    assert n_statements == 1  # reused

    admin = ml_app.test_client()
    auth.login_admin(admin)
    added = admin.post("/api/admin/movies", json={"title": "Scratch (2024)"})
    film = added.get_json()["id"]
    assert (
        ml_client.put(f"/api/movies/{film}/rating", json={"rating": 4}).status_code
        == 201
    )
    ml_client.get("/api/movies/home")
    with ml_app.app_context():
        version = db.session.get(Client, user["id"]).history_version

    assert admin.delete(f"/api/admin/movies/{film}").get_json() == {"deleted": 1}
    with ml_app.app_context():
        assert db.session.get(Client, user["id"]).history_version == version + 1
    ml_app.test_client().get("/api/movies/home")  # a visitor reloads the catalogue
    # The rating went with the film: the page is computed again from what is left.
    n_statements, response = count_statements(
        ml_app, lambda: ml_client.get("/api/movies/home")
    )
    assert n_statements == 3
    assert film not in ids_of(response.get_json()["recs"])
    assert 50 not in ids_of(response.get_json()["recs"])  # still rated


VISITOR_REASONS = {"热门电影,很多人看过", "随机发现,换换口味"}


def personal_picks(response):
    """The personal part of a home page (the visitor filler is random)."""
    recs = response.get_json()["recs"]
    return [(c["id"], c["reason"]) for c in recs if c["reason"] not in VISITOR_REASONS]


def computed_afresh(app, client):
    app.extensions.get("personal_home_cache", {}).clear()
    return personal_picks(client.get("/api/movies/home"))


def test_clearing_history_then_viewing_again_renews_home(seeded, auth):
    client = seeded.test_client()
    auth.register_and_login(client)
    client.get("/api/movies/detail/4")  # Toy Story
    client.get("/api/movies/home")
    assert client.delete("/api/me/history").get_json() == {"deleted": 1}
    client.get("/api/movies/detail/9")  # Heat (SQLite may reuse the deleted id)

    served = personal_picks(client.get("/api/movies/home"))
    assert served == computed_afresh(seeded, client)
    assert served and all(reason == "因为你喜欢动作类电影" for _, reason in served)


def test_a_reused_client_id_never_gets_the_old_accounts_home(seeded, auth):
    first = seeded.test_client()
    old = auth.register_and_login(first)
    first.put("/api/movies/3/rating", json={"rating": 5})  # Alien: sci-fi
    first.get("/api/movies/home")
    admin = seeded.test_client()
    auth.login_admin(admin, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert admin.delete(f"/api/admin/clients/{old['id']}").status_code == 200

    second = seeded.test_client()
    auth.register_and_login(second)  # on SQLite it may get the deleted id back
    second.put("/api/movies/10/rating", json={"rating": 5})  # a Western
    served = personal_picks(second.get("/api/movies/home"))
    assert served == computed_afresh(seeded, second)
    assert all("科幻" not in reason for _, reason in served)


def test_a_cached_client_home_is_recomputed_after_the_catalogue_ttl(
    ml_app, ml_client, auth
):
    user = auth.register_and_login(ml_client)
    ml_client.put("/api/movies/50/rating", json={"rating": 5})
    ml_client.get("/api/movies/home")
    n_statements, _ = count_statements(
        ml_app, lambda: ml_client.get("/api/movies/home")
    )
    assert n_statements == 1

    cache = ml_app.extensions["personal_home_cache"]
    key, picks, made_at = cache[user["id"]]
    cache[user["id"]] = (key, picks, made_at - ml_app.config["CATALOGUE_TTL"] - 1)
    n_statements, _ = count_statements(
        ml_app, lambda: ml_client.get("/api/movies/home")
    )
    assert n_statements == 3  # the check, then the ratings and the recent views


# Detail ---------------------------------------------------------------------------


def test_detail_returns_the_film_and_related_by_shared_tags(seeded, seeded_client):
    response = seeded_client.get("/api/movies/detail/1")

    assert response.status_code == 200
    body = response.get_json()
    assert body["title"] == "Star Wars (1977)"
    assert body["tags"] == ["Action", "Sci-Fi"]
    assert body["score"] == 4.7
    assert body["rating_count"] == 3
    assert body["click_count"] == 1
    assert body["my_rating"] is None
    assert ids_of(body["related"]) == [2, 3, 9, 7]
    assert body["related"][0]["reason"] == "同为动作、科幻类电影"
    assert body["related"][1]["reason"] == "同为科幻类电影"


def test_detail_counts_clicks_and_footprints(seeded, seeded_client, auth, returning):
    seeded_client.get("/api/movies/detail/4")
    user = auth.register_and_login(seeded_client)
    seeded_client.put("/api/movies/4/rating", json={"rating": 2})
    body = seeded_client.get("/api/movies/detail/4").get_json()

    assert body["click_count"] == 2
    assert body["my_rating"] == 2
    with seeded.app_context():
        clicks = db.session.get(Movie, 4).click_count
    assert clicks == 2
    assert count_rows(seeded, Footprint, client_id=user["id"]) == 1


REFUSE_FOOTPRINTS = {
    "sqlite": "CREATE TRIGGER no_more_views BEFORE INSERT ON footprint"
    " BEGIN SELECT RAISE(ABORT, 'no more views'); END",
    "mysql": "CREATE TRIGGER no_more_views BEFORE INSERT ON footprint FOR EACH ROW"
    " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no more views'",
}


def test_a_view_is_counted_with_its_footprint_or_not_at_all(
    seeded, seeded_client, auth, returning
):
    user = auth.register_and_login(seeded_client)
    assert seeded_client.get("/api/movies/detail/4").get_json()["click_count"] == 1
    with seeded.app_context():
        dialect = db.engine.dialect.name
        with db.engine.begin() as connection:
            connection.exec_driver_sql(REFUSE_FOOTPRINTS[dialect])

    failed = seeded_client.get("/api/movies/detail/4")

    with seeded.app_context():
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER no_more_views")
        clicks = db.session.get(Movie, 4).click_count
    # SQLite reports a constraint (409); MariaDB's SIGNAL is a server error (503).
    expected = {"sqlite": (409, "conflict"), "mysql": (503, "database_unavailable")}
    assert (failed.status_code, failed.get_json()["error"]["code"]) == expected[dialect]
    # The click that ran before the refused footprint was rolled back with it.
    assert clicks == 1
    assert count_rows(seeded, Footprint, client_id=user["id"]) == 1
    assert seeded_client.get("/api/movies/detail/4").get_json()["click_count"] == 2
    assert count_rows(seeded, Footprint, client_id=user["id"]) == 2


def test_a_session_ended_elsewhere_sees_films_as_a_visitor(seeded, auth, returning):
    browser = seeded.test_client()
    user = auth.register_and_login(browser, "viewer", "first-pass-1")
    browser.put("/api/movies/4/rating", json={"rating": 2})
    for _ in range(2):  # the second view takes the one-transaction path
        assert browser.get("/api/movies/detail/4").get_json()["my_rating"] == 2
    other_device = seeded.test_client()
    auth.login(other_device, "viewer", "first-pass-1")
    changed = other_device.put(
        "/api/auth/password",
        json={"old_password": "first-pass-1", "new_password": "second-pass-2"},
    )
    assert changed.status_code == 200

    body = browser.get("/api/movies/detail/4").get_json()

    # Counted as a visitor's click: no rating shown, no footprint written.
    assert body["my_rating"] is None
    assert body["click_count"] == 3
    assert count_rows(seeded, Footprint, client_id=user["id"]) == 2
    assert browser.get("/api/auth/me").status_code == 401
    # The device that changed the password goes on as the client.
    body = other_device.get("/api/movies/detail/4").get_json()
    assert (body["my_rating"], body["click_count"]) == (2, 4)
    assert count_rows(seeded, Footprint, client_id=user["id"]) == 3


def test_a_disabled_account_sees_films_as_a_visitor(seeded, auth, returning):
    browser = seeded.test_client()
    user = auth.register_and_login(browser)
    browser.get("/api/movies/detail/5")
    browser.get("/api/movies/detail/5")
    with seeded.app_context():
        db.session.get(Client, user["id"]).is_active = False
        db.session.commit()

    body = browser.get("/api/movies/detail/5").get_json()

    assert body["click_count"] == 3
    assert body["my_rating"] is None
    assert count_rows(seeded, Footprint, client_id=user["id"]) == 2


def test_detail_of_an_unknown_film_is_404(seeded_client):
    response = seeded_client.get("/api/movies/detail/999")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "movie_not_found"
    assert response.get_json()["error"]["message"] == "电影不存在"


def test_detail_related_come_from_the_pack_first(seeded_client, fake_pack):
    related = seeded_client.get("/api/movies/detail/1").get_json()["related"]
    assert ids_of(related) == [10, 8, 2, 3, 9, 7]
    assert related[0]["reason"] == "喜欢这部的观众也喜欢"


@pytest.mark.parametrize("logged_in", [False, True])
def test_detail_runs_at_most_five_statements(
    ml_app, ml_client, auth, logged_in, returning
):
    if logged_in:
        user = auth.register_and_login(ml_client)
        ml_client.put("/api/movies/50/rating", json={"rating": 4})
    # Related films' cards are cached from here on.
    clicks = ml_client.get("/api/movies/detail/50").get_json()["click_count"]

    with StatementCounter() as counter:
        response = ml_client.get("/api/movies/detail/50")
    body = response.get_json()
    assert response.status_code == 200
    assert len(body["related"]) == 6
    assert (body["click_count"], body["my_rating"]) == (
        clicks + 1,
        4 if logged_in else None,
    )
    # The click, then the client's footprint returning the film's counts and the
    # client's rating (or, without RETURNING, a read after them); a visitor's
    # click and read. On MariaDB they travel in one round trip.
    expected = 2 if not logged_in or returning else 3
    assert len(counter.statements) == expected
    if ml_app.config["SQLALCHEMY_DATABASE_URI"].startswith("mysql"):
        assert counter.round_trips == 1
    if logged_in:
        assert count_rows(ml_app, Footprint, client_id=user["id"]) == 2


# Search and tags ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [4, 1, 2, 8, 3, 6, 9, 5, 7, 10, 11]),
        ("q=mark hamill", [1, 2]),
        ("q=MARK", [1, 2]),
        ("q=李安", [7]),
        ("q=藏龙", [7]),
        ("q=clint", [6, 10]),
        ("q=100%", [11]),
        ("q=_", [11]),
        ("tag=Sci-Fi", [1, 2, 3]),
        ("tag=Fi", []),
        ("year_from=1990&year_to=1995", [4, 6, 9, 5]),
        ("tag=Western&year_to=1970", [10]),
        ("sort=score", [1, 8, 2, 4, 3, 6, 9, 5, 7, 10, 11]),
        ("sort=newest", [7, 9, 4, 5, 6, 2, 3, 1, 10, 8, 11]),
        ("sort=title&q=a", [5, 3, 8, 2, 9, 1, 10, 4, 6]),
    ],
)
def test_search_filters_and_sorts(read_only_client, query, expected):
    response = read_only_client.get(f"/api/movies?{query}")

    assert response.status_code == 200
    body = response.get_json()
    assert ids_of(body["items"]) == expected
    assert body["total"] == len(expected)
    assert (body["page"], body["per_page"]) == (1, 20)


def test_search_pages(read_only_client):
    body = read_only_client.get("/api/movies?per_page=4&page=3").get_json()
    assert ids_of(body["items"]) == [7, 10, 11]
    assert (body["total"], body["page"], body["per_page"]) == (11, 3, 4)


@pytest.mark.parametrize(
    "query",
    ["per_page=101", "per_page=0", "page=0", "sort=random", "year_from=abc"],
)
def test_search_rejects_bad_parameters(read_only_client, query):
    response = read_only_client.get(f"/api/movies?{query}")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == [query.split("=")[0]]


def test_tags_are_counted(read_only_client):
    response = read_only_client.get("/api/movies/tags")
    assert response.status_code == 200
    assert response.get_json()[:8] == [
        {"tag": "Action", "count": 4},
        {"tag": "Drama", "count": 3},
        {"tag": "Sci-Fi", "count": 3},
        {"tag": "Animation", "count": 2},
        {"tag": "Children's", "count": 2},
        {"tag": "Romance", "count": 2},
        {"tag": "Western", "count": 2},
        {"tag": "Comedy", "count": 1},
    ]
    assert len(response.get_json()) == 12


def test_tags_on_the_real_catalogue(ml_client):
    tags = {
        item["tag"]: item["count"] for item in ml_client.get("/api/movies/tags").json
    }
    assert tags["Drama"] == 725
    assert tags["Comedy"] == 505
    assert len(tags) == 19


# Ratings --------------------------------------------------------------------------


def test_rating_creates_changes_and_removes(seeded, seeded_client, auth):
    auth.register_and_login(seeded_client)

    created = seeded_client.put("/api/movies/2/rating", json={"rating": 1})
    assert created.status_code == 201
    body = created.get_json()
    assert (body["movie_id"], body["rating"], body["created"]) == (2, 1, True)
    assert (body["score"], body["rating_count"]) == (3.0, 3)
    assert movie_row(seeded, 2) == (pytest.approx(3.0), 3)

    changed = seeded_client.put("/api/movies/2/rating", json={"rating": 5})
    assert changed.status_code == 200
    assert (changed.json["score"], changed.json["rating_count"]) == (4.33, 3)
    assert changed.json["created"] is False
    assert movie_row(seeded, 2) == (pytest.approx(13 / 3), 3)

    removed = seeded_client.delete("/api/movies/2/rating")
    assert removed.status_code == 200
    assert (removed.json["score"], removed.json["rating_count"]) == (4.0, 2)
    assert movie_row(seeded, 2) == (pytest.approx(4.0), 2)

    again = seeded_client.delete("/api/movies/2/rating")
    assert again.status_code == 404
    assert again.json["error"]["code"] == "rating_not_found"


def test_first_rating_of_an_unrated_film_sets_its_score(seeded, seeded_client, auth):
    auth.register_and_login(seeded_client)
    seeded_client.put("/api/movies/7/rating", json={"rating": 4})
    assert movie_row(seeded, 7) == (pytest.approx(4.0), 1)
    seeded_client.delete("/api/movies/7/rating")
    assert movie_row(seeded, 7) == (None, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 0},
        {"rating": 6},
        {"rating": "5"},
        {"rating": 4.5},
        {"rating": True},
        {"rating": None},
        {},
        {"rating": 4, "comment": "好看"},
    ],
)
def test_rating_rejects_bad_values(read_only_app, read_only_client, auth, body):
    auth.register_and_login(read_only_client)
    response = read_only_client.put("/api/movies/2/rating", json=body)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert movie_row(read_only_app, 2) == (pytest.approx(4.0), 2)


def test_rating_needs_a_client(seeded_client, auth):
    logged_out = seeded_client.put("/api/movies/2/rating", json={"rating": 3})
    assert logged_out.status_code == 401
    assert logged_out.json["error"]["code"] == "login_required"
    auth.login_admin(seeded_client, ADMIN_USERNAME, ADMIN_PASSWORD)
    as_admin = seeded_client.put("/api/movies/2/rating", json={"rating": 3})
    assert as_admin.status_code == 403
    assert as_admin.json["error"]["code"] == "client_only"


def test_rating_an_unknown_film_is_404(seeded_client, auth):
    auth.register_and_login(seeded_client)
    response = seeded_client.put("/api/movies/999/rating", json={"rating": 3})
    assert response.status_code == 404
    assert response.json["error"]["code"] == "movie_not_found"


# My ratings and history -----------------------------------------------------------


def test_my_ratings_newest_first_and_paged(seeded_client, auth):
    auth.register_and_login(seeded_client)
    for movie_id, rating in [(1, 5), (2, 4), (3, 2)]:
        seeded_client.put(f"/api/movies/{movie_id}/rating", json={"rating": rating})

    body = seeded_client.get("/api/me/ratings?per_page=2").get_json()
    assert body["total"] == 3
    assert [(item["movie"]["id"], item["rating"]) for item in body["items"]] == [
        (3, 2),
        (2, 4),
    ]
    second = seeded_client.get("/api/me/ratings?per_page=2&page=2").get_json()
    assert [item["movie"]["id"] for item in second["items"]] == [1]


def test_history_lists_distinct_films_newest_first_and_clears(
    seeded, seeded_client, auth
):
    user = auth.register_and_login(seeded_client)
    for movie_id in (1, 2, 1, 3):
        seeded_client.get(f"/api/movies/detail/{movie_id}")

    body = seeded_client.get("/api/me/history").get_json()
    assert body["total"] == 3
    assert [(i["movie"]["id"], i["views"]) for i in body["items"]] == [
        (3, 1),
        (1, 2),
        (2, 1),
    ]
    assert (
        seeded_client.get("/api/me/history?per_page=1&page=2").json["items"][0][
            "movie"
        ]["id"]
        == 1
    )

    cleared = seeded_client.delete("/api/me/history")
    assert cleared.status_code == 200
    assert cleared.get_json() == {"deleted": 4}
    assert seeded_client.get("/api/me/history").json["total"] == 0
    assert count_rows(seeded, Footprint, client_id=user["id"]) == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/me/ratings"),
        ("get", "/api/me/history"),
        ("delete", "/api/me/history"),
    ],
)
def test_my_pages_need_login(seeded_client, method, path):
    response = getattr(seeded_client, method)(path)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "login_required"


def test_ratings_on_real_data_keep_score_in_line(ml_app, ml_client, auth):
    auth.register_and_login(ml_client)
    ml_client.put("/api/movies/100/rating", json={"rating": 1})
    with ml_app.app_context():
        expected = db.session.execute(
            select(func.count(), func.avg(Rating.rating)).where(Rating.movie_id == 100)
        ).one()
        movie = db.session.get(Movie, 100)
        assert movie.rating_count == expected[0]
        assert movie.score == pytest.approx(float(expected[1]), abs=1e-3)


# With a real model pack -----------------------------------------------------------


@pytest.fixture(scope="module")
def pack_app(ml_db_url, tmp_path_factory):
    """The app on the MovieLens import with a pack fitted on it (no evaluation)."""
    from conftest import make_app

    from recommender import Recommender
    from train_evaluate_model import read_database

    movies, ratings = read_database(ml_db_url)
    tmp = tmp_path_factory.mktemp("movies_pack")
    Recommender().fit(ratings, movies).to_pack().save(tmp / "model.joblib")
    application = make_app(
        ml_db_url,
        MODEL_PATH=str(tmp / "model.joblib"),
        POSTER_DIR=str(tmp / "posters"),
    )
    yield application
    with application.app_context():
        dispose_engines()


def test_detail_related_come_from_the_real_pack(pack_app):
    with pack_app.app_context():
        pack = pack_app.extensions["recommender"].get()
        assert pack is not None
        expected = [m for m, _ in pack.similar_items(50, n=6, kind="hybrid")]

    related = pack_app.test_client().get("/api/movies/detail/50").json["related"]
    assert ids_of(related) == expected
    assert all(card["reason"] for card in related)


def test_home_from_the_real_pack_follows_new_ratings(pack_app, auth):
    client = pack_app.test_client()
    auth.register_and_login(client)
    for movie_id in (50, 172, 181):  # Star Wars and its sequels
        client.put(f"/api/movies/{movie_id}/rating", json={"rating": 5})

    first = client.get("/api/movies/home").json["recs"]
    assert len(first) == 12
    assert {50, 172, 181}.isdisjoint(ids_of(first))
    assert all(card["reason"] for card in first)

    for movie_id in (1, 71, 95, 99):  # Toy Story, Lion King, Aladdin, Snow White
        client.put(f"/api/movies/{movie_id}/rating", json={"rating": 5})
    for movie_id in (50, 172, 181):
        client.put(f"/api/movies/{movie_id}/rating", json={"rating": 1})
    second = client.get("/api/movies/home").json["recs"]
    assert {1, 71, 95, 99, 50, 172, 181}.isdisjoint(ids_of(second))
    assert ids_of(second) != ids_of(first)
    with pack_app.app_context():
        animated = set(
            db.session.scalars(select(Movie.id).where(Movie.tags.contains("Animation")))
        )
    assert len(animated & set(ids_of(second))) > len(animated & set(ids_of(first)))


def test_home_and_detail_statements_with_the_real_pack(pack_app, auth):
    client = pack_app.test_client()
    auth.register_and_login(client)
    client.put("/api/movies/50/rating", json={"rating": 5})
    client.get("/api/movies/home")

    n_home, _ = count_statements(pack_app, lambda: client.get("/api/movies/home"))
    n_detail, _ = count_statements(
        pack_app, lambda: client.get("/api/movies/detail/172")
    )
    assert n_home <= 4
    assert n_detail <= 5
