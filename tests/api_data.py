"""Test data for the API tests: a tiny hand-made catalogue and a fake model pack."""

from collections import namedtuple
from datetime import date, datetime

from werkzeug.security import generate_password_hash

from models import Admin, Client, Movie, Rating, db, dispose_engines

ADMIN_USERNAME = "boss"
ADMIN_PASSWORD = "boss-pass-2026"

# id: (title, tags, director, actors, release date)
FILMS = {
    1: (
        "Star Wars (1977)",
        "Action,Sci-Fi",
        "George Lucas",
        "Mark Hamill",
        (1977, 5, 25),
    ),
    2: (
        "Empire Strikes Back (1980)",
        "Action,Sci-Fi",
        "Irvin Kershner",
        "Mark Hamill",
        (1980, 5, 21),
    ),
    3: (
        "Alien (1979)",
        "Horror,Sci-Fi",
        "Ridley Scott",
        "Sigourney Weaver",
        (1979, 5, 25),
    ),
    4: (
        "Toy Story (1995)",
        "Animation,Children's,Comedy",
        "John Lasseter",
        "Tom Hanks",
        (1995, 11, 22),
    ),
    5: (
        "Aladdin (1992)",
        "Animation,Children's,Musical",
        "Ron Clements",
        "Robin Williams",
        (1992, 11, 25),
    ),
    6: (
        "Unforgiven (1992)",
        "Drama,Western",
        "Clint Eastwood",
        "Clint Eastwood",
        (1992, 8, 7),
    ),
    7: (
        "卧虎藏龙 (2000)",
        "Action,Drama,Romance",
        "李安",
        "周润发, 章子怡",
        (2000, 7, 7),
    ),
    8: (
        "Casablanca (1942)",
        "Drama,Romance",
        "Michael Curtiz",
        "Humphrey Bogart",
        (1942, 11, 26),
    ),
    9: (
        "Heat (1995)",
        "Action,Crime,Thriller",
        "Michael Mann",
        "Al Pacino",
        (1995, 12, 15),
    ),
    10: (
        "The Good, the Bad and the Ugly (1966)",
        "Western",
        "Sergio Leone",
        "Clint Eastwood",
        (1966, 12, 23),
    ),
    11: ("Untitled 100% Film_", "", None, None, None),
}

# (dataset user, film, rating)
RATINGS = [
    (1, 1, 5), (2, 1, 4), (3, 1, 5),
    (1, 2, 4), (2, 2, 4),
    (1, 3, 3),
    (1, 4, 5), (2, 4, 3), (3, 4, 4), (4, 4, 2),
    (2, 6, 2),
    (3, 8, 5), (4, 8, 4),
    (4, 9, 1),
]  # fmt: skip


def seed(app):
    """Fill an empty schema: films, four dataset users and their ratings, an admin."""
    with app.app_context():
        for movie_id, (title, tags, director, actors, released) in FILMS.items():
            db.session.add(
                Movie(
                    id=movie_id,
                    title=title,
                    tags=tags,
                    director=director,
                    actors=actors,
                    release_date=date(*released) if released else None,
                    rating_count=0,
                    click_count=0,
                )
            )
        for user in range(1, 5):
            db.session.add(
                Client(
                    id=user,
                    username=f"ml_user_{user}",
                    source="movielens",
                    created_at=datetime(1998, 1, 1),
                    is_active=True,
                )
            )
        db.session.add(
            Admin(
                username=ADMIN_USERNAME,
                password_hash=generate_password_hash(ADMIN_PASSWORD),
            )
        )
        db.session.flush()
        for user, movie_id, rating in RATINGS:
            db.session.add(
                Rating(
                    client_id=user,
                    movie_id=movie_id,
                    rating=rating,
                    rated_at=datetime(1998, 1, 1, 0, 0, movie_id),
                )
            )
        db.session.flush()
        from api.movies import refresh_movie_rating

        refresh_movie_rating(FILMS)
        db.session.commit()


def movie_row(app, movie_id):
    with app.app_context():
        movie = db.session.get(Movie, movie_id)
        return None if movie is None else (movie.score, movie.rating_count)


def count_rows(app, model, **filters):
    from sqlalchemy import func, select

    with app.app_context():
        query = select(func.count()).select_from(model)
        for key, value in filters.items():
            query = query.where(getattr(model, key) == value)
        return db.session.scalar(query)


def seeded_app(backend, tmp_path_factory, name):
    """Build an app on its own seeded database, for module-scoped read-only tests.

    Its MariaDB database (``<test db>_<name>``) is separate from the per-test one,
    which other tests drop and recreate. Returns (app, teardown).
    """
    from conftest import make_app, mysql_url, require_mysql

    tmp = tmp_path_factory.mktemp(name)
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'catalogue.db'}"
    else:
        url = mysql_url(f"_{name}")
        require_mysql(url)
    app = make_app(
        url, MODEL_PATH=str(tmp / "model.joblib"), POSTER_DIR=str(tmp / "posters")
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
    seed(app)

    def teardown():
        with app.app_context():
            db.session.remove()
            db.drop_all()
            dispose_engines()

    return app, teardown


Recommendation = namedtuple("Recommendation", "movie_id score reason evidence")


class FakePack:
    """Implements the model pack's interface with fixed answers.

    Film 999 stands for a film the pack knows but the catalogue lost (deleted).
    """

    metrics = {"rmse": 0.91, "eval_date": "2026-12-01T00:00:00+00:00"}
    meta = {"version": 1}

    def __init__(self):
        self.recommend_calls = []

    def similar_items(self, movie_id, n=10, kind="hybrid"):
        return [(999, 0.95), (10, 0.9), (8, 0.8)][:n] if movie_id == 1 else []

    def recommend(self, ratings, views=(), n=12, algorithm="hybrid", exclude=()):
        self.recommend_calls.append(
            {"ratings": ratings, "views": views, "n": n, "exclude": set(exclude)}
        )
        return [
            Recommendation(999, 1.0, "已删除的电影", {"kind": "similar"}),
            Recommendation(5, 0.9, "因为你看过《Alien》", {"kind": "similar"}),
            Recommendation(6, 0.5, "热门", {"kind": "popular"}),
        ]

    def predict(self, ratings, movie_id):
        return 4.0

    def popular(self, n, exclude=()):
        return [4, 1, 2][:n]


class FakeHolder:
    def __init__(self, pack):
        self.pack = pack

    def get(self):
        return self.pack

    def status(self):
        return {"loaded": self.pack is not None}
