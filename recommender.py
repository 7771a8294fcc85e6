"""Recommendation library: content and collaborative neighbours, packs, serving.

No Flask here. The training script (``train_evaluate_model.py``) fits a
:class:`Recommender` on ratings and film texts and saves its :class:`ModelPack`;
the app holds the pack in a :class:`PackHolder` and queries it per request.

Models, all kept as top-K neighbour lists (never a dense n x n matrix):

* Content: TF-IDF over genres (whole tokens such as "Sci-Fi"), director, actors,
  title and summary words; Chinese text is split into character bigrams.
* Ranking CF: item-item co-occurrence on sparse matrices, normalised like cosine
  with a popularity exponent on the target film (RP3beta-like) so that the lists
  reach beyond the blockbusters.
* Rating prediction: regularised baselines (global mean, user and film biases
  fitted by alternating updates) plus item-kNN on the baseline residuals with
  shrunk cosine similarity of the residuals (KNNBaseline-like), after a
  factor model of the residuals fitted by alternating least squares.
* Popularity: damped Bayesian average of the ratings.

The pack stores plain numpy arrays, lists and dicts only, so it loads in any
process that has this module, and its arrays are memory-mapped when loaded.
"""

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import scipy
import scipy.sparse as sp

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Stages ``Recommender.fit`` reports to its progress callback, in order.
FIT_STAGES = ("baseline", "factors", "cf_neighbours", "content_neighbours")
NEIGHBOUR_LISTS = ("cf", "similar", "content", "rating")
COMPACT_MAX_ITEMS = 32_767
ALGORITHMS = ("hybrid", "itemcf", "content", "popular")
SIMILAR_KINDS = ("hybrid", "content", "cf")
POPULAR_REASON = "观众评价很高的热门电影"
# Dense blocks of the item-item products hold at most this many cells (float32).
BLOCK_CELLS = 24_000_000


class PackError(Exception):
    """The model pack is missing, corrupt or from another format version."""


class NotFittedError(RuntimeError):
    """A model was queried before ``fit``."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended film with the evidence behind it.

    Attributes:
        movie_id: The film id.
        score: Ranking score (higher is better; comparable within one list only).
        reason: Why, for people (Simplified Chinese).
        evidence: The same for programs: ``kind`` is ``rated``, ``viewed``,
            ``similar`` or ``popular``; ``source_movie_id`` names the film that
            led here, when there is one.
    """

    movie_id: int
    score: float
    reason: str
    evidence: dict = field(default_factory=dict)


@dataclass
class RatingData:
    """Ratings as parallel arrays (one entry per rating).

    ``timestamps`` are seconds since the epoch (optional).
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray | None = None

    def __post_init__(self):
        self.user_ids = np.asarray(self.user_ids, dtype=np.int64)
        self.movie_ids = np.asarray(self.movie_ids, dtype=np.int64)
        self.ratings = np.asarray(self.ratings, dtype=np.float32)
        if self.timestamps is not None:
            self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if not len(self.user_ids) == len(self.movie_ids) == len(self.ratings):
            raise ValueError("user_ids, movie_ids and ratings differ in length")

    def __len__(self):
        return len(self.ratings)

    def subset(self, mask):
        """Return the ratings selected by a boolean mask or index array."""
        return RatingData(
            self.user_ids[mask],
            self.movie_ids[mask],
            self.ratings[mask],
            None if self.timestamps is None else self.timestamps[mask],
        )

    def fingerprint(self):
        """Return counts and a SHA-256 of the (sorted) ratings."""
        order = np.lexsort((self.movie_ids, self.user_ids))
        digest = hashlib.sha256()
        for array in (self.user_ids, self.movie_ids, self.ratings):
            digest.update(np.ascontiguousarray(array[order]).tobytes())
        return {
            "n_ratings": int(len(self)),
            "n_users": int(len(np.unique(self.user_ids))),
            "n_rated_items": int(len(np.unique(self.movie_ids))),
            "sha256": digest.hexdigest(),
        }


# --------------------------------------------------------------------------- text

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD_RE = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_CJK_RE = re.compile(rf"[{_CJK}]")
_STOP_WORDS = None


def _stop_words():
    global _STOP_WORDS
    if _STOP_WORDS is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        _STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)
    return _STOP_WORDS


def tokenize_text(text):
    """Split free text into lower-case words; Chinese runs become char bigrams.

    Args:
        text: Any string (English, Chinese or mixed); None gives no tokens.

    Returns:
        A list of tokens.
    """
    if not text:
        return []
    stop = _stop_words()
    tokens = []
    for run in _WORD_RE.findall(text.lower()):
        if _CJK_RE.match(run):
            if len(run) == 1:
                tokens.append(run)
            else:
                tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        elif len(run) > 1 and run not in stop and not run.isdigit():
            tokens.append(run)
    return tokens


def split_names(value):
    """Split a comma-separated list of names ("Tom Hanks, Tim Allen")."""
    if not value:
        return []
    return [part.strip() for part in re.split(r"[,，、]", value) if part.strip()]


def _title_text(title):
    # "Toy Story (1995)" -> "Toy Story": the year says little about content.
    return re.sub(r"\(\d{4}\)\s*$", "", title or "")


def _identity(tokens):
    return tokens


def _field_matrix(documents):
    """TF-IDF of pre-tokenised documents, rows l2-normalised; None when empty."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any(documents):
        return None
    vectorizer = TfidfVectorizer(
        analyzer=_identity, sublinear_tf=True, dtype=np.float32
    )
    return vectorizer.fit_transform(documents)


# ---------------------------------------------------------------- neighbour blocks


def _block_rows(n_cols):
    return max(1, min(4096, BLOCK_CELLS // max(n_cols, 1)))


def top_k_blocks(compute_block, n_rows, n_cols, k, progress=None):
    """Keep the ``k`` largest positive cells of each row of virtual matrices.

    Args:
        compute_block: ``f(start, stop)`` giving rows ``start:stop`` of one
            matrix (an ndarray ``(stop-start, n_cols)``) or of several (a tuple
            of them); the matrices are square and their diagonal is ignored.
        n_rows, n_cols: Shape of the virtual matrices.
        k: Neighbours per row (a tuple, one per matrix, for several).
        progress: Optional ``f(fraction)``.

    Returns:
        ``(indices int32 (n_rows, k), scores float32 (n_rows, k))`` sorted by
        score, padded with the row's own index and score 0 (a list of such
        pairs for several matrices).
    """
    several = isinstance(k, tuple | list)
    ks = [max(1, int(value)) for value in (k if several else [k])]
    results = [
        (
            np.repeat(np.arange(n_rows, dtype=np.int32)[:, None], size, axis=1),
            np.zeros((n_rows, size), dtype=np.float32),
        )
        for size in ks
    ]
    if n_cols >= 2 and n_rows > 0:
        step = _block_rows(n_cols)
        for start in range(0, n_rows, step):
            stop = min(n_rows, start + step)
            blocks = compute_block(start, stop)
            if not several:
                blocks = (blocks,)
            for block, size, (indices, scores) in zip(blocks, ks, results, strict=True):
                _keep_top(block, start, stop, min(size, n_cols - 1), indices, scores)
            if progress is not None:
                progress(stop / n_rows)
    return results if several else results[0]


def _keep_top(block, start, stop, size, indices, scores):
    block = np.asarray(block, dtype=np.float32)
    rows = np.arange(stop - start)
    block[rows, rows + start] = 0.0
    # Callers divide by positive floors only, so cells are finite; a NaN from
    # some future formula would sort last and be dropped by "keep" below.
    part = np.argpartition(-block, size - 1, axis=1)[:, :size]
    values = np.take_along_axis(block, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    keep = values > 0
    own = (rows + start)[:, None]
    indices[start:stop, :size] = np.where(keep, part, own)
    scores[start:stop, :size] = np.where(keep, values, 0.0)


def _neighbour_matrix(indices, scores, n_items):
    """CSR view (n_items x n_items) of top-K neighbour arrays; shares memory."""
    n_rows, k = indices.shape
    indptr = np.arange(0, n_rows * k + 1, k, dtype=np.int64)
    matrix = sp.csr_matrix(
        (scores.reshape(-1), indices.reshape(-1), indptr),
        shape=(n_items, n_items),
        copy=False,
    )
    return matrix


# ------------------------------------------------------------------------ models


class BaselinePredictor:
    """Global mean plus user and film biases, fitted by regularised alternation.

    Args:
        reg_user: Ridge penalty on user biases.
        reg_item: Ridge penalty on film biases.
        n_epochs: Alternating passes (users, then films).

    Attributes:
        global_mean_: Mean rating.
        user_bias_, item_bias_: Biases by internal index.
    """

    def __init__(self, reg_user=15.0, reg_item=10.0, n_epochs=15):
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs

    def fit(self, user_index, item_index, ratings, n_users, n_items):
        """Fit on internal indices; returns self."""
        ratings = ratings.astype(np.float64)
        self.global_mean_ = float(ratings.mean()) if len(ratings) else 3.0
        n_user = np.bincount(user_index, minlength=n_users)
        n_item = np.bincount(item_index, minlength=n_items)
        user_bias = np.zeros(n_users)
        item_bias = np.zeros(n_items)
        residual = ratings - self.global_mean_
        for _ in range(self.n_epochs):
            user_bias = np.bincount(
                user_index, residual - item_bias[item_index], minlength=n_users
            ) / (self.reg_user + n_user)
            item_bias = np.bincount(
                item_index, residual - user_bias[user_index], minlength=n_items
            ) / (self.reg_item + n_item)
        self.user_bias_ = user_bias
        self.item_bias_ = item_bias
        return self


def fit_factors(
    residual, user_index, item_index, n_users, n_items, n_factors, reg, n_epochs, seed=0
):
    """Factorise baseline residuals by alternating least squares (explicit).

    Each half-step solves one small ridge system per user (or film): the Gram
    matrices come from one sparse x dense product, so the cost is
    ``n_ratings * n_factors**2`` per half-step with no dense user x item matrix.

    Returns:
        (user_factors, item_factors) float32 arrays.
    """
    rng = np.random.default_rng(seed)
    item_factors = rng.normal(0, 0.1, (n_items, n_factors)).astype(np.float32)
    ones = np.ones(len(residual), dtype=np.float32)
    by_user = sp.csr_matrix((ones, (user_index, item_index)), shape=(n_users, n_items))
    z_user = sp.csr_matrix(
        (residual.astype(np.float32), (user_index, item_index)),
        shape=(n_users, n_items),
    )
    by_item = by_user.T.tocsr()
    z_item = z_user.T.tocsr()
    ridge = np.float32(reg) * np.eye(n_factors, dtype=np.float32)

    upper, lower = np.triu_indices(n_factors)

    def solve(incidence, values, factors):
        # Gram matrices are symmetric: build only the upper triangle's products.
        outer = factors[:, upper] * factors[:, lower]
        result = np.empty((incidence.shape[0], n_factors), dtype=np.float32)
        step = max(1, 8_000_000 // (n_factors * n_factors))
        for start in range(0, incidence.shape[0], step):
            stop = min(incidence.shape[0], start + step)
            triangle = incidence[start:stop] @ outer
            gram = np.empty((stop - start, n_factors, n_factors), dtype=np.float32)
            gram[:, upper, lower] = triangle
            gram[:, lower, upper] = triangle
            right = values[start:stop] @ factors
            result[start:stop] = np.linalg.solve(gram + ridge, right[:, :, None])[
                :, :, 0
            ]
        return result

    for _ in range(n_epochs):
        user_factors = solve(by_user, z_user, item_factors)
        item_factors = solve(by_item, z_item, user_factors)
    user_factors = solve(by_user, z_user, item_factors)
    return user_factors, item_factors


class Recommender:
    """Fit every model behind a :class:`ModelPack`.

    Args:
        n_neighbors: Ranking-CF neighbours kept per film.
        content_neighbors: Content neighbours kept per film.
        rating_neighbors: Residual-cosine neighbours kept per film (ratings).
        predict_k: Neighbours a rating prediction uses (among the user's films).
        shrinkage: Residual-cosine shrinkage toward 0 for few co-raters.
        user_exponent: Co-occurrences from a user weigh ``1 / n_ratings**e``.
        alpha, beta: Ranking similarity divides by ``pop_i**alpha * pop_j**beta``
            (``beta`` above ``alpha`` pushes lists toward the long tail).
        ranking_shrinkage: Added to that denominator.
        rating_weights: Weight of a rated film in a user's profile, by rating 1-5.
        view_weight: Weight of a viewed but unrated film.
        half_life_days: Recency half-life of a profile entry (relative to the
            user's newest activity); ``recency_floor`` is the oldest entry's share.
        content_weight: Share of content in the hybrid (after normalising each).
        cold_ratings: Films with fewer ratings count as cold; content fills in.
        popularity_damping: Prior weight (in ratings) of the Bayesian average.
        reg_user, reg_item, n_epochs: Baseline settings.
        max_user_ratings: Users with more ratings contribute only their newest
            ones to the similarities (bounds the cost at scale).
    """

    def __init__(
        self,
        n_neighbors=300,
        content_neighbors=50,
        similar_neighbors=20,
        rating_neighbors=70,
        predict_k=40,
        shrinkage=100.0,
        neighbour_reg=0.1,
        n_factors=20,
        factor_reg=15.0,
        factor_epochs=10,
        user_exponent=1.0,
        alpha=0.9,
        beta=0.65,
        ranking_shrinkage=5.0,
        popularity_penalty=0.0,
        rating_weights=(0.1, 0.2, 0.5, 1.0, 1.5),
        view_weight=0.5,
        half_life_days=365.0,
        recency_floor=0.5,
        content_weight=0.15,
        cold_content_weight=0.3,
        cold_ratings=5,
        popularity_damping=100.0,
        reg_user=15.0,
        reg_item=5.0,
        n_epochs=15,
        max_user_ratings=1000,
    ):
        self.n_neighbors = n_neighbors
        self.content_neighbors = content_neighbors
        self.similar_neighbors = similar_neighbors
        self.rating_neighbors = rating_neighbors
        self.predict_k = predict_k
        self.shrinkage = shrinkage
        self.neighbour_reg = neighbour_reg
        self.n_factors = n_factors
        self.factor_reg = factor_reg
        self.factor_epochs = factor_epochs
        self.user_exponent = user_exponent
        self.alpha = alpha
        self.beta = beta
        self.ranking_shrinkage = ranking_shrinkage
        self.popularity_penalty = popularity_penalty
        self.rating_weights = rating_weights
        self.view_weight = view_weight
        self.half_life_days = half_life_days
        self.recency_floor = recency_floor
        self.content_weight = content_weight
        self.cold_content_weight = cold_content_weight
        self.cold_ratings = cold_ratings
        self.popularity_damping = popularity_damping
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs
        self.max_user_ratings = max_user_ratings

    def get_params(self):
        """Return the hyperparameters as a plain dict."""
        params = {name: getattr(self, name) for name in _PARAM_NAMES}
        params["rating_weights"] = [float(w) for w in self.rating_weights]
        return params

    def fit(self, ratings, movies=None, progress=None):
        """Fit all models.

        Args:
            ratings: A :class:`RatingData`.
            movies: Optional iterable of dicts with ``id`` and any of ``title``,
                ``tags`` (comma-separated genres), ``director``, ``actors``,
                ``summary``. Films without ratings still get content neighbours.
            progress: Optional ``f(stage, fraction)``.

        Returns:
            self, with ``state_`` (the pack contents) set.
        """
        report = progress or (lambda stage, fraction: None)
        started = time.perf_counter()
        movies = list(movies or [])
        catalogue_ids = np.array([int(m["id"]) for m in movies], dtype=np.int64)
        item_ids = np.union1d(catalogue_ids, np.unique(ratings.movie_ids))
        n_items = len(item_ids)
        item_index = np.searchsorted(item_ids, ratings.movie_ids).astype(np.int32)
        user_ids, user_index = np.unique(ratings.user_ids, return_inverse=True)
        user_index = user_index.astype(np.int32)
        n_users = len(user_ids)
        logger.info(
            "fitting on %d ratings, %d users, %d films", len(ratings), n_users, n_items
        )

        report("baseline", 0.0)
        baseline = BaselinePredictor(self.reg_user, self.reg_item, self.n_epochs).fit(
            user_index, item_index, ratings.ratings, n_users, n_items
        )
        item_count = np.bincount(item_index, minlength=n_items)
        rating_sum = np.bincount(item_index, ratings.ratings, minlength=n_items)
        report("baseline", 1.0)

        residual = (
            ratings.ratings
            - baseline.global_mean_
            - baseline.user_bias_[user_index]
            - baseline.item_bias_[item_index]
        ).astype(np.float32)
        item_factors = np.zeros((n_items, 0), dtype=np.float32)
        if self.n_factors:
            report("factors", 0.0)
            user_factors, item_factors = fit_factors(
                residual,
                user_index,
                item_index,
                n_users,
                n_items,
                self.n_factors,
                self.factor_reg,
                self.factor_epochs,
            )
            step = 1_000_000
            for start in range(0, len(residual), step):
                stop = min(len(residual), start + step)
                residual[start:stop] -= np.einsum(
                    "ij,ij->i",
                    user_factors[user_index[start:stop]],
                    item_factors[item_index[start:stop]],
                )
            del user_factors
            report("factors", 1.0)

        keep = self._similarity_sample(user_index, ratings.timestamps, n_users)
        sim_users = user_index[keep]
        sim_items = item_index[keep]
        residual = residual[keep]

        report("cf_neighbours", 0.0)
        neighbours = self._fit_cf_neighbours(
            sim_users, sim_items, residual, n_users, n_items, report
        )
        (rating_idx, rating_sc), (cf_idx, cf_sc), (similar_idx, similar_sc) = neighbours
        report("content_neighbours", 0.0)
        features, content_idx, content_sc = self._fit_content(movies, item_ids, report)

        mean = ratings.ratings.mean() if len(ratings) else 3.0
        damping = self.popularity_damping
        bayes = (rating_sum + damping * mean) / (item_count + damping)
        popular_order = np.lexsort((-item_count, -bayes)).astype(np.int32)
        titles = {int(m["id"]): str(m.get("title") or "") for m in movies}
        titles = {int(i): titles.get(int(i)) or f"电影 {int(i)}" for i in item_ids}

        if n_items <= COMPACT_MAX_ITEMS:
            rating_idx, cf_idx, similar_idx, content_idx = (
                array.astype(np.uint16)
                for array in (rating_idx, cf_idx, similar_idx, content_idx)
            )
        self.state_ = {
            "format_version": FORMAT_VERSION,
            "params": self.get_params(),
            "item_ids": item_ids.astype(np.int64),
            "item_count": item_count.astype(np.int32),
            "item_mean": np.divide(
                rating_sum,
                item_count,
                out=np.full(n_items, np.nan),
                where=item_count > 0,
            ).astype(np.float32),
            "global_mean": float(baseline.global_mean_),
            "item_bias": baseline.item_bias_.astype(np.float32),
            "item_factors": item_factors,
            "popularity": bayes.astype(np.float32),
            "popular_order": popular_order,
            "cf_indices": cf_idx,
            "cf_scores": cf_sc,
            "similar_indices": similar_idx,
            "similar_scores": similar_sc,
            "rating_indices": rating_idx,
            "rating_scores": rating_sc,
            "content_indices": content_idx,
            "content_scores": content_sc,
            "titles": [titles[int(i)] for i in item_ids],
            "features": [features.get(int(i), []) for i in item_ids],
            "fingerprint": ratings.fingerprint(),
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
        logger.info(
            "fitted in %.1f s: %d films, %d neighbour pairs",
            self.state_["fit_seconds"],
            n_items,
            int((cf_sc > 0).sum() + (content_sc > 0).sum() + (rating_sc > 0).sum()),
        )
        return self

    def to_pack(self, metrics=None, extra_meta=None):
        """Return the fitted :class:`ModelPack` (with optional metrics)."""
        if not hasattr(self, "state_"):
            raise NotFittedError("Recommender is not fitted; call fit() first")
        state = dict(self.state_)
        state["metrics"] = dict(metrics or {})
        state["meta"] = _make_meta(state, extra_meta)
        return ModelPack(state)

    # -- pieces of fit

    def _similarity_sample(self, user_index, timestamps, n_users):
        """Keep each user's newest ``max_user_ratings`` ratings for similarities."""
        counts = np.bincount(user_index, minlength=n_users)
        if not self.max_user_ratings or counts.max(initial=0) <= self.max_user_ratings:
            return slice(None)
        recency = timestamps if timestamps is not None else np.zeros(len(user_index))
        order = np.lexsort((-recency, user_index))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - starts[user_index[order]]
        return rank < self.max_user_ratings

    def _fit_cf_neighbours(self, users, items, residual, n_users, n_items, report):
        """Three item-item lists from one pass over blocks of films.

        * rating: cosine of baseline residuals, shrunk by co-rater count;
        * ranking: co-occurrences with users weighted ``1 / n**user_exponent``,
          divided by ``pop_i**alpha * pop_j**beta + ranking_shrinkage``;
        * similar: plain cosine of who rated what (for "similar films").

        The three sparse products share one dense block at a time, so memory
        stays at a few blocks whatever the catalogue size.
        """
        shape = (n_users, n_items)
        ones = np.ones(len(users), np.float32)
        rated = sp.csr_matrix((ones, (users, items)), shape=shape, dtype=np.float32)
        user_count = np.bincount(users, minlength=n_users).astype(np.float32)
        damping = np.power(np.maximum(user_count[users], 1.0), -self.user_exponent)
        damped = sp.csr_matrix(
            (damping.astype(np.float32), (users, items)), shape=shape, dtype=np.float32
        )
        z = sp.csr_matrix((residual, (users, items)), shape=shape, dtype=np.float32)
        rated_t = rated.T.tocsr()
        z_t = z.T.tocsr()
        popularity = np.bincount(items, minlength=n_items).astype(np.float32)
        z_norm = np.sqrt(np.bincount(items, residual * residual, minlength=n_items))
        z_norm = np.maximum(z_norm, 1e-9).astype(np.float32)
        pop_alpha = np.power(np.maximum(popularity, 1e-9), np.float32(self.alpha))
        pop_beta = np.power(np.maximum(popularity, 1e-9), np.float32(self.beta))
        pop_root = np.sqrt(np.maximum(popularity, 1.0))

        def block(start, stop):
            # In-place arithmetic: these blocks are the biggest arrays of the fit.
            count = (rated_t[start:stop] @ rated).toarray()
            shrunk = np.maximum(count - 1.0, 0.0)
            shrunk /= shrunk + np.float32(self.shrinkage)
            residual_dot = (z_t[start:stop] @ z).toarray()
            residual_dot /= z_norm[None, :]
            residual_dot /= z_norm[start:stop, None]
            residual_dot *= shrunk
            del shrunk
            ranking = (rated_t[start:stop] @ damped).toarray()
            denominator = np.multiply(pop_alpha[start:stop, None], pop_beta[None, :])
            denominator += np.float32(self.ranking_shrinkage)
            ranking /= denominator
            del denominator
            # Shrink a little toward films with few co-raters.
            similar = count
            similar *= count / (count + np.float32(5.0))
            similar /= pop_root[None, :]
            similar /= pop_root[start:stop, None]
            return residual_dot, ranking, similar

        return top_k_blocks(
            block,
            n_items,
            n_items,
            (self.rating_neighbors, self.n_neighbors, self.similar_neighbors),
            lambda f: report("cf_neighbours", f),
        )

    def _fit_content(self, movies, item_ids, report):
        """TF-IDF per field (genres, people, words), weighted, cosine top-K."""
        n_items = len(item_ids)
        by_id = {int(m["id"]): m for m in movies}
        genres, people, words, features = [], [], [], {}
        for movie_id in item_ids:
            movie = by_id.get(int(movie_id), {})
            tags = [t.strip() for t in (movie.get("tags") or "").split(",")]
            tags = [t for t in tags if t and t.lower() != "unknown"]
            director = split_names(movie.get("director"))
            actors = split_names(movie.get("actors"))
            genres.append(["g:" + t for t in tags])
            people.append(["d:" + d for d in director] + ["a:" + a for a in actors])
            words.append(
                tokenize_text(_title_text(movie.get("title")))
                + tokenize_text(movie.get("summary"))
            )
            features[int(movie_id)] = tags + director + actors[:4]
        blocks = []
        for documents, weight in ((genres, 1.0), (people, 0.5), (words, 0.7)):
            matrix = _field_matrix(documents)
            if matrix is not None:
                blocks.append(matrix * np.float32(weight))
        if not blocks:
            empty = np.zeros((n_items, self.content_neighbors), np.float32)
            own = np.repeat(np.arange(n_items, dtype=np.int32)[:, None], 1, axis=1)
            return features, np.broadcast_to(own, empty.shape).copy(), empty
        from sklearn.preprocessing import normalize

        matrix = normalize(sp.hstack(blocks).tocsr().astype(np.float32))
        matrix_t = matrix.T.tocsr()

        def block(start, stop):
            return (matrix[start:stop] @ matrix_t).toarray()

        indices, scores = top_k_blocks(
            block,
            n_items,
            n_items,
            self.content_neighbors,
            lambda f: report("content_neighbours", f),
        )
        return features, indices, scores


_PARAM_NAMES = tuple(
    name
    for name in Recommender.__init__.__code__.co_varnames[
        1 : Recommender.__init__.__code__.co_argcount
    ]
)


def library_versions():
    """Return the versions of the libraries a pack depends on."""
    import platform
    from importlib.metadata import version

    # Read from package metadata: importing scikit-learn would cost a serving
    # worker about a second and tens of MB just to compare version strings.
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": version("scikit-learn"),
        "joblib": version("joblib"),
    }


def _make_meta(state, extra=None):
    meta = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "n_items": int(len(state["item_ids"])),
        "n_ratings": int(state["fingerprint"]["n_ratings"]),
        "fingerprint": dict(state["fingerprint"]),
        "versions": library_versions(),
        "parameters": dict(state["params"]),
        "fit_seconds": state.get("fit_seconds"),
    }
    meta.update(extra or {})
    return meta


# -------------------------------------------------------------------------- pack


def _rating_label(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _timestamp(value):
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


class ModelPack:
    """A fitted model, ready to answer queries (what the app holds).

    Build one with :meth:`Recommender.to_pack` or :func:`load_pack`. Arrays may be
    read-only memory maps; nothing here writes to them.

    Attributes:
        metrics: Evaluation figures recorded at training time.
        meta: Format version, creation time, counts, data fingerprint, library
            versions and parameters.
    """

    def __init__(self, state):
        if state.get("format_version") != FORMAT_VERSION:
            raise PackError(
                f"model pack format version {state.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; retrain with train_evaluate_model.py"
            )
        self.state = state
        self.params = state["params"]
        self.metrics = state.get("metrics", {})
        self.meta = state.get("meta", {})
        self.item_ids = state["item_ids"]
        self.n_items = len(self.item_ids)
        self.titles = state["titles"]
        self.features = state["features"]
        self._position = {int(m): i for i, m in enumerate(self.item_ids)}
        # Small catalogues store uint16 ids (a smaller file); widening them costs
        # little. Large ones store int32, used in place from the memory map.
        self.neighbour_indices = {
            name: np.asarray(state[f"{name}_indices"]).astype(np.int32, copy=False)
            for name in NEIGHBOUR_LISTS
        }
        self._item_count = np.asarray(state["item_count"])
        self._cold = self._item_count < self.params["cold_ratings"]
        self._content_weights = np.where(
            self._cold,
            self.params["cold_content_weight"],
            self.params["content_weight"],
        ).astype(np.float32)
        penalty = self.params.get("popularity_penalty") or 0.0
        self._tail_weights = (
            np.power(np.maximum(self._item_count, 1), -penalty).astype(np.float32)
            if penalty
            else None
        )
        self._cf = _neighbour_matrix(
            self.neighbour_indices["cf"], state["cf_scores"], self.n_items
        )
        self._content = _neighbour_matrix(
            self.neighbour_indices["content"], state["content_scores"], self.n_items
        )
        self._popular_rank = np.empty(self.n_items, dtype=np.float32)
        self._popular_rank[state["popular_order"]] = np.linspace(
            1.0, 0.0, self.n_items, endpoint=False, dtype=np.float32
        )
        self._popular_rank[self._item_count == 0] = 0.0

    # -- small helpers

    def index_of(self, movie_id):
        """Return the internal index of a film, or None when unknown."""
        return self._position.get(int(movie_id))

    def title(self, movie_id):
        """Return the stored title of a film ("" when unknown)."""
        index = self.index_of(movie_id)
        return self.titles[index] if index is not None else ""

    @property
    def n_ratings(self):
        return int(self.meta.get("n_ratings", 0))

    # -- similar films

    def similar_items(self, movie_id, n=10, kind="hybrid"):
        """Return films like ``movie_id``.

        Args:
            movie_id: A film id.
            n: How many.
            kind: ``content`` (text), ``cf`` (ratings) or ``hybrid`` (both).

        Returns:
            ``[(movie_id, score), ...]`` best first; ``[]`` for unknown films.

        Raises:
            ValueError: For an unknown ``kind``.
        """
        if kind not in SIMILAR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SIMILAR_KINDS)}")
        index = self.index_of(movie_id)
        if index is None or n <= 0:
            return []
        scores = self._similar_scores(index, kind)
        scores[index] = 0.0
        top = _top_positive(scores, n)
        return [(int(self.item_ids[i]), float(scores[i])) for i in top]

    def _similar_scores(self, index, kind):
        scores = np.zeros(self.n_items, dtype=np.float32)
        if kind in ("cf", "hybrid"):
            _add_row(
                scores,
                self.neighbour_indices["similar"],
                self.state["similar_scores"],
                index,
            )
            _normalise(scores)
        if kind in ("content", "hybrid"):
            content = np.zeros(self.n_items, dtype=np.float32)
            _add_row(
                content,
                self.neighbour_indices["content"],
                self.state["content_scores"],
                index,
            )
            _normalise(content)
            # A film with little rating evidence leans on its text.
            weight = 1.0 if kind == "content" or self._cold[index] else 0.3
            scores += weight * content
        return scores

    # -- user profile

    def _profile(self, ratings, views=()):
        """Return (indices, weights, kinds, rated positions) for one user."""
        rated = {}
        for movie_id, rating, rated_at in ratings:
            index = self.index_of(movie_id)
            if index is not None:
                rated[index] = (float(rating), _timestamp(rated_at))
        viewed = {}
        for movie_id, viewed_at in views:
            index = self.index_of(movie_id)
            if index is not None and index not in rated and index not in viewed:
                viewed[index] = _timestamp(viewed_at)
        params = self.params
        indices = np.fromiter(
            list(rated) + list(viewed), dtype=np.int64, count=len(rated) + len(viewed)
        )
        values = np.array([r for r, _ in rated.values()], dtype=np.float64)
        weights = np.concatenate(
            [
                np.interp(values, (1, 2, 3, 4, 5), params["rating_weights"]),
                np.full(len(viewed), params["view_weight"]),
            ]
        )
        stamps = [t for _, t in rated.values()] + list(viewed.values())
        known = np.array([t is not None for t in stamps], dtype=bool)
        if known.any():
            # Age relative to the user's newest activity, not to today: a user
            # back after a year still gets their latest taste first.
            times = np.array([t or 0.0 for t in stamps], dtype=np.float64)
            age = np.maximum(times[known].max() - times, 0.0)
            decay = 0.5 ** (age / (params["half_life_days"] * 86400.0))
            floor = params["recency_floor"]
            weights = weights * np.where(known, floor + (1.0 - floor) * decay, 1.0)
        kinds = ["rated"] * len(rated) + ["viewed"] * len(viewed)
        return indices, weights.astype(np.float32), kinds, rated

    # -- scores shared by serving and evaluation

    def _components(self, profile, algorithm):
        """Return (cf, content) dense scores, each divided by its row maximum.

        Also returns the row maxima, so single contributions can be compared.
        """
        cf = content = cf_top = content_top = None
        if algorithm in ("itemcf", "hybrid"):
            cf = (profile @ self._cf).toarray()
            if self._tail_weights is not None:
                cf *= self._tail_weights
            cf_top = _normalise_rows(cf)
        if algorithm in ("content", "hybrid"):
            content = (profile @ self._content).toarray()
            content_top = _normalise_rows(content)
        return cf, content, cf_top, content_top

    def score_matrix(self, profile, algorithm="hybrid"):
        """Score every film for many users at once (evaluation uses this too).

        Args:
            profile: CSR (n_users x n_items) of profile weights.
            algorithm: One of ``ALGORITHMS``.

        Returns:
            Dense float32 (n_users x n_items) scores; higher is better.
        """
        if algorithm == "popular":
            shape = (profile.shape[0], self.n_items)
            return np.broadcast_to(self._popular_rank, shape).copy()
        cf, content, _, _ = self._components(profile, algorithm)
        if algorithm == "itemcf":
            return cf
        if algorithm == "content":
            return content
        return cf + content * self._content_weights

    def recommend(self, ratings, views=(), n=12, algorithm="hybrid", exclude=()):
        """Recommend films for one user.

        Args:
            ratings: ``[(movie_id, rating, rated_at), ...]`` of the user (all of
                them; a rating just made counts at once).
            views: ``[(movie_id, viewed_at), ...]``, newest first.
            n: How many.
            algorithm: ``hybrid``, ``itemcf``, ``content`` or ``popular``.
            exclude: Film ids never to return (besides the rated ones).

        Returns:
            A list of :class:`Recommendation`, best first. Popular films fill
            the list when the history says too little.

        Raises:
            ValueError: For an unknown ``algorithm``.
        """
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
        ratings = list(ratings)
        if n <= 0:
            return []
        indices, weights, kinds, rated = self._profile(ratings, list(views))
        banned = np.zeros(self.n_items, dtype=bool)
        banned[list(rated)] = True
        for movie_id in exclude:
            index = self.index_of(movie_id)
            if index is not None:
                banned[index] = True
        results = []
        if len(indices) and algorithm != "popular":
            scores, contributions = self._score_one(indices, weights, algorithm)
            scores[banned] = 0.0
            top = _top_positive(scores, n)
            for index, evidence in zip(
                top, self._evidence(top, indices, kinds, contributions), strict=True
            ):
                reason = self._reason(evidence, rated)
                results.append(
                    Recommendation(
                        int(self.item_ids[index]),
                        float(scores[index]),
                        reason,
                        evidence,
                    )
                )
                banned[index] = True
        # LIMITATION: with no usable history the list is popularity only.
        for index in self._popular_indices():
            if len(results) >= n:
                break
            if banned[index]:
                continue
            banned[index] = True
            results.append(
                Recommendation(
                    int(self.item_ids[index]),
                    float(self._popular_rank[index]) * 1e-3,
                    POPULAR_REASON,
                    {"kind": "popular", "source_movie_id": None},
                )
            )
        return results

    def _popular_indices(self):
        """Yield film indices by popularity; never-rated films come last."""
        order = self.state["popular_order"]
        for index in order:
            if self._item_count[index] > 0:
                yield int(index)
        for index in order:
            if self._item_count[index] == 0:
                yield int(index)

    def _score_one(self, indices, weights, algorithm):
        """Score every film for one profile, as :meth:`score_matrix` does.

        Gathers the profile films' neighbour rows directly (cheaper than a
        sparse product for one user) and keeps them to explain the results.

        Returns:
            (scores, contributions): ``contributions`` lists, per model, the
            neighbour rows and each profile film's normalised share.
        """
        scores = np.zeros(self.n_items, dtype=np.float32)
        contributions = []
        names = {"itemcf": ("cf",), "content": ("content",)}.get(
            algorithm, ("cf", "content")
        )
        for name in names:
            rows = self.neighbour_indices[name][indices]
            values = (
                np.asarray(self.state[f"{name}_scores"][indices]) * weights[:, None]
            )
            part = np.bincount(
                rows.ravel(), values.ravel(), minlength=self.n_items
            ).astype(np.float32)
            # Per-target factors: the popularity penalty on CF (applied before
            # normalising) and the content share of the hybrid (after).
            target_scale = np.ones(self.n_items, dtype=np.float32)
            if name == "cf" and self._tail_weights is not None:
                target_scale = self._tail_weights
                part *= target_scale
            top = part.max(initial=0.0)
            if top <= 0:
                continue
            part /= top
            if name == "content" and algorithm == "hybrid":
                target_scale = self._content_weights
                part *= target_scale
            scores += part
            contributions.append((name, rows, values / top, target_scale))
        return scores, contributions

    def _evidence(self, targets, indices, kinds, contributions):
        """For each target, find the profile film that contributed most."""
        if not targets:
            return []
        slot = np.full(self.n_items, -1, dtype=np.int64)
        slot[targets] = np.arange(len(targets))
        n_profile = len(indices)
        best_value = np.zeros(len(targets))
        best_source = np.full(len(targets), -1)
        best_model = [None] * len(targets)
        for name, rows, values, target_scale in contributions:
            positions = slot[rows]
            hit = positions >= 0
            profile_rows = np.broadcast_to(np.arange(n_profile)[:, None], rows.shape)[
                hit
            ]
            share = np.zeros((len(targets), n_profile))
            np.add.at(share, (positions[hit], profile_rows), values[hit])
            share *= target_scale[np.asarray(targets)][:, None]
            strongest = share.argmax(axis=1)
            value = share[np.arange(len(targets)), strongest]
            better = value > best_value
            best_value[better] = value[better]
            best_source[better] = strongest[better]
            for i in np.flatnonzero(better):
                best_model[i] = name
        result = []
        for i, target in enumerate(targets):
            if best_model[i] is None:
                result.append({"kind": "popular", "source_movie_id": None})
                continue
            position = int(best_source[i])
            source = int(indices[position])
            evidence = {
                "kind": "similar" if best_model[i] == "content" else kinds[position],
                "source_movie_id": int(self.item_ids[source]),
                "model": best_model[i],
            }
            if best_model[i] == "content":
                evidence["shared"] = self.shared_features(source, target)
            result.append(evidence)
        return result

    def shared_features(self, source, target):
        """Return genres and people two films (internal indices) share."""
        mine = self.features[target]
        theirs = set(self.features[source])
        return [feature for feature in mine if feature in theirs][:3]

    def _reason(self, evidence, rated):
        kind = evidence["kind"]
        source = evidence.get("source_movie_id")
        title = self.title(source) if source is not None else ""
        if kind == "rated":
            rating, _ = rated[self.index_of(source)]
            evidence["rating"] = rating
            return f"因为你给《{title}》打了{_rating_label(rating)}星"
        if kind == "viewed":
            return f"因为你最近浏览了《{title}》"
        if kind == "similar":
            shared = evidence.get("shared") or []
            if shared:
                return f"与《{title}》相似:{'、'.join(shared)}"
            return f"与《{title}》内容相似"
        return POPULAR_REASON

    # -- ratings

    def _baseline_user(self, ratings):
        """Fold in a user: (user bias, {index: residual})."""
        item_bias = self.state["item_bias"]
        mean = self.state["global_mean"]
        rated = {}
        for movie_id, rating, *_ in ratings:
            index = self.index_of(movie_id)
            if index is not None:
                rated[index] = float(rating)
        if not rated:
            return 0.0, {}
        positions = np.fromiter(rated, dtype=np.int64)
        values = np.fromiter(rated.values(), dtype=np.float64)
        deviation = values - mean - item_bias[positions]
        user_bias = deviation.sum() / (self.params["reg_user"] + len(values))
        return float(user_bias), dict(zip(rated, deviation - user_bias, strict=True))

    def fold_in_factors(self, residuals):
        """Solve the user's factor vector from their baseline residuals."""
        factors = np.asarray(self.state["item_factors"])
        n_factors = factors.shape[1]
        if not n_factors or not residuals:
            return None
        positions = np.fromiter(residuals, dtype=np.int64)
        values = np.fromiter(residuals.values(), dtype=np.float64)
        rated = factors[positions].astype(np.float64)
        gram = rated.T @ rated + self.params["factor_reg"] * np.eye(n_factors)
        return np.linalg.solve(gram, rated.T @ values)

    def predict(self, ratings, movie_id):
        """Predict the 1-5 rating a user would give a film.

        Args:
            ratings: The user's ``[(movie_id, rating, rated_at), ...]`` (may be
                empty: then the film's baseline).
            movie_id: The film.

        Returns:
            A float in [1, 5], or None for a film the pack does not know.
        """
        index = self.index_of(movie_id)
        if index is None:
            return None
        user_bias, residuals = self._baseline_user(ratings)
        return float(self.predict_indices(user_bias, residuals, [index])[0])

    def predict_indices(self, user_bias, residuals, targets):
        """Predict for internal indices given a folded-in user (vectorised)."""
        targets = np.asarray(targets, dtype=np.int64)
        estimate = (
            self.state["global_mean"]
            + user_bias
            + np.asarray(self.state["item_bias"])[targets]
        )
        user_factors = self.fold_in_factors(residuals)
        if user_factors is not None:
            factors = np.asarray(self.state["item_factors"])
            estimate = estimate + factors[targets] @ user_factors
            positions = np.fromiter(residuals, dtype=np.int64)
            remaining = np.fromiter(residuals.values(), dtype=np.float64) - (
                factors[positions] @ user_factors
            )
            residuals = dict(zip(residuals, remaining, strict=True))
        if residuals:
            known = np.zeros(self.n_items, dtype=bool)
            values = np.zeros(self.n_items, dtype=np.float32)
            positions = np.fromiter(residuals, dtype=np.int64)
            known[positions] = True
            values[positions] = np.fromiter(residuals.values(), dtype=np.float32)
            neighbours = self.neighbour_indices["rating"][targets]
            similarity = np.asarray(self.state["rating_scores"])[targets]
            usable = known[neighbours] & (similarity > 0)
            usable &= np.cumsum(usable, axis=1) <= self.params["predict_k"]
            weight = np.where(usable, similarity, 0.0)
            total = weight.sum(axis=1)
            correction = np.divide(
                (weight * values[neighbours]).sum(axis=1),
                total + self.params["neighbour_reg"],
                out=np.zeros(len(targets)),
                where=total > 0,
            )
            estimate = estimate + correction
        return np.clip(estimate, 1.0, 5.0)

    # -- popularity

    def popular(self, n, exclude=()):
        """Return the ``n`` most popular film ids (damped Bayesian average)."""
        excluded = {int(m) for m in exclude}
        result = []
        for index in self.state["popular_order"]:
            movie_id = int(self.item_ids[index])
            if self._item_count[index] == 0 or movie_id in excluded:
                continue
            result.append(movie_id)
            if len(result) >= n:
                break
        return result

    # -- persistence

    def save(self, path):
        """Write the pack atomically (temporary file in the same folder, rename)."""
        save_state(self.state, path)


def _top_positive(scores, n):
    n = min(n, len(scores))
    if n <= 0:
        return []
    if n < len(scores):
        candidates = np.argpartition(-scores, n - 1)[:n]
    else:
        candidates = np.arange(len(scores))
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    return [int(i) for i in candidates if scores[i] > 0]


def _add_row(scores, indices, values, row):
    np.add.at(scores, np.asarray(indices[row]), np.asarray(values[row]))


def _normalise(scores):
    top = scores.max(initial=0.0)
    if top > 0:
        scores /= top


def _normalise_rows(matrix):
    top = matrix.max(axis=1, keepdims=True)
    np.divide(matrix, top, out=matrix, where=top > 0)
    return top


def save_state(state, path):
    """Dump a pack dict with joblib to ``path`` atomically."""
    import joblib

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".model-", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        joblib.dump(state, temporary)
        # mkstemp makes the file private; the app may run as another user.
        os.chmod(temporary, 0o644)
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load_pack(path, mmap=True):
    """Load a saved pack.

    Args:
        path: The joblib file.
        mmap: Memory-map the arrays read-only (workers share the pages).

    Returns:
        A :class:`ModelPack`.

    Raises:
        PackError: Missing, unreadable, corrupt or wrong-version file.
    """
    import joblib

    path = os.fspath(path)
    if not os.path.exists(path):
        raise PackError(
            f"model pack {path} does not exist; run train_evaluate_model.py"
        )
    try:
        state = joblib.load(path, mmap_mode="r" if mmap else None)
    except Exception as exc:  # pickle, zlib, EOF, numpy: all mean "unreadable"
        raise PackError(
            f"model pack {path} is corrupt or unreadable "
            f"({exc.__class__.__name__}); retrain with train_evaluate_model.py"
        ) from exc
    if not isinstance(state, dict) or "format_version" not in state:
        raise PackError(f"model pack {path} is not a MovieRec model pack")
    try:
        pack = ModelPack(state)
    except PackError:
        raise
    except Exception as exc:  # missing keys or wrong shapes
        raise PackError(
            f"model pack {path} is incomplete ({exc.__class__.__name__}: {exc}); "
            "retrain with train_evaluate_model.py"
        ) from exc
    saved = pack.meta.get("versions", {})
    current = library_versions()
    different = {
        name: (saved.get(name), current[name])
        for name in ("numpy", "scikit-learn")
        if saved.get(name) not in (None, current[name])
    }
    if different:
        logger.info("model pack built with other library versions: %s", different)
    logger.info(
        "model pack loaded: %d films, %d ratings, version %s",
        pack.n_items,
        pack.n_ratings,
        FORMAT_VERSION,
    )
    return pack


class PackHolder:
    """Hold the serving pack; reload it when the file changes.

    ``get`` is cheap: at most one ``stat`` per ``check_interval`` seconds. A
    corrupt or wrong-version file is reported once (WARNING) and the previous
    pack, if any, keeps serving.

    Args:
        path: The pack file.
        check_interval: Seconds between checks of the file.
    """

    def __init__(self, path, check_interval=1.0):
        self.path = os.fspath(path)
        self.check_interval = check_interval
        self.pack = None
        self.error = None
        # Counts the packs loaded: tells them apart where id() could repeat.
        self.generation = 0
        self._signature = None
        self._failed_signature = None
        self._checked_at = None
        self._lock = threading.Lock()

    def get(self):
        """Return the current pack, or None while none can be loaded."""
        now = time.monotonic()
        if (
            self._checked_at is not None
            and now - self._checked_at < self.check_interval
        ):
            return self.pack
        with self._lock:
            if (
                self._checked_at is not None
                and now - self._checked_at < self.check_interval
            ):
                return self.pack
            self._checked_at = now
            self._refresh()
        return self.pack

    def _refresh(self):
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if self.pack is None:
                self.error = "model pack file does not exist"
            elif self._signature is not None:
                # Deleted while serving: the loaded pack stays in memory (its
                # mapped pages outlive the file); say so once.
                self._signature = None
                self.error = "model pack file was deleted; serving the loaded pack"
                logger.warning(
                    "model pack %s was deleted; still serving the loaded pack",
                    self.path,
                )
            return
        signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        if signature in (self._signature, self._failed_signature):
            return
        try:
            pack = load_pack(self.path)
        except PackError as exc:
            self._failed_signature = signature
            self.error = str(exc)
            logger.warning(
                "%s%s",
                exc,
                "; still serving the previous pack" if self.pack is not None else "",
            )
            return
        self.pack = pack
        self.generation += 1
        self.error = None
        self._signature = signature
        self._failed_signature = None

    def status(self):
        """Return a JSON-able description of the held pack."""
        pack = self.get()
        meta = pack.meta if pack is not None else {}
        return {
            "loaded": pack is not None,
            "path": self.path,
            "version": meta.get("format_version"),
            "created_at": meta.get("created_at"),
            "n_items": meta.get("n_items"),
            "error": self.error,
        }
