"""Time the recommender at MovieLens 100k size and print the figures.

Usage::

    .venv/bin/python bench/recommender_bench.py [--data ../shared/data/ml-100k]
                                                [--queries 2000]

Prints: the full train-and-evaluate time (20% held-out evaluation, then the
final fit, as ``train_evaluate_model.py`` does), the pack size, and p50/p99
latencies of ``similar_items`` and of ``recommend`` for users with 50 ratings,
``predict`` and a pack load, on the memory-mapped pack the app would hold.
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import train_evaluate_model as trainer  # noqa: E402
from recommender import load_pack  # noqa: E402


def percentiles(samples):
    """Return (p50, p99) in milliseconds."""
    values = np.array(samples) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def timed(function, arguments):
    samples = []
    for args in arguments:
        started = time.perf_counter()
        function(*args)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    shared = os.environ.get("SHARED_DATA_DIR") or ROOT.parent / "shared" / "data"
    parser.add_argument("--data", default=str(Path(shared) / "ml-100k"))
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args(argv)

    folder = Path(args.data)
    ratings = trainer.read_ratings_file(folder / "u.data")
    movies = trainer.read_movielens_items(folder)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.joblib"
        started = time.perf_counter()
        metrics = trainer.train(None, path, ratings=ratings, movies=movies)
        train_seconds = time.perf_counter() - started
        size = path.stat().st_size
        started = time.perf_counter()
        pack = load_pack(path)
        load_ms = (time.perf_counter() - started) * 1000

        # Users with at least 50 ratings, each reduced to 50 of them.
        counts = np.bincount(ratings.user_ids.astype(int))
        users = np.flatnonzero(counts >= 50)
        histories = []
        for user in rng.choice(users, size=min(200, len(users)), replace=False):
            mask = ratings.user_ids == user
            pick = rng.choice(np.flatnonzero(mask), 50, replace=False)
            histories.append(
                [
                    (
                        int(ratings.movie_ids[i]),
                        int(ratings.ratings[i]),
                        datetime.fromtimestamp(float(ratings.timestamps[i])),
                    )
                    for i in pick
                ]
            )
        films = rng.choice(pack.item_ids, size=args.queries)
        queries = [histories[i % len(histories)] for i in range(args.queries)]

        for _ in range(50):  # warm up caches and lazy imports
            pack.recommend(queries[0], n=12)
            pack.similar_items(int(films[0]))
        similar = {
            kind: timed(pack.similar_items, [(int(m), 10, kind) for m in films])
            for kind in ("hybrid", "content", "cf")
        }
        recommend = {
            algorithm: timed(
                lambda h, a=algorithm: pack.recommend(h, n=12, algorithm=a),
                [(h,) for h in queries],
            )
            for algorithm in ("hybrid", "itemcf", "content", "popular")
        }
        predict = timed(
            pack.predict, [(h, int(m)) for h, m in zip(queries, films, strict=True)]
        )

    print(
        f"ML-100k train + evaluation: {train_seconds:.1f} s; pack "
        f"{size / 1e6:.2f} MB; load {load_ms:.0f} ms"
    )
    print(
        f"  held-out 20%: RMSE {metrics['rmse']:.4f}, "
        f"NDCG@10 {metrics['ndcg_at_10']:.4f}, "
        f"coverage@10 {metrics['coverage_at_10']:.4f}"
    )
    print(f"latency over {args.queries} queries (ms)      p50      p99")
    for kind, (p50, p99) in similar.items():
        print(f"  similar_items kind={kind:<8}         {p50:7.3f}  {p99:7.3f}")
    for algorithm, (p50, p99) in recommend.items():
        print(f"  recommend 50 ratings {algorithm:<8}     {p50:7.3f}  {p99:7.3f}")
    print(f"  predict 50 ratings                  {predict[0]:7.3f}  {predict[1]:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
