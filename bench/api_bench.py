"""Time the main film routes in-process (Flask test client), with and without a pack.

Imports MovieLens 100k into a temporary SQLite database (or uses ``--database-url``),
optionally fits a pack, then prints the median and 95th percentile per route and the
SQL statements each one runs. No server or network: this measures the app's own
work, not HTTP.

    .venv/bin/python bench/api_bench.py [--database-url URL] [--requests 200]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402

from app import create_app  # noqa: E402
from config import engine_options, testing_settings  # noqa: E402
from models import db  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PASSWORD = "bench-password-1"


def build_app(database_url, model_path):
    settings = testing_settings(
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
        MODEL_PATH=str(model_path),
    )
    return create_app(settings)


def measure(app, client, path, n_requests):
    statements = []

    def record(*args):
        statements.append(args[2])

    client.get(path)
    timings = []
    with app.app_context():
        engine = db.engine
    for index in range(n_requests):
        if index == 0:
            event.listen(engine, "before_cursor_execute", record)
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        if index == 0:
            event.remove(engine, "before_cursor_execute", record)
        assert response.status_code == 200, response.get_json()
    timings.sort()
    p95 = timings[int(len(timings) * 0.95) - 1]
    return statistics.median(timings), p95, len(statements)


def run(app, label, n_requests):
    visitor = app.test_client()
    member = app.test_client()
    username = f"bench_{int(time.time() * 1000)}"
    member.post("/api/auth/register", json={"username": username, "password": PASSWORD})
    member.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    for movie_id, rating in [(50, 5), (172, 5), (1, 4), (127, 5), (98, 4)]:
        member.put(f"/api/movies/{movie_id}/rating", json={"rating": rating})
    member.get("/api/movies/detail/181")

    routes = [
        ("home (visitor)", visitor, "/api/movies/home"),
        ("home (client)", member, "/api/movies/home"),
        ("detail (visitor)", visitor, "/api/movies/detail/50"),
        ("detail (client)", member, "/api/movies/detail/50"),
        ("search q=star", visitor, "/api/movies?q=star"),
        ("list sort=score", visitor, "/api/movies?sort=score&per_page=20"),
        ("tags", visitor, "/api/movies/tags"),
    ]
    print(f"\n{label}: median / p95 ms over {n_requests} requests, SQL statements")
    for name, client, path in routes:
        median, p95, n_statements = measure(app, client, path, n_requests)
        print(f"  {name:<18} {median:7.2f} {p95:7.2f}   {n_statements}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="an imported database (default: fresh)")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url
        if database_url is None:
            from init_dataset import import_dataset

            database_url = f"sqlite:///{tmp}/bench.db"
            import_dataset(
                database_url,
                DATA / "ml-100k",
                DATA / "ml-100k-details.csv",
                reset=True,
                progress=False,
            )
        model_path = Path(tmp) / "model.joblib"
        run(
            build_app(database_url, model_path),
            "no pack (tags fallback)",
            args.requests,
        )

        from recommender import Recommender
        from train_evaluate_model import read_database

        movies, ratings = read_database(database_url)
        Recommender().fit(ratings, movies).to_pack().save(model_path)
        run(build_app(database_url, model_path), "with a fitted pack", args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
