"""Films: home recommendations, detail, search, tags, ratings and history.

Recommendations come from the loaded model pack (``current_app.extensions
["recommender"]``); without one, or when it fails, they come from shared tags and
popularity (:mod:`api.catalogue`). Film cards are loaded in one query per response.
"""

import logging
import time
from collections import namedtuple

from flask import current_app, jsonify, request
from flask_smorest import Blueprint
from sqlalchemy import (
    String,
    and_,
    bindparam,
    cast,
    delete,
    desc,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)

from api import ApiError
from api.catalogue import get_catalogue
from api.schemas import (
    DeletedSchema,
    HistoryPageSchema,
    HomeSchema,
    MovieDetailSchema,
    MoviePageSchema,
    MovieQuerySchema,
    MyRatingPageSchema,
    PageQuerySchema,
    RatingInputSchema,
    RatingResultSchema,
    TagCountSchema,
)
from api.security import (
    CLIENT_CHECK_COLUMNS,
    accept_client,
    checked_password_hash,
    claimed_client_id,
    login_required,
    require_client,
)
from models import (
    Client,
    Footprint,
    Movie,
    Rating,
    damped_score,
    db,
    genre_name,
    history_changed,
    insert_returning,
    iso,
    movie_counts_json,
    pending_footprint,
    read_row,
    rescore_movies,
    utcnow,
    write_buffered_views,
    write_together,
)

logger = logging.getLogger(__name__)

bp = Blueprint(
    "movies",
    __name__,
    url_prefix="/api",
    description="Films, recommendations, ratings and history",
)

HOME_SIZE = 12
RELATED_SIZE = 6
PERSONAL_CACHE_SIZE = 10_000
# The latest views describe current interest; reading more costs every home page.
RECENT_VIEWS = 40


def movie_not_found():
    return ApiError(404, "movie_not_found", "电影不存在")


def load_cards(movie_ids):
    """Return {movie_id: card dict} for the ids: from the card cache, else one query."""
    return get_catalogue().cards(movie_ids)


def cards_with_reasons(picks, limit, cards_by_id=None):
    """Return card dicts for [(movie_id, reason)], skipping ids that vanished.

    ``cards_by_id`` gives cards already loaded for these ids (else they are loaded).
    """
    if cards_by_id is None:
        cards_by_id = load_cards(movie_id for movie_id, _ in picks)
    cards = []
    for movie_id, reason in picks:
        card = cards_by_id.get(movie_id)
        if card is None:
            continue
        card["reason"] = reason
        cards.append(card)
        if len(cards) == limit:
            break
    return cards


def _pack():
    holder = current_app.extensions.get("recommender")
    return holder.get() if holder is not None else None


def _pack_identity():
    """Tell loaded packs apart (an id alone can come back after a reload)."""
    holder = current_app.extensions.get("recommender")
    if holder is None:
        return None
    return id(holder.get()), getattr(holder, "generation", None)


def _known(picks):
    """Drop films the pack knows but the catalogue no longer has (deleted since)."""
    entries = get_catalogue().entries()
    return [pick for pick in picks if pick[0] in entries]


def _tags_reason(tags):
    if not tags:
        return "与你的观影偏好相近"
    return "因为你喜欢" + "、".join(genre_name(tag) for tag in tags) + "类电影"


def _visitor_picks(n, exclude=()):
    reasons = {"popular": "热门电影,很多人看过", "random": "随机发现,换换口味"}
    # Spare picks at the end: a film deleted since the index loaded is skipped.
    mix = get_catalogue().visitor_mix(n, exclude=exclude, spare=4)
    return [(movie_id, reasons[kind]) for movie_id, kind in mix]


def _client_history(client_id):
    """Return the client's ratings and distinct recent views, newest first."""
    ratings = db.session.execute(
        select(Rating.movie_id, Rating.rating, Rating.rated_at)
        .where(Rating.client_id == client_id)
        .order_by(Rating.rated_at.desc(), Rating.movie_id.desc())
    ).all()
    view_rows = db.session.execute(
        select(Footprint.movie_id, Footprint.viewed_at)
        .where(Footprint.client_id == client_id)
        .order_by(Footprint.viewed_at.desc(), Footprint.id.desc())
        .limit(RECENT_VIEWS)
    ).all()
    views, seen = [], set()
    for movie_id, viewed_at in view_rows:
        if movie_id not in seen:
            seen.add(movie_id)
            views.append((movie_id, viewed_at))
    return [tuple(row) for row in ratings], views


def _personal_picks(ratings, views, n):
    """Return [(movie_id, reason)] for a client with a history (pack, then tags)."""
    rated = {movie_id for movie_id, _, _ in ratings}
    picks = []
    pack = _pack()
    if pack is not None:
        try:
            recommendations = pack.recommend(
                ratings=ratings,
                views=views,
                n=n,
                algorithm=current_app.config["RECOMMENDER"],
                exclude=rated,
            )
            picks = _known([(rec.movie_id, rec.reason) for rec in recommendations])
        except Exception:
            logger.exception("model pack failed to recommend; using tags instead")
            picks = []
    if len(picks) < n:
        # Films just viewed are not suggested back by the tag fallback either.
        seen = rated | {movie_id for movie_id, _ in views}
        taken = seen | {movie_id for movie_id, _ in picks}
        by_tags = get_catalogue().recommend_by_tags(ratings, views, n, exclude=taken)
        picks += [(movie_id, _tags_reason(tags)) for movie_id, _, tags in by_tags]
    return picks


# Built once: constructing a statement costs more than running it on SQLite. The hot
# statements are Core (tables, not ORM entities) and carry the session check.
MOVIE = Movie.__table__
RATING = Rating.__table__
CLIENT = Client.__table__
FOOTPRINT = Footprint.__table__


# The client's session check and a fingerprint of their history, in one statement:
# the version of their history (raised with every rating change and when their
# views are cleared) and their latest view, both read from one row or one index
# entry, however long the history. A cached home page is reused only while both
# still hold, for the same account (a deleted client's id can come back on
# SQLite) and for at most CATALOGUE_TTL seconds: two views of one client
# committing out of order can leave the latest id unchanged.
def _as_text(value):
    return func.coalesce(cast(value, String), literal_column("'0'", String))


HOME_CHECK = select(
    *CLIENT_CHECK_COLUMNS,
    # One text column: PyMySQL spends more on each column's description than on
    # its value.
    (
        _as_text(CLIENT.c.history_version)
        + literal_column("','", String)
        + _as_text(
            select(func.max(FOOTPRINT.c.id))
            .where(FOOTPRINT.c.client_id == bindparam("client_id"))
            .scalar_subquery()
        )
    ).label("history"),
).where(CLIENT.c.id == bindparam("client_id"))
COUNT_VIEW = (
    update(MOVIE)
    .where(MOVIE.c.id == bindparam("movie_id"))
    # Keeping updated_at as it is: it marks edits to the film, not views.
    .values(click_count=MOVIE.c.click_count + 1, updated_at=MOVIE.c.updated_at)
)
# Runs with COUNT_VIEW in one transaction, for the client the session names, and
# only while the account is active with the password hash the session was checked
# against: so it may run before the check is read (a changed password inserts
# nothing). It also inserts nothing when the film has just been deleted.
ADD_FOOTPRINT = insert(FOOTPRINT).from_select(
    ["client_id", "movie_id", "viewed_at"],
    select(
        CLIENT.c.id,
        MOVIE.c.id,
        bindparam("viewed_at", type_=FOOTPRINT.c.viewed_at.type),
    ).where(
        MOVIE.c.id == bindparam("movie_id"),
        CLIENT.c.id == bindparam("client_id"),
        CLIENT.c.is_active == true(),
        CLIENT.c.password_hash == bindparam("password_hash"),
    ),
)
FILM_STATE_COLUMNS = (MOVIE.c.score, MOVIE.c.rating_count, MOVIE.c.click_count)


def _film_value(column):
    return (
        select(column)
        .where(MOVIE.c.id == bindparam("movie_id"))
        .scalar_subquery()
        .label(column.key)
    )


# A client's view (where INSERT ... RETURNING exists) returns what the page shows
# live: the film's counts, after COUNT_VIEW in the same transaction, and the
# client's rating. A returned row means the account is active with the password
# hash that was checked: one statement and one result fewer than a read after it.
ADD_FOOTPRINT_RETURNING = ADD_FOOTPRINT.returning(
    *(_film_value(column) for column in FILM_STATE_COLUMNS),
    select(RATING.c.rating)
    .where(
        RATING.c.movie_id == bindparam("movie_id"),
        RATING.c.client_id == bindparam("client_id"),
    )
    .scalar_subquery()
    .label("my_rating"),
)
FilmStateForClient = namedtuple(
    "FilmStateForClient",
    "score rating_count click_count my_rating client_password_hash client_is_active",
)
# The film page reads what changes with every rating and click from the database
# (with the claimed client's rating and session check); the rest of the film is its
# cached card, which film edits invalidate everywhere (api.catalogue).
FILM_STATE = select(*FILM_STATE_COLUMNS).where(MOVIE.c.id == bindparam("movie_id"))
FILM_STATE_FOR_CLIENT = (
    select(
        *FILM_STATE_COLUMNS,
        RATING.c.rating.label("my_rating"),
        *CLIENT_CHECK_COLUMNS,
        # What a buffered view is written with (models.PendingFootprint).
        CLIENT.c.created_at.label("client_created_at"),
        CLIENT.c.views_cleared,
    )
    .select_from(
        MOVIE.outerjoin(CLIENT, CLIENT.c.id == bindparam("client_id")).outerjoin(
            RATING,
            and_(
                RATING.c.movie_id == MOVIE.c.id,
                RATING.c.client_id == bindparam("client_id"),
            ),
        )
    )
    .where(MOVIE.c.id == bindparam("movie_id"))
)


def _personal_cache():
    return current_app.extensions.setdefault("personal_home_cache", {})


@bp.route("/movies/home", methods=["GET"])
@bp.alt_response(200, schema=HomeSchema, success=True)
def home():
    """Twelve films: personal for clients with a history, a varied mix otherwise."""
    client_id, row = claimed_client_id(), None
    if client_id is not None:
        row = read_row(HOME_CHECK, {"client_id": client_id})
        client_id = accept_client(client_id, row)
    if client_id is None:
        return jsonify(
            {"recs": cards_with_reasons(_visitor_picks(HOME_SIZE), HOME_SIZE)}
        )

    # Recommending costs more than the rest of the page: reuse this process's last
    # answer for the client while their history (see HOME_CHECK), their account
    # and the model are unchanged. Kept in this process's memory only.
    key = (
        row.history,
        row.client_password_hash,
        _pack_identity(),
        current_app.config["RECOMMENDER"],
    )
    now = time.monotonic()
    cache = _personal_cache()
    cached = cache.get(client_id)
    fresh_since = now - current_app.config["CATALOGUE_TTL"]
    if cached is not None and cached[0] == key and cached[2] >= fresh_since:
        picks = cached[1]
    else:
        picks, rated = [], set()
        ratings, views = _client_history(client_id)
        rated = {movie_id for movie_id, _, _ in ratings}
        if ratings or views:
            picks = _personal_picks(ratings, views, HOME_SIZE)
        if len(picks) < HOME_SIZE:
            taken = rated | {movie_id for movie_id, _ in picks}
            picks += _visitor_picks(HOME_SIZE - len(picks), exclude=taken)
        if len(cache) >= PERSONAL_CACHE_SIZE:
            cache.clear()
        cache[client_id] = (key, picks, now)
    return jsonify({"recs": cards_with_reasons(picks, HOME_SIZE)})


def _shared_tags_reason(tags):
    return "同为" + "、".join(genre_name(tag) for tag in sorted(tags)) + "类电影"


def _similar_reason(movie_id, other_id):
    entries = get_catalogue().entries()
    source, other = entries.get(movie_id), entries.get(other_id)
    shared = source.tags & other.tags if source and other else set()
    return _shared_tags_reason(shared) if shared else "喜欢这部的观众也喜欢"


def _related_picks(movie_id, n):
    picks = []
    pack = _pack()
    if pack is not None:
        try:
            similar = pack.similar_items(movie_id, n=n, kind="hybrid")
            picks = _known(
                [
                    (other, _similar_reason(movie_id, other))
                    for other, _ in similar
                    if other != movie_id
                ]
            )
        except Exception:
            logger.exception("model pack failed on similar_items; using tags instead")
            picks = []
    if len(picks) < n:
        taken = {other for other, _ in picks}
        by_tags = get_catalogue().related_by_tags(movie_id, n, exclude=taken)
        picks += [(other, _shared_tags_reason(shared)) for other, shared in by_tags]
    return picks[:n]


def _related_cards(movie_id):
    """Return the film's related cards with reasons, the same for every visitor.

    Remembered until the catalogue reloads (a film edit anywhere, or the TTL that
    bounds the cards' counts) or the model pack changes.
    """

    def build():
        related = _related_picks(movie_id, RELATED_SIZE)
        return cards_with_reasons(related, RELATED_SIZE)

    key = ("related", movie_id, _pack_identity())
    return get_catalogue().remembered(key, build)


@bp.route("/movies/detail/<int:movie_id>", methods=["GET"])
@bp.alt_response(200, schema=MovieDetailSchema, success=True)
def movie_detail(movie_id):
    """Return a film with related films; count the click and the client's view."""
    # The hottest route of the site. Its click, and a client's footprint, go to this
    # process's view buffer (models.ViewBuffer): the page is then one read of the
    # film's live counts (and the client's rating and session check). Without a
    # buffer (CLICK_FLUSH_SECONDS=0) they are written here, and the live counts are
    # read in the statements that write them: one round trip on MariaDB. A client's
    # footprint is conditioned on the password hash their session was last accepted
    # with, so the insert vouches for the session; on a first view in this worker,
    # or after a change, the check is read first and the view counted after it.
    claimed = claimed_client_id()
    parameters = {"movie_id": movie_id, "client_id": claimed, "viewed_at": utcnow()}
    # HEAD (link prefetchers, monitors) shows the page without counting a view.
    counting = request.method != "HEAD"
    buffer = current_app.extensions.get("views")
    count_view = [COUNT_VIEW] if counting and buffer is None else []
    clicked = footprinted = False
    if claimed is None:
        if count_view:
            (clicked,), row = write_together(count_view, parameters, read=FILM_STATE)
        else:
            row = read_row(FILM_STATE, parameters)
    else:
        row = None
        password_hash = None
        if counting and buffer is None:
            password_hash = checked_password_hash(claimed)
            parameters["password_hash"] = password_hash
        if password_hash is not None:
            if insert_returning():
                counts, row = write_together(
                    [*count_view, ADD_FOOTPRINT_RETURNING], parameters
                )
                if row is not None:
                    row = FilmStateForClient(*row, password_hash, True)
            else:
                counts, row = write_together(
                    [*count_view, ADD_FOOTPRINT], parameters, read=FILM_STATE_FOR_CLIENT
                )
            clicked, footprinted = bool(count_view and counts[0]), counts[-1] > 0
        if row is None:  # not counted yet, the film is gone, or the account changed
            row = read_row(FILM_STATE_FOR_CLIENT, parameters)
    client_id = None if claimed is None else accept_client(claimed, row)
    if row is None:
        raise movie_not_found()

    later = [COUNT_VIEW] if count_view and not clicked else []
    if counting and client_id is not None and not footprinted:
        if buffer is not None:
            buffer.add_footprint(
                pending_footprint(
                    client_id,
                    movie_id,
                    parameters["viewed_at"],
                    row.client_created_at,
                    row.views_cleared or 0,
                )
            )
        else:
            later.append(ADD_FOOTPRINT)
            parameters["password_hash"] = row.client_password_hash
    if later:
        counts, _ = write_together(later, parameters)
        if later[0] is COUNT_VIEW and not counts[0]:  # deleted by an admin meanwhile
            raise movie_not_found()

    body = load_cards([movie_id]).get(movie_id)
    if body is None:  # deleted by an admin meanwhile
        raise movie_not_found()
    body.update(movie_counts_json(row))
    if later and later[0] is COUNT_VIEW:
        body["click_count"] += 1  # counted after the read
    if buffer is not None:
        unwritten = buffer.add(movie_id) if counting else buffer.unwritten(movie_id)
        body["click_count"] += unwritten
    body["my_rating"] = row.my_rating if client_id is not None else None
    body["related"] = _related_cards(movie_id)
    return jsonify(body)


@bp.route("/movies", methods=["GET"])
@bp.arguments(MovieQuerySchema, location="query")
@bp.alt_response(200, schema=MoviePageSchema, success=True)
def list_movies(args):
    """Search and filter films; ``q`` matches title, director and actors."""
    query = select(Movie)
    text = (args.get("q") or "").strip()
    if text:
        query = query.where(
            or_(
                Movie.title.icontains(text, autoescape=True),
                Movie.director.icontains(text, autoescape=True),
                Movie.actors.icontains(text, autoescape=True),
            )
        )
    tag = (args.get("tag") or "").strip()
    if tag:
        padded = literal(",") + Movie.tags + literal(",")
        query = query.where(padded.contains(f",{tag},", autoescape=True))
    if args.get("year_from") is not None:
        query = query.where(Movie.year >= args["year_from"])
    if args.get("year_to") is not None:
        query = query.where(Movie.year <= args["year_to"])
    query = query.order_by(*_ordering(args["sort"]))

    page = db.paginate(
        query,
        page=args["page"],
        per_page=args["per_page"],
        max_per_page=100,
        error_out=False,
    )
    return jsonify(
        {
            "items": [movie.to_dict() for movie in page.items],
            "total": page.total,
            "page": page.page,
            "per_page": page.per_page,
        }
    )


def _ordering(sort):
    """Return ORDER BY terms; the id last makes pages stable."""
    if sort == "score":
        # Damped, so that a film with two 5-star votes does not top the list.
        damped = damped_score(get_catalogue().mean_score())
        terms = (Movie.score.is_(None), damped.desc(), Movie.rating_count.desc())
    elif sort == "newest":
        terms = (
            Movie.year.is_(None),
            Movie.year.desc(),
            Movie.release_date.is_(None),
            Movie.release_date.desc(),
        )
    elif sort == "title":
        terms = (Movie.title.asc(),)
    else:
        terms = (Movie.rating_count.desc(), Movie.click_count.desc())
    return (*terms, Movie.id.asc())


@bp.route("/movies/tags", methods=["GET"])
@bp.alt_response(200, schema=TagCountSchema(many=True), success=True)
def list_tags():
    """Return every tag with its number of films, most common first."""
    counts = get_catalogue().tag_counts()
    return jsonify([{"tag": tag, "count": count} for tag, count in counts])


def _lock_movie(movie_id):
    """Lock the film's row for this transaction (serialises its rating changes)."""
    found = db.session.scalar(
        select(Movie.id).where(Movie.id == movie_id).with_for_update()
    )
    if found is None:
        db.session.rollback()
        raise movie_not_found()


def refresh_movie_rating(movie_ids):
    """Recompute score and rating_count in SQL from the rating table."""
    ids = list(movie_ids)
    if not ids:
        return
    db.session.execute(rescore_movies(ids))
    # This process shows the new score in lists at once; others after their TTL.
    get_catalogue().forget(ids)


def _rating_result(movie_id, **extra):
    score, rating_count = db.session.execute(
        select(Movie.score, Movie.rating_count).where(Movie.id == movie_id)
    ).one()
    body = {"movie_id": movie_id, **extra}
    body["score"] = round(score, 2) if score is not None else None
    body["rating_count"] = rating_count
    return body


@bp.route("/movies/<int:movie_id>/rating", methods=["PUT"])
@login_required
@bp.arguments(RatingInputSchema)
@bp.alt_response(200, schema=RatingResultSchema, success=True)
@bp.alt_response(201, schema=RatingResultSchema, success=True)
def rate_movie(data, movie_id):
    """Create or change the client's rating; the film's score follows at once."""
    client = require_client()

    _lock_movie(movie_id)
    now = utcnow()
    changed = db.session.execute(
        update(Rating)
        .where(Rating.client_id == client.id, Rating.movie_id == movie_id)
        .values(rating=data["rating"], rated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        db.session.add(
            Rating(
                client_id=client.id,
                movie_id=movie_id,
                rating=data["rating"],
                rated_at=now,
            )
        )
        db.session.flush()
    refresh_movie_rating([movie_id])
    db.session.execute(history_changed([client.id]))
    body = _rating_result(
        movie_id, rating=data["rating"], rated_at=iso(now), created=not changed
    )
    db.session.commit()

    return jsonify(body), 200 if changed else 201


@bp.route("/movies/<int:movie_id>/rating", methods=["DELETE"])
@bp.alt_response(200, schema=RatingResultSchema, success=True)
def unrate_movie(movie_id):
    """Remove the client's rating of a film."""
    client = require_client()

    _lock_movie(movie_id)
    removed = db.session.execute(
        delete(Rating).where(Rating.client_id == client.id, Rating.movie_id == movie_id)
    ).rowcount
    if not removed:
        db.session.rollback()
        raise ApiError(404, "rating_not_found", "你还没有给这部电影评分")
    refresh_movie_rating([movie_id])
    db.session.execute(history_changed([client.id]))
    body = _rating_result(movie_id, rating=None, rated_at=None, created=False)
    db.session.commit()

    return jsonify(body)


def _page_of(args, total, items):
    return {
        "items": items,
        "total": total,
        "page": args["page"],
        "per_page": args["per_page"],
    }


@bp.route("/me/ratings", methods=["GET"])
@bp.arguments(PageQuerySchema, location="query")
@bp.alt_response(200, schema=MyRatingPageSchema, success=True)
def my_ratings(args):
    """Return the client's ratings, newest first."""
    client = require_client()
    offset = (args["page"] - 1) * args["per_page"]

    total = db.session.scalar(
        select(func.count()).select_from(Rating).where(Rating.client_id == client.id)
    )
    rows = db.session.execute(
        select(Rating.movie_id, Rating.rating, Rating.rated_at)
        .where(Rating.client_id == client.id)
        .order_by(Rating.rated_at.desc(), Rating.movie_id.desc())
        .offset(offset)
        .limit(args["per_page"])
    ).all()
    movies = load_cards(row.movie_id for row in rows)

    items = [
        {
            "movie": movies[row.movie_id],
            "rating": row.rating,
            "rated_at": iso(row.rated_at),
        }
        for row in rows
        if row.movie_id in movies
    ]
    return jsonify(_page_of(args, total, items))


@bp.route("/me/history", methods=["GET"])
@bp.arguments(PageQuerySchema, location="query")
@bp.alt_response(200, schema=HistoryPageSchema, success=True)
def my_history(args):
    """Return the films the client viewed, most recently viewed first."""
    # This process's buffered views first, before this request's transaction
    # starts, so it sees them.
    if claimed_client_id() is not None:
        write_buffered_views("a history")
    client = require_client()
    offset = (args["page"] - 1) * args["per_page"]

    total = db.session.scalar(
        select(func.count(func.distinct(Footprint.movie_id))).where(
            Footprint.client_id == client.id
        )
    )
    # Most recent view first: views are written in batches per process, so a later
    # view can have a smaller id than an earlier one; the id breaks ties within a
    # second (DATETIME on MariaDB).
    rows = db.session.execute(
        select(
            Footprint.movie_id,
            func.max(Footprint.viewed_at).label("last_viewed"),
            func.count().label("views"),
            func.max(Footprint.id).label("last_id"),
        )
        .where(Footprint.client_id == client.id)
        .group_by(Footprint.movie_id)
        .order_by(desc("last_viewed"), desc("last_id"))
        .offset(offset)
        .limit(args["per_page"])
    ).all()
    movies = load_cards(row.movie_id for row in rows)

    items = [
        {
            "movie": movies[row.movie_id],
            "viewed_at": iso(row.last_viewed),
            "views": row.views,
        }
        for row in rows
        if row.movie_id in movies
    ]
    return jsonify(_page_of(args, total, items))


@bp.route("/me/history", methods=["DELETE"])
@bp.alt_response(200, schema=DeletedSchema, success=True)
def clear_history():
    """Forget every film the client viewed."""
    client = require_client()

    # The client's row first (as a batch of views locks it before inserting): views
    # still buffered in any process (models.ViewBuffer) are then not written, and
    # SQLite may give the next view the id of the latest one deleted here.
    db.session.execute(
        update(Client)
        .where(Client.id == client.id)
        .values(views_cleared=func.coalesce(Client.views_cleared, 0) + 1)
    )
    db.session.execute(history_changed([client.id]))
    deleted = db.session.execute(
        delete(Footprint).where(Footprint.client_id == client.id)
    ).rowcount
    db.session.commit()

    return jsonify({"deleted": deleted})
