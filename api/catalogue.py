"""A small in-process index of the catalogue, and the recommendations made from it.

The index holds, per film, only what choosing films needs (tags and popularity), so
that visitors' home pages, shared-tag neighbours and the tag list cost no SQL. Cards
(the JSON the front end shows) are always loaded fresh, in one query per response,
so click counts and scores are never stale.

An admin's film edit bumps a catalogue version that every process reads once per
request (:class:`CatalogueVersion`): a Redis key when ``CACHE_URL`` is set, so all
instances on all hosts see it, or else a stamp file that every worker on this host
stats. The index reloads as soon as the version changes, and in any case after
``CATALOGUE_TTL`` seconds (default 300), which bounds how stale popularity can be.
"""

import logging
import math
import os
import random
import secrets
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, g, has_request_context
from sqlalchemy import func, select

from models import Movie, db, movie_json

logger = logging.getLogger(__name__)

# Popularity and the counts on list cards drift with every click and rating; the
# index reloads on this TTL. Film edits are seen at once through the version.
DEFAULT_TTL = 300
# Up to this many films, every card is built when the index loads; beyond it, cards
# are read on first use and kept until the next reload.
PREFILL_CARDS = 20_000
VERSION_KEY = "movierec:catalogue-version"
POPULAR_POOL_SIZE = 100
# Bounds the answers remembered per index load (Catalogue.remembered).
MEMO_SIZE = 20_000


@dataclass(frozen=True)
class Entry:
    movie_id: int
    tags: frozenset
    rating_count: int
    score: float | None


class CatalogueVersion:
    """A catalogue change counter shared by every process that serves the site.

    Args:
        cache_url: Redis URL; the version is a key there, shared across hosts.
        stamp_path: Without Redis, a file whose identity changes on every bump;
            shared by the workers of one host.
    """

    def __init__(self, cache_url=None, stamp_path=None):
        self.stamp_path = Path(stamp_path) if stamp_path else None
        # Looked at on every request: os.stat on a string skips pathlib's layers.
        self._stamp = str(self.stamp_path) if stamp_path else None
        self._redis = None
        self._warned = False
        if cache_url:
            import redis

            self._redis = redis.Redis.from_url(
                cache_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )

    def current(self):
        """Return a token that changes whenever the catalogue was edited anywhere."""
        if self._redis is not None:
            try:
                return self._redis.get(VERSION_KEY)
            except Exception as exc:  # degrade to the TTL, say so once
                self._warn(exc)
                return None
        if self.stamp_path is None:
            return None
        try:
            stat = os.stat(self._stamp)
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns)

    def bump(self):
        """Record an edit so that every process reloads its index."""
        if self._redis is not None:
            try:
                self._redis.incr(VERSION_KEY)
            except Exception as exc:  # the edit itself succeeded
                self._warn(exc)
            return
        if self.stamp_path is None:
            return
        self.stamp_path.parent.mkdir(parents=True, exist_ok=True)
        # A new file renamed over the old one: a new inode, seen by every stat().
        fd, tmp = tempfile.mkstemp(dir=self.stamp_path.parent, prefix=".catalogue-")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(8))
        os.replace(tmp, self.stamp_path)

    def _warn(self, exc):
        if not self._warned:
            self._warned = True
            logger.warning(
                "catalogue version unavailable (%s): other instances see film edits "
                "only after the TTL",
                exc.__class__.__name__,
            )


class Catalogue:
    """Per-process index of films: ids, tags and popularity."""

    def __init__(self, ttl=DEFAULT_TTL, version=None):
        self.ttl = ttl
        self.version = version or CatalogueVersion()
        self._lock = threading.Lock()
        self._state = None
        self._token = None
        self._loaded_at = 0.0

    def invalidate(self):
        """Drop this index and tell every other process to drop theirs."""
        self.version.bump()
        with self._lock:
            self._state = None

    def forget(self, movie_ids):
        """Drop these films' cards (their score or count just changed)."""
        state = self._current()
        for movie_id in movie_ids:
            state["cards"].pop(movie_id, None)
        state["memo"].clear()  # remembered answers may show those cards

    def cards(self, movie_ids):
        """Return {movie_id: card} for list views, from memory where possible.

        Cards not in memory are read in one query. Each call returns fresh dicts,
        so callers may add keys (a reason) to them.
        """
        cards = self._current()["cards"]
        found, missing = {}, []
        for movie_id in dict.fromkeys(movie_ids):
            card = cards.get(movie_id)
            if card is None:
                missing.append(movie_id)
            else:
                found[movie_id] = card
        if missing:
            rows = db.session.execute(
                select(Movie.__table__).where(Movie.id.in_(missing))
            )
            for row in rows:
                found[row.id] = cards[row.id] = movie_json(row)
        return {movie_id: dict(card) for movie_id, card in found.items()}

    def remembered(self, key, build):
        """Return ``build()``, computed once per key while this index stays loaded.

        For answers derived from the index and its cards (a film's related cards):
        a reload, after a film edit anywhere or the TTL, starts afresh. Callers
        must not change what they get back.
        """
        memo = self._current()["memo"]
        value = memo.get(key)
        if value is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            value = memo[key] = build()
        return value

    def _version_token(self):
        # One look at the shared version per request, however often it is used.
        if has_request_context():
            if "catalogue_version" not in g:
                g.catalogue_version = self.version.current()
            return g.catalogue_version
        return self.version.current()

    def _current(self):
        token = self._version_token()
        state = self._state
        fresh = time.monotonic() - self._loaded_at < self.ttl
        if state is not None and fresh and token == self._token:
            return state
        with self._lock:
            expired = time.monotonic() - self._loaded_at >= self.ttl
            if self._state is None or expired or token != self._token:
                self._state = self._load()
                self._token = token
                self._loaded_at = time.monotonic()
            return self._state

    @staticmethod
    def _load():
        started = time.perf_counter()
        n_films = db.session.scalar(select(func.count()).select_from(Movie))
        prefill = n_films <= PREFILL_CARDS
        columns = (
            [Movie.__table__]
            if prefill
            else [Movie.id, Movie.tags, Movie.rating_count, Movie.score]
        )
        rows = db.session.execute(select(*columns)).all()
        entries = {
            row.id: Entry(
                row.id,
                frozenset(tag for tag in (row.tags or "").split(",") if tag),
                row.rating_count or 0,
                row.score,
            )
            for row in rows
        }
        by_tag = defaultdict(list)
        for entry in entries.values():
            for tag in entry.tags:
                by_tag[tag].append(entry.movie_id)
        popular = sorted(
            entries.values(), key=lambda entry: (-entry.rating_count, entry.movie_id)
        )
        state = {
            "entries": entries,
            "ids": sorted(entries),
            "by_tag": dict(by_tag),
            "popular": [entry.movie_id for entry in popular[:POPULAR_POOL_SIZE]],
            "tag_counts": Counter(tag for e in entries.values() for tag in e.tags),
            "cards": {row.id: movie_json(row) for row in rows} if prefill else {},
            "mean_score": _mean_score(entries.values()),
            "memo": {},
        }
        logger.debug(
            "catalogue index loaded: %d films in %.1f ms",
            len(entries),
            (time.perf_counter() - started) * 1000,
        )
        return state

    def mean_score(self):
        """Return the mean of all ratings (the prior of damped scores)."""
        return self._current()["mean_score"]

    def entries(self):
        return self._current()["entries"]

    def tag_counts(self):
        """Return [(tag, n_films)], most common first."""
        counts = self._current()["tag_counts"]
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def popular_ids(self, n=POPULAR_POOL_SIZE, exclude=()):
        excluded = set(exclude)
        ids = [i for i in self._current()["popular"] if i not in excluded]
        return ids[:n]

    def related_by_tags(self, movie_id, n=6, exclude=()):
        """Return [(movie_id, shared_tags)] sharing the most tags with ``movie_id``.

        Ties go to the more rated film. Films without tags in common are not listed.
        """
        state = self._current()
        entry = state["entries"].get(movie_id)
        if entry is None or not entry.tags:
            return []
        excluded = set(exclude) | {movie_id}
        candidates = {
            other for tag in entry.tags for other in state["by_tag"].get(tag, ())
        }
        scored = []
        for other_id in candidates - excluded:
            other = state["entries"][other_id]
            shared = entry.tags & other.tags
            jaccard = len(shared) / len(entry.tags | other.tags)
            scored.append((-jaccard, -other.rating_count, other_id, shared))
        scored.sort()
        return [(item[2], item[3]) for item in scored[:n]]

    def recommend_by_tags(self, ratings, views, n=12, exclude=()):
        """Recommend from the tags of rated and viewed films, weighted by popularity.

        Args:
            ratings: [(movie_id, rating, rated_at)].
            views: [(movie_id, viewed_at)], newest first.
            n: How many films.
            exclude: Ids never to return (the films already rated).

        Returns:
            [(movie_id, score, liked_tags)] best first; empty without a usable
            history.
        """
        state = self._current()
        entries = state["entries"]
        weights = Counter()
        for movie_id, rating, _ in ratings:
            entry = entries.get(movie_id)
            if entry is None:
                continue
            # Above the middle of the scale pulls towards a tag, below pushes away.
            for tag in entry.tags:
                weights[tag] += (rating - 3) if rating >= 4 else (rating - 3) * 0.5
        for position, (movie_id, _) in enumerate(views[:20]):
            entry = entries.get(movie_id)
            if entry is None:
                continue
            for tag in entry.tags:
                weights[tag] += 0.5 / (1 + position * 0.1)
        liked = {tag: weight for tag, weight in weights.items() if weight > 0}
        if not liked:
            return []
        excluded = set(exclude)
        scored = []
        for entry in entries.values():
            if entry.movie_id in excluded or not entry.tags:
                continue
            affinity = sum(weights.get(tag, 0.0) for tag in entry.tags)
            if affinity <= 0:
                continue
            affinity /= math.sqrt(len(entry.tags))
            popularity = math.log1p(entry.rating_count)
            quality = (entry.score or 3.0) - 3.0
            score = affinity * (1.0 + 0.25 * popularity) + 0.5 * quality
            scored.append((score, entry.movie_id))
        scored.sort(key=lambda item: (-item[0], item[1]))
        results = []
        for score, movie_id in scored[:n]:
            tags = sorted(
                entries[movie_id].tags & liked.keys(),
                key=lambda tag: (-liked[tag], tag),
            )
            results.append((movie_id, round(score, 4), tags[:2]))
        return results

    def visitor_mix(self, n=12, exclude=(), spare=0, rng=random):
        """Return [(movie_id, kind)]: half popular, half random, shuffled.

        ``kind`` is "popular" or "random". ``spare`` more random films follow the
        ``n``, for callers that skip films deleted since the index loaded. Sampling
        from cached id lists keeps the database out of it (no ORDER BY RAND()).
        """
        state = self._current()
        excluded = set(exclude)
        popular = [i for i in state["popular"] if i not in excluded]
        n_popular = min(len(popular), (n + 1) // 2)
        chosen = rng.sample(popular, n_popular)
        taken = excluded | set(chosen)
        pool = [i for i in state["ids"] if i not in taken]
        randoms = rng.sample(pool, min(len(pool), n - n_popular + spare))
        picks = [(i, "popular") for i in chosen]
        picks += [(i, "random") for i in randoms[: n - n_popular]]
        rng.shuffle(picks)
        return picks + [(i, "random") for i in randoms[n - n_popular :]]


def _mean_score(entries):
    """Return the mean of all ratings, from each film's mean and count."""
    total = sum(e.score * e.rating_count for e in entries if e.score is not None)
    count = sum(e.rating_count for e in entries if e.score is not None)
    return total / count if count else 3.0


def get_catalogue():
    """Return this app's catalogue index (created on first use)."""
    extensions = current_app.extensions
    catalogue = extensions.get("catalogue")
    if catalogue is None:
        config = current_app.config
        version = CatalogueVersion(
            config.get("CACHE_URL"), config.get("CATALOGUE_STAMP")
        )
        catalogue = Catalogue(config.get("CATALOGUE_TTL", DEFAULT_TTL), version)
        catalogue = extensions.setdefault("catalogue", catalogue)
    return catalogue
