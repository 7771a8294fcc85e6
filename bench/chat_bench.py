"""Time the AI movie expert's own work: the catalogue index, grounding, offline answers.

Imports MovieLens 100k into a temporary SQLite database (or uses --database-url),
then prints: the index build time (median of five), the time to find the films,
people, genres and years in a question (p50 and p99 over a set of questions), and
the p50/p99 of whole offline requests to POST /api/ai/chat through the test client
(validation, grounding, SQL, JSON), which is also what the model path spends before
calling the provider. The provider's own latency is not measured here.

Usage: python bench/chat_bench.py [--database-url URL] [--rounds N]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))

QUESTIONS = [
    "Any films like Heat?",
    "What are the best comedies of 1994?",
    "有哪些希区柯克导演的电影?",
    "推荐几部90年代的科幻片",
    "Tell me about Toy Story and The Godfather",
    "Love stories with Tom Hanks",
    "我想看类似盗火线的动作片",
    "随便推荐点什么",
    "Is Seven better than The Silence of the Lambs? " * 4,
    "推荐" + "一部好看的电影," * 120,
]


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", help="an imported database (default: a new one)"
    )
    parser.add_argument("--rounds", type=int, default=20, help="requests per question")
    args = parser.parse_args(argv)

    from app import create_app
    from assistant import CatalogueIndex
    from config import engine_options, testing_settings
    from init_dataset import import_dataset
    from models import db

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url
        if url is None:
            url = f"sqlite:///{tmp}/movies.db"
            import_dataset(
                url,
                SHARED / "ml-100k",
                SHARED / "ml-100k-details.csv",
                reset=True,
                admin_username="root",
                admin_password="bench-password",
                progress=False,
            )
        app = create_app(
            testing_settings(
                SQLALCHEMY_DATABASE_URI=url,
                SQLALCHEMY_ENGINE_OPTIONS=engine_options(url),
                MODEL_PATH=f"{tmp}/none.joblib",
            )
        )
        with app.app_context():
            builds = []
            for _ in range(5):
                started = time.perf_counter()
                index = CatalogueIndex.build()
                builds.append(time.perf_counter() - started)
            finds = []
            for _ in range(args.rounds):
                for question in QUESTIONS:
                    started = time.perf_counter()
                    index.find(question)
                    finds.append(time.perf_counter() - started)

        client = app.test_client()
        client.post("/api/ai/chat", json={"message": "warm up"})
        requests = []
        for _ in range(args.rounds):
            for question in QUESTIONS:
                started = time.perf_counter()
                response = client.post("/api/ai/chat", json={"message": question})
                requests.append(time.perf_counter() - started)
                assert response.status_code == 200, response.get_data(as_text=True)
        with app.app_context():
            db.engine.dispose()

    print(f"database: {url.split(':')[0]}")
    print(
        f"index build (1,682 films, their directors and casts): "
        f"median {statistics.median(builds) * 1000:.0f} ms"
    )
    print(
        f"find mentions in a question: p50 {percentile(finds, 0.5) * 1000:.3f} ms, "
        f"p99 {percentile(finds, 0.99) * 1000:.3f} ms"
    )
    print(
        f"offline POST /api/ai/chat: p50 {percentile(requests, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(requests, 0.99) * 1000:.1f} ms ({len(requests)} requests)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
