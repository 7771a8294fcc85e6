"""Train and evaluate the recommender, then write the serving model pack.

Inputs: the films and ratings of the configured database (``DATABASE_URL``,
default ``data/movies.db``), or ``--ratings-file`` (u.data or a CSV with
``userId,movieId,rating,timestamp``), or ``--folds ml100k DIR`` for the GroupLens
u1-u5 folds.

Outputs: the pack at ``--output`` (default ``MODEL_PATH``, ``data/model.joblib``),
written atomically, with its metrics in ``<pack>.metrics.json`` beside it; with
``--metrics-out FILE`` the evaluation is also written there. With ``--folds`` the
pack (trained on all of u.data) is written only when ``--output`` is given.

Evaluation: 20% of each user's ratings held out (seeded), or the folds (mean of
five). Ranking protocol: relevant = held-out films rated 4 or more; candidates =
every film the user did not rate in training; top ``--k``. Our model (``hybrid``)
is compared with the other algorithms and with two baselines: most popular (by
rating count) and the movie-mean predictor (rank by raw mean rating).

Exit codes: 0 success, 1 no ratings or unreadable input, 2 bad arguments,
3 database error.
"""

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import recommender
from recommender import ALGORITHMS, FIT_STAGES, RatingData, Recommender

logger = logging.getLogger(__name__)

METRIC_KEYS = (
    "rmse",
    "mae",
    "within_one_star",
    "precision_at_10",
    "recall_at_10",
    "ndcg_at_10",
    "map_at_10",
    "hit_rate_at_10",
    "coverage_at_10",
)
RANKING_KEYS = METRIC_KEYS[3:]
RELEVANT_RATING = 4.0
EVAL_USER_CHUNK = 512
# Progress stages train() reports, each prefixed by a phase (see PHASES).
STAGES = FIT_STAGES + ("evaluate",)
PHASES = ("evaluation: ", "final: ")


# ------------------------------------------------------------------- reading data


def read_database(database_url):
    """Return (movies, RatingData) from the app's database."""
    from sqlalchemy import select

    from models import Movie, Rating, make_engine

    engine = make_engine(database_url)
    movie = Movie.__table__
    rating = Rating.__table__
    try:
        with engine.connect() as conn:
            movies = [
                dict(row._mapping)
                for row in conn.execute(
                    select(
                        movie.c.id,
                        movie.c.title,
                        movie.c.tags,
                        movie.c.director,
                        movie.c.actors,
                        movie.c.summary,
                    )
                )
            ]
            rows = conn.execute(
                select(
                    rating.c.client_id,
                    rating.c.movie_id,
                    rating.c.rating,
                    rating.c.rated_at,
                )
            ).all()
    finally:
        engine.dispose()
    users = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    items = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    values = np.fromiter((r[2] for r in rows), dtype=np.float32, count=len(rows))
    stamps = np.fromiter(
        (recommender._timestamp(r[3]) or 0.0 for r in rows),
        dtype=np.float64,
        count=len(rows),
    )
    return movies, RatingData(users, items, values, stamps)


def read_ratings_file(path):
    """Read u.data (tab separated) or a CSV with a header (MovieLens 20M/25M)."""
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace") as stream:
        first = stream.readline()
    if not first.strip():
        return RatingData([], [], [], [])
    if "\t" in first:
        table = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    else:
        has_header = any(c.isalpha() for c in first)
        table = np.loadtxt(
            path, delimiter=",", dtype=np.float64, skiprows=int(has_header), ndmin=2
        )
    if table.size == 0:
        return RatingData([], [], [], [])
    stamps = table[:, 3] if table.shape[1] > 3 else None
    return RatingData(table[:, 0], table[:, 1], table[:, 2], stamps)


def read_movielens_items(folder, details_csv=None):
    """Return films from ``u.item`` (plus the details CSV when available)."""
    folder = Path(folder)
    genres = []
    genre_file = folder / "u.genre"
    if genre_file.exists():
        for line in genre_file.read_text(encoding="latin-1").splitlines():
            if "|" in line:
                name, position = line.rsplit("|", 1)
                genres.append((int(position), name))
    names = [name for _, name in sorted(genres)]
    movies = {}
    for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        flags = parts[5:]
        tags = [
            names[i] for i, flag in enumerate(flags) if flag == "1" and i < len(names)
        ]
        movies[int(parts[0])] = {
            "id": int(parts[0]),
            "title": parts[1],
            "tags": ",".join(tags),
        }
    if details_csv is None:
        candidate = folder.parent / "ml-100k-details.csv"
        details_csv = candidate if candidate.exists() else None
    if details_csv is not None:
        with open(details_csv, encoding="utf-8", newline="") as stream:
            for row in csv.DictReader(stream):
                movie = movies.get(int(row["movie_id"]))
                if movie is not None:
                    for key in ("director", "actors", "summary"):
                        movie[key] = row.get(key) or None
    return list(movies.values())


# --------------------------------------------------------------------- splitting


def split_per_user(ratings, fraction=0.2, seed=42):
    """Hold out ``fraction`` of each user's ratings (at least one kept in train)."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(ratings)), ratings.user_ids))
    users = ratings.user_ids[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    n_test = np.floor(counts * fraction).astype(np.int64)
    test = np.zeros(len(ratings), dtype=bool)
    test[order] = rank < np.repeat(n_test, counts)
    return ratings.subset(~test), ratings.subset(test)


# -------------------------------------------------------------------- evaluation


def _profile_matrix(pack, train, users):
    """Profile weights (as served: rating weight x recency) for ``users``."""
    params = pack.params
    row_of = {int(u): i for i, u in enumerate(users)}
    keep = np.isin(train.user_ids, users)
    user_ids = train.user_ids[keep]
    rows = np.fromiter((row_of[int(u)] for u in user_ids), np.int64, len(user_ids))
    cols = np.searchsorted(pack.item_ids, train.movie_ids[keep])
    weights = np.interp(train.ratings[keep], (1, 2, 3, 4, 5), params["rating_weights"])
    if train.timestamps is not None:
        stamps = train.timestamps[keep]
        newest = np.full(len(users), -np.inf)
        np.maximum.at(newest, rows, stamps)
        age = np.maximum(newest[rows] - stamps, 0.0)
        floor = params["recency_floor"]
        decay = 0.5 ** (age / (params["half_life_days"] * 86400.0))
        weights = weights * (floor + (1 - floor) * decay)
    return sp.csr_matrix(
        (weights.astype(np.float32), (rows, cols)), shape=(len(users), pack.n_items)
    )


def ranking_metrics(top, relevant, n_relevant, n_catalogue, k):
    """Return the ranking metrics for top-k lists.

    Args:
        top: int (n_users, k) recommended internal indices, best first.
        relevant: bool (n_users, n_items) relevance.
        n_relevant: int (n_users,) relevant films per user (all > 0).
        n_catalogue: Films the catalogue holds (for coverage).
        k: List length.

    Returns:
        Sums per user (precision, recall, ndcg, map, hit) and the set of films.
    """
    hits = np.take_along_axis(relevant, top, axis=1).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_len = np.minimum(n_relevant, k)
    ideal = np.cumsum(discounts)[ideal_len - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return {
        "precision_at_10": hits.sum(axis=1) / k,
        "recall_at_10": hits.sum(axis=1) / n_relevant,
        "ndcg_at_10": (hits * discounts).sum(axis=1) / ideal,
        "map_at_10": (precision_at * hits).sum(axis=1) / ideal_len,
        "hit_rate_at_10": (hits.sum(axis=1) > 0).astype(np.float64),
    }


def _rank_users(score_fn, train, test, pack, k, max_users=None, seed=0):
    """Top-k for every user with a relevant held-out film; return metrics."""
    relevant_mask = test.ratings >= RELEVANT_RATING
    users = np.unique(test.user_ids[relevant_mask])
    if max_users and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, False))
    if len(users) == 0:
        return {key: 0.0 for key in RANKING_KEYS}
    profile = _profile_matrix(pack, train, users)
    row_of = {int(u): i for i, u in enumerate(users)}
    rel_users = test.user_ids[relevant_mask]
    rel_keep = np.isin(rel_users, users)
    rel_rows = np.fromiter(
        (row_of[int(u)] for u in rel_users[rel_keep]), np.int64, int(rel_keep.sum())
    )
    rel_cols = np.searchsorted(pack.item_ids, test.movie_ids[relevant_mask][rel_keep])
    relevant = sp.csr_matrix(
        (np.ones(len(rel_rows), bool), (rel_rows, rel_cols)),
        shape=(len(users), pack.n_items),
    )
    seen = profile.copy()
    seen.data[:] = 1
    tie_break = pack._popular_rank * np.float32(1e-6)
    sums = {key: 0.0 for key in RANKING_KEYS if key != "coverage_at_10"}
    recommended = np.zeros(pack.n_items, dtype=bool)
    for start in range(0, len(users), EVAL_USER_CHUNK):
        stop = min(len(users), start + EVAL_USER_CHUNK)
        scores = score_fn(profile[start:stop]) + tie_break
        scores[seen[start:stop].toarray() > 0] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        rel = relevant[start:stop].toarray()
        result = ranking_metrics(top, rel, rel.sum(axis=1), pack.n_items, k)
        for key, values in result.items():
            sums[key] += float(values.sum())
        recommended[top.ravel()] = True
    metrics = {key: value / len(users) for key, value in sums.items()}
    metrics["coverage_at_10"] = float(recommended.sum()) / pack.n_items
    metrics["n_users"] = int(len(users))
    return metrics


def _rating_metrics(predictions, truth):
    if len(truth) == 0:
        # Too few ratings to hold any out: say "unknown", never NaN (not JSON).
        return {"rmse": None, "mae": None, "within_one_star": None}
    errors = predictions - truth
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mae": float(np.mean(np.abs(errors))),
        "within_one_star": float(np.mean(np.abs(errors) <= 1.0)),
    }


def predict_test(pack, train, test):
    """Predict every held-out rating with users folded in from ``train``."""
    index_train = np.searchsorted(pack.item_ids, train.movie_ids)
    index_test = np.searchsorted(pack.item_ids, test.movie_ids)
    mean = pack.state["global_mean"]
    item_bias = np.asarray(pack.state["item_bias"], dtype=np.float64)
    users, inverse = np.unique(
        np.concatenate([train.user_ids, test.user_ids]), return_inverse=True
    )
    train_rows = inverse[: len(train)]
    test_rows = inverse[len(train) :]
    deviation = train.ratings - mean - item_bias[index_train]
    count = np.bincount(train_rows, minlength=len(users))
    user_bias = np.bincount(train_rows, deviation, minlength=len(users)) / (
        pack.params["reg_user"] + count
    )
    residual = deviation - user_bias[train_rows]
    predictions = np.empty(len(test), dtype=np.float64)
    train_order = np.argsort(train_rows, kind="stable")
    train_starts = np.searchsorted(train_rows[train_order], np.arange(len(users) + 1))
    test_order = np.argsort(test_rows, kind="stable")
    test_starts = np.searchsorted(test_rows[test_order], np.arange(len(users) + 1))
    for row in range(len(users)):
        targets = test_order[test_starts[row] : test_starts[row + 1]]
        if len(targets) == 0:
            continue
        history = train_order[train_starts[row] : train_starts[row + 1]]
        residuals = dict(
            zip(index_train[history].tolist(), residual[history].tolist(), strict=True)
        )
        predictions[targets] = pack.predict_indices(
            float(user_bias[row]), residuals, index_test[targets]
        )
    return predictions


def evaluate(
    train,
    test,
    movies,
    params=None,
    k=10,
    algorithms=ALGORITHMS,
    progress=None,
    max_users=None,
):
    """Fit on ``train`` and measure on ``test``.

    Args:
        train, test: :class:`RatingData`.
        movies: Film dicts (content, titles).
        params: Recommender hyperparameters.
        k: List length (metrics keep their ``_at_10`` names).
        algorithms: Which algorithms to rank with.
        progress: Optional ``f(stage, fraction)``.
        max_users: Rank for a seeded sample of users at most this large.

    Returns:
        ``{"model": {...}, "algorithms": {name: {...}}, "baselines": {...}}``.
    """
    report = progress or (lambda stage, fraction: None)
    model = Recommender(**(params or {})).fit(train, movies, progress=report)
    pack = model.to_pack()
    test = test.subset(np.isin(test.movie_ids, pack.item_ids))
    report("evaluate", 0.0)
    predictions = predict_test(pack, train, test)
    ours = _rating_metrics(predictions, test.ratings)
    result = {"algorithms": {}, "baselines": {}}
    for position, algorithm in enumerate(algorithms):
        result["algorithms"][algorithm] = dict(
            ours,
            **_rank_users(
                lambda p, a=algorithm: pack.score_matrix(p, a),
                train,
                test,
                pack,
                k,
                max_users,
            ),
        )
        report("evaluate", (position + 1) / (len(algorithms) + 2))

    # Baselines: the design's movie mean, and most popular by count.
    count = np.asarray(pack.state["item_count"], dtype=np.float64)
    item_mean = np.asarray(pack.state["item_mean"], dtype=np.float64)
    global_mean = float(train.ratings.mean())
    filled_mean = np.where(np.isnan(item_mean), global_mean, item_mean)
    index_test = np.searchsorted(pack.item_ids, test.movie_ids)
    mean_scores = np.where(np.isnan(item_mean), 0.0, item_mean).astype(np.float32)
    count_scores = (count / max(count.max(), 1.0)).astype(np.float32)
    result["baselines"]["movie_mean"] = dict(
        _rating_metrics(filled_mean[index_test], test.ratings),
        **_rank_users(
            lambda p: np.broadcast_to(mean_scores, (p.shape[0], pack.n_items)).copy(),
            train,
            test,
            pack,
            k,
            max_users,
        ),
    )
    baseline = pack.state["global_mean"] + np.asarray(pack.state["item_bias"])
    result["baselines"]["popular"] = dict(
        _rating_metrics(np.clip(baseline[index_test], 1, 5), test.ratings),
        **_rank_users(
            lambda p: np.broadcast_to(count_scores, (p.shape[0], pack.n_items)).copy(),
            train,
            test,
            pack,
            k,
            max_users,
        ),
    )
    report("evaluate", 1.0)
    result["model"] = result["algorithms"].get("hybrid") or next(
        iter(result["algorithms"].values())
    )
    return result


def mean_results(results):
    """Average several :func:`evaluate` results key by key."""

    def average(dicts):
        result = {}
        for key in dicts[0]:
            values = [d[key] for d in dicts if d[key] is not None]
            result[key] = float(np.mean(values)) if values else None
        return result

    merged = {"model": average([r["model"] for r in results])}
    for group in ("algorithms", "baselines"):
        merged[group] = {
            name: average([r[group][name] for r in results])
            for name in results[0][group]
        }
    return merged


def metrics_document(result, **extra):
    """The JSON written by ``--metrics-out``: our model's keys, then baselines."""
    document = {key: result["model"][key] for key in METRIC_KEYS}
    document["baselines"] = {
        name: {key: values[key] for key in METRIC_KEYS}
        for name, values in result["baselines"].items()
    }
    document["algorithms"] = {
        name: {key: values[key] for key in METRIC_KEYS}
        for name, values in result["algorithms"].items()
    }
    document.update(extra)
    return document


def format_table(result):
    """Return the final comparison table as text."""
    header = [
        "",
        "RMSE",
        "MAE",
        "±1★",
        "P@10",
        "R@10",
        "NDCG@10",
        "MAP@10",
        "HR@10",
        "Cov@10",
    ]
    rows = []
    for name, values in result["algorithms"].items():
        label = f"{name} (ours)" if name == "hybrid" else name
        rows.append([label] + [values[key] for key in METRIC_KEYS])
    for name, values in result["baselines"].items():
        rows.append([f"baseline: {name}"] + [values[key] for key in METRIC_KEYS])
    width = max(len(row[0]) for row in rows) + 2
    lines = [header[0].ljust(width) + "".join(h.rjust(9) for h in header[1:])]
    for row in rows:
        cells = ("      n/a" if v is None else f"{v:9.4f}" for v in row[1:])
        lines.append(row[0].ljust(width) + "".join(cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------- training


class _Progress:
    """Forward (stage, fraction) to a callback and to tqdm bars."""

    def __init__(self, callback=None, show=False, prefix=""):
        self.callback = callback
        self.show = show
        self.prefix = prefix
        self.bar = None
        self.stage = None

    def __call__(self, stage, fraction):
        if self.callback is not None:
            self.callback(self.prefix + stage, float(fraction))
        if not self.show:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=f"{self.prefix}{stage:>18}", leave=False)
        self.bar.n = int(round(fraction * 100))
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(database_url, output, progress_callback=None, **options):
    """Evaluate on a held-out split, fit on everything and write the pack.

    Args:
        database_url: SQLAlchemy URL to read films and ratings from (ignored when
            ``ratings`` is given).
        output: Where to write the pack (metrics JSON goes beside it).
        progress_callback: Optional ``f(stage, fraction)``; stages are prefixed
            ``evaluation: `` or ``final: ``, and ``done`` comes last.
        **options: ``params`` (Recommender hyperparameters), ``seed`` of the 20%
            split, ``ratings`` and ``movies`` to use instead of the database,
            ``show_progress`` (tqdm bars).

    Returns:
        The metrics dict (our model's keys, ``baselines``, ``algorithms``,
        ``eval_date``), as stored in the pack and beside it.

    Raises:
        ValueError: No ratings to train on.
    """
    metrics, _ = _train(database_url, output, progress_callback, **options)
    return metrics


def _train(
    database_url,
    output,
    progress_callback=None,
    params=None,
    seed=42,
    ratings=None,
    movies=None,
    show_progress=False,
):
    started = time.perf_counter()
    if ratings is None:
        movies, ratings = read_database(database_url)
    if len(ratings) == 0:
        raise ValueError("no ratings to train on")
    logger.info("read %d ratings and %d films", len(ratings), len(movies or []))
    train_part, test_part = split_per_user(ratings, 0.2, seed)
    progress = _Progress(progress_callback, show_progress, "evaluation: ")
    result = evaluate(
        train_part, test_part, movies, params, progress=progress, max_users=5000
    )
    progress.close()
    metrics = metrics_document(
        result,
        eval_date=_now(),
        protocol="20% of each user's ratings held out",
        seed=seed,
    )
    progress = _Progress(progress_callback, show_progress, "final: ")
    model = Recommender(**(params or {})).fit(ratings, movies, progress=progress)
    progress.close()
    pack = model.to_pack(metrics=metrics, extra_meta={"eval_protocol": "holdout-20"})
    write_pack(pack, output, metrics)
    if progress_callback is not None:
        progress_callback("done", 1.0)
    logger.info("trained and saved in %.1f s", time.perf_counter() - started)
    return metrics, result


def write_pack(pack, output, metrics):
    """Write the pack and ``<pack>.metrics.json`` atomically."""
    pack.save(output)
    _write_json(metrics_path(output), metrics)


def metrics_path(output):
    base, _ = os.path.splitext(os.fspath(output))
    return base + ".metrics.json"


def _write_json(path, data):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(data, stream, ensure_ascii=False, indent=2)
    os.replace(temporary, path)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(microsecond=0).isoformat()


def run_folds(folder, params=None, k=10, show_progress=False, folds=(1, 2, 3, 4, 5)):
    """Evaluate on the GroupLens u1-u5 folds; return (mean result, per fold)."""
    folder = Path(folder)
    movies = read_movielens_items(folder)
    results = []
    for fold in folds:
        train_part = read_ratings_file(folder / f"u{fold}.base")
        test_part = read_ratings_file(folder / f"u{fold}.test")
        progress = _Progress(None, show_progress, f"u{fold}: ")
        started = time.perf_counter()
        results.append(
            evaluate(train_part, test_part, movies, params, k, progress=progress)
        )
        progress.close()
        logger.info("fold u%d: %.1f s", fold, time.perf_counter() - started)
    return mean_results(results), results


# --------------------------------------------------------------------------- CLI


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--database-url", help="default: DATABASE_URL setting")
    parser.add_argument(
        "--ratings-file", help="u.data or ratings CSV instead of the DB"
    )
    parser.add_argument(
        "--folds",
        nargs=2,
        metavar=("NAME", "PATH"),
        help="evaluate on named folds: 'ml100k DIR' (u1-u5)",
    )
    parser.add_argument("--output", help="pack path (default: MODEL_PATH setting)")
    parser.add_argument(
        "--k",
        type=int,
        default=Recommender().n_neighbors,
        help="CF neighbours kept per film",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the held-out split"
    )
    parser.add_argument("--metrics-out", help="also write the evaluation JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    """Run the script; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.k < 1:
        parser.print_usage(sys.stderr)
        print("error: --k must be at least 1", file=sys.stderr)
        return 2
    if args.seed < 0:
        parser.print_usage(sys.stderr)
        print("error: --seed must be a non-negative integer", file=sys.stderr)
        return 2
    from config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    params = {"n_neighbors": args.k}
    show = not args.no_progress and sys.stderr.isatty()
    started = time.perf_counter()

    if args.folds:
        name, folder = args.folds
        if name != "ml100k" or not (Path(folder) / "u1.base").exists():
            print(
                f"error: --folds supports 'ml100k DIR' with u1-u5 files ({folder})",
                file=sys.stderr,
            )
            return 2
        result, _ = run_folds(folder, params, show_progress=show)
        document = metrics_document(
            result, eval_date=_now(), protocol="GroupLens u1-u5 folds, mean of five"
        )
        print(format_table(result))
        if args.metrics_out:
            _write_json(args.metrics_out, document)
        if args.output:
            ratings = read_ratings_file(Path(folder) / "u.data")
            movies = read_movielens_items(folder)
            pack = Recommender(**params).fit(ratings, movies).to_pack(metrics=document)
            write_pack(pack, args.output, document)
            print(f"pack written to {args.output}")
        print(f"folds evaluated in {time.perf_counter() - started:.1f} s")
        return 0

    output = args.output or settings["MODEL_PATH"]
    ratings = movies = None
    if args.ratings_file:
        try:
            ratings = read_ratings_file(args.ratings_file)
        except (OSError, ValueError) as exc:
            print(f"error: cannot read {args.ratings_file}: {exc}", file=sys.stderr)
            return 1
        movies = []
    database_url = args.database_url or settings["SQLALCHEMY_DATABASE_URI"]
    try:
        metrics, table = _train(
            database_url,
            output,
            params=params,
            seed=args.seed,
            ratings=ratings,
            movies=movies,
            show_progress=show,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            print(f"error: database: {exc.__class__.__name__}: {exc}", file=sys.stderr)
            return 3
        raise
    print(format_table(table))
    if args.metrics_out:
        _write_json(args.metrics_out, metrics)
    print(
        f"trained on {metrics_fingerprint(output)} in "
        f"{time.perf_counter() - started:.1f} s; pack {output} "
        f"({os.path.getsize(output) / 1e6:.2f} MB)"
    )
    return 0


def metrics_fingerprint(output):
    pack = recommender.load_pack(output, mmap=False)
    fingerprint = pack.meta["fingerprint"]
    return (
        f"{fingerprint['n_ratings']} ratings, {fingerprint['n_users']} users, "
        f"{pack.n_items} films"
    )


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
