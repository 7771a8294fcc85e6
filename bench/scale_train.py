"""Train the recommender on synthetic long-tail ratings and print time and memory.

Usage::

    .venv/bin/python bench/scale_train.py [--ratings 1M] [--films N] [--users N]
                                          [--seed 0] [--save PATH]

Sizes default to MovieLens-25M proportions: 25M ratings use 60,000 films and
160,000 users; smaller runs scale films and users down. Ratings come from a
low-rank model plus noise on Zipf-like film popularity and log-normal user
activity (at least 20 ratings per user), so the neighbour lists have real work
to do. Prints the time of each training stage, the peak resident memory
(``ru_maxrss``) and the pack size.
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recommender import RatingData, Recommender  # noqa: E402


def parse_count(text):
    """Parse 25M, 1.5M, 500k or a plain integer."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def make_ratings(n_ratings, n_films, n_users, seed=0, n_factors=8):
    """Return synthetic :class:`RatingData` with long-tail popularity."""
    rng = np.random.default_rng(seed)
    rank = np.arange(1, n_films + 1, dtype=np.float64)
    popularity = 1.0 / (rank + 10.0) ** 1.1
    popularity /= popularity.sum()
    film_of_rank = rng.permutation(n_films)

    activity = rng.lognormal(0.0, 1.1, n_users)
    activity = 20 + activity / activity.sum() * max(n_ratings - 20 * n_users, 0)
    activity = np.minimum(activity.astype(np.int64), n_films // 2)

    # Sample with replacement, drop repeated (user, film) pairs, top up.
    users = np.repeat(np.arange(n_users, dtype=np.int64), activity)
    films = film_of_rank[rng.choice(n_films, size=len(users), p=popularity)]
    key = np.unique(users * n_films + films)
    while len(key) < n_ratings:
        extra = int((n_ratings - len(key)) * 1.3) + 1000
        users = rng.choice(n_users, size=extra, p=activity / activity.sum())
        films = film_of_rank[rng.choice(n_films, size=extra, p=popularity)]
        key = np.union1d(key, users * n_films + films)
    if len(key) > n_ratings:
        key = np.sort(rng.choice(key, n_ratings, replace=False))
    users = key // n_films
    films = key % n_films
    del key

    user_taste = rng.normal(0, 0.45, (n_users, n_factors)).astype(np.float32)
    film_taste = rng.normal(0, 0.45, (n_films, n_factors)).astype(np.float32)
    user_bias = rng.normal(0, 0.35, n_users).astype(np.float32)
    film_bias = rng.normal(0, 0.45, n_films).astype(np.float32)
    ratings = np.empty(len(users), dtype=np.float32)
    step = 2_000_000
    for start in range(0, len(users), step):
        stop = min(len(users), start + step)
        u, f = users[start:stop], films[start:stop]
        value = 3.6 + user_bias[u] + film_bias[f]
        value += np.einsum("ij,ij->i", user_taste[u], film_taste[f])
        value += rng.normal(0, 0.7, stop - start).astype(np.float32)
        ratings[start:stop] = np.clip(np.rint(value), 1, 5)
    stamps = 1.5e9 + rng.random(len(users)) * 3e8
    return RatingData(users + 1, films + 1, ratings, stamps)


def peak_memory_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ratings", default="1M", help="number of ratings")
    parser.add_argument("--films", type=int, help="default: 60,000 x ratings/25M")
    parser.add_argument("--users", type=int, help="default: 160,000 x ratings/25M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="also save the pack here (default: temp)")
    args = parser.parse_args(argv)

    n_ratings = parse_count(args.ratings)
    share = n_ratings / 25_000_000
    n_films = args.films or max(2_000, int(60_000 * share**0.5))
    n_users = args.users or max(5_000, int(160_000 * share))
    started = time.perf_counter()
    data = make_ratings(n_ratings, n_films, n_users, args.seed)
    counts = np.bincount(data.user_ids)
    print(
        f"data: {len(data):,} ratings, {len(np.unique(data.user_ids)):,} users, "
        f"{len(np.unique(data.movie_ids)):,} films rated of {n_films:,}; "
        f"max user {counts.max():,} ratings; made in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    movies = [
        {"id": i, "title": f"Film {i}", "tags": ("Drama", "Comedy", "Action")[i % 3]}
        for i in range(1, n_films + 1)
    ]
    stages = {}

    def progress(stage, fraction):
        now = time.perf_counter()
        first, _ = stages.get(stage, (now, now))
        stages[stage] = (first, now)

    memory_before = peak_memory_gb()
    started = time.perf_counter()
    model = Recommender().fit(data, movies, progress=progress)
    fit_seconds = time.perf_counter() - started
    pack = model.to_pack()
    with tempfile.TemporaryDirectory() as folder:
        path = args.save or str(Path(folder) / "model.joblib")
        started = time.perf_counter()
        pack.save(path)
        save_seconds = time.perf_counter() - started
        size = Path(path).stat().st_size
    for stage, (first, last) in stages.items():
        print(f"  {stage:<20} {last - first:8.1f} s")
    print(
        f"train {fit_seconds:.1f} s, save {save_seconds:.1f} s, pack "
        f"{size / 1e6:.1f} MB, peak memory {peak_memory_gb():.2f} GB "
        f"(data alone {memory_before:.2f} GB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
