"""Admin dashboard: stats, clients, films, charts and model training.

Every route here needs an admin session: the blueprint checks it before any view
runs (401 logged out, 403 for a client), so a new route cannot forget it.
"""

import logging
import math
import secrets
from collections import Counter
from datetime import timedelta

from flask import current_app, jsonify
from flask_smorest import Blueprint
from sqlalchemy import delete, func, select
from werkzeug.security import generate_password_hash

from api import ApiError
from api.catalogue import get_catalogue
from api.movies import movie_not_found, refresh_movie_rating
from api.schemas import (
    AccountSchema,
    ChartsSchema,
    ClientPageSchema,
    ClientPatchSchema,
    ClientQuerySchema,
    DeletedSchema,
    ModelStateSchema,
    MovieSchema,
    MovieUpdateSchema,
    MovieWriteSchema,
    StatsSchema,
    TemporaryPasswordSchema,
)
from api.security import require_admin
from api.training import DEFAULT_TRAINER, TrainingBusy, TrainingManager
from models import (
    Client,
    Footprint,
    Movie,
    Rating,
    db,
    film_year,
    history_changed,
    iso,
    read_row,
    utcnow,
    write_buffered_views,
)

logger = logging.getLogger(__name__)

bp = Blueprint(
    "admin", __name__, url_prefix="/api/admin", description="Admin dashboard"
)

METRIC_KEYS = (
    "rmse",
    "mae",
    "within_one_star",
    "precision_at_10",
    "ndcg_at_10",
    "coverage",
    "eval_date",
)
REGISTRATION_DAYS = 30


@bp.before_request
def guard():
    """Let only admins reach any admin route."""
    require_admin()


def _pack():
    return current_app.extensions["recommender"].get()


def _finite(value):
    """NaN and infinity (a model evaluated on too few ratings) are JSON null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _model_metrics(pack):
    metrics = dict(getattr(pack, "metrics", None) or {}) if pack else {}
    if "coverage" not in metrics and "coverage_at_10" in metrics:
        metrics["coverage"] = metrics["coverage_at_10"]
    return {key: _finite(metrics.get(key)) for key in METRIC_KEYS}


def _clients_from(source):
    return (
        select(func.count())
        .select_from(Client.__table__)
        .where(Client.__table__.c.source == source)
        .scalar_subquery()
    )


# One statement for the dashboard's totals. rating_count is kept per film in the same
# transaction as each rating, so summing the film rows replaces a count over the
# whole rating table; the client counts come from the (source, created_at) index.
_MOVIE = Movie.__table__
STATS = select(
    func.count(),
    func.coalesce(func.sum(_MOVIE.c.click_count), 0),
    func.coalesce(func.sum(_MOVIE.c.rating_count), 0),
    _clients_from("registered").label("registered"),
    _clients_from("movielens").label("movielens"),
).select_from(_MOVIE)


@bp.route("/stats", methods=["GET"])
@bp.alt_response(200, schema=StatsSchema, success=True)
def stats():
    """Counts for the dashboard and the loaded model's metrics."""
    write_buffered_views("stats")  # the totals still answer if it fails
    row = read_row(STATS, {})
    movie_count, total_clicks, rating_count = row[:3]
    by_source = {"registered": row.registered, "movielens": row.movielens}
    pack = _pack()

    body = {
        "movie_count": movie_count,
        "client_count": by_source.get("registered", 0),
        "dataset_user_count": by_source.get("movielens", 0),
        "total_clicks": int(total_clicks),
        "rating_count": int(rating_count),
        "model_loaded": pack is not None,
    }
    body.update(_model_metrics(pack))
    return jsonify(body)


@bp.route("/clients", methods=["GET"])
@bp.arguments(ClientQuerySchema, location="query")
@bp.alt_response(200, schema=ClientPageSchema, success=True)
def list_clients(args):
    """Clients with their rating and footprint counts (never a password)."""
    rating_count = (
        select(func.count())
        .select_from(Rating)
        .where(Rating.client_id == Client.id)
        .scalar_subquery()
    )
    footprint_count = (
        select(func.count())
        .select_from(Footprint)
        .where(Footprint.client_id == Client.id)
        .scalar_subquery()
    )
    filters = []
    text = (args.get("q") or "").strip()
    if text:
        filters.append(Client.username.icontains(text, autoescape=True))
    if args.get("source"):
        filters.append(Client.source == args["source"])
    offset = (args["page"] - 1) * args["per_page"]

    total = db.session.scalar(select(func.count()).select_from(Client).where(*filters))
    rows = db.session.execute(
        select(Client, rating_count.label("n_ratings"), footprint_count.label("n_fp"))
        .where(*filters)
        .order_by(Client.created_at.desc(), Client.id.desc())
        .offset(offset)
        .limit(args["per_page"])
    ).all()

    items = []
    for client, n_ratings, n_footprints in rows:
        item = client.to_dict()
        item.update(rating_count=n_ratings, footprint_count=n_footprints)
        items.append(item)
    return jsonify(
        {
            "items": items,
            "total": total,
            "page": args["page"],
            "per_page": args["per_page"],
        }
    )


def _get_client(client_id):
    client = db.session.get(Client, client_id)
    if client is None:
        raise ApiError(404, "client_not_found", "用户不存在")
    return client


@bp.route("/clients/<int:client_id>/reset-password", methods=["POST"])
@bp.alt_response(200, schema=TemporaryPasswordSchema, success=True)
def reset_password(client_id):
    """Give a client a temporary password, shown once and stored only hashed."""
    client = _get_client(client_id)

    temporary = secrets.token_urlsafe(12)
    client.password_hash = generate_password_hash(temporary)
    db.session.commit()

    logger.info("admin reset the password of client %s", client.id)
    return jsonify(
        {"id": client.id, "username": client.username, "temporary_password": temporary}
    )


@bp.route("/clients/<int:client_id>", methods=["PATCH"])
@bp.arguments(ClientPatchSchema)
@bp.alt_response(200, schema=AccountSchema, success=True)
def update_client(data, client_id):
    """Enable or disable a client account."""
    client = _get_client(client_id)

    client.is_active = data["is_active"]
    db.session.commit()

    return jsonify(client.to_dict())


@bp.route("/clients/<int:client_id>", methods=["DELETE"])
@bp.alt_response(200, schema=DeletedSchema, success=True)
def delete_client(client_id):
    """Delete a client with their ratings and footprints; rescore their films."""
    _get_client(client_id)
    rated = select(Rating.movie_id).where(Rating.client_id == client_id)

    # Lock the films first, in the same order as a rating change does.
    movie_ids = db.session.scalars(
        select(Movie.id).where(Movie.id.in_(rated)).order_by(Movie.id).with_for_update()
    ).all()
    # Then the account, before its footprints (a batch of views locks the same way).
    db.session.execute(
        select(Client.id).where(Client.id == client_id).with_for_update()
    )
    db.session.execute(delete(Rating).where(Rating.client_id == client_id))
    db.session.execute(delete(Footprint).where(Footprint.client_id == client_id))
    db.session.execute(delete(Client).where(Client.id == client_id))
    refresh_movie_rating(movie_ids)
    db.session.commit()

    logger.info("admin deleted client %s (%d rated films)", client_id, len(movie_ids))
    return jsonify({"deleted": 1, "rescored_movies": len(movie_ids)})


def _apply_movie_fields(movie, data):
    for key, value in data.items():
        if key == "tags":
            value = ",".join(tag.strip() for tag in value)
        elif isinstance(value, str):
            value = value.strip()
        setattr(movie, key, value)
    movie.year = film_year(movie.title, movie.release_date)


@bp.route("/movies", methods=["POST"])
@bp.arguments(MovieWriteSchema)
@bp.alt_response(201, schema=MovieSchema, success=True)
def create_movie(data):
    """Add a film (score, rating_count and click_count start empty)."""
    movie = Movie(tags="", rating_count=0, click_count=0, score=None)
    _apply_movie_fields(movie, data)
    db.session.add(movie)
    db.session.commit()
    get_catalogue().invalidate()

    return jsonify(movie.to_dict()), 201


@bp.route("/movies/<int:movie_id>", methods=["PATCH"])
@bp.arguments(MovieUpdateSchema)
@bp.alt_response(200, schema=MovieSchema, success=True)
def update_movie(data, movie_id):
    """Change a film's writable fields."""
    movie = db.session.get(Movie, movie_id)
    if movie is None:
        raise movie_not_found()

    _apply_movie_fields(movie, data)
    db.session.commit()
    get_catalogue().invalidate()

    return jsonify(movie.to_dict())


@bp.route("/movies/<int:movie_id>", methods=["DELETE"])
@bp.alt_response(200, schema=DeletedSchema, success=True)
def delete_movie(movie_id):
    """Delete a film with its ratings and footprints."""
    # The film's row before its raters' (the order of rating changes and batches
    # of views), so they wait for each other instead of deadlocking.
    db.session.execute(select(Movie.id).where(Movie.id == movie_id).with_for_update())
    raters = select(Rating.client_id).where(Rating.movie_id == movie_id)
    db.session.execute(history_changed(raters))
    db.session.execute(delete(Rating).where(Rating.movie_id == movie_id))
    db.session.execute(delete(Footprint).where(Footprint.movie_id == movie_id))
    deleted = db.session.execute(delete(Movie).where(Movie.id == movie_id)).rowcount
    if not deleted:
        db.session.rollback()
        raise movie_not_found()
    db.session.commit()
    get_catalogue().invalidate()

    return jsonify({"deleted": 1})


@bp.route("/charts", methods=["GET"])
@bp.alt_response(200, schema=ChartsSchema, success=True)
def charts():
    """Data for the dashboard charts."""
    histogram = dict(
        db.session.execute(
            select(Rating.rating, func.count()).group_by(Rating.rating)
        ).all()
    )
    films_per_tag, clicks_per_tag = Counter(), Counter()
    for tags, clicks in db.session.execute(select(Movie.tags, Movie.click_count)):
        for tag in (tags or "").split(","):
            if tag:
                films_per_tag[tag] += 1
                clicks_per_tag[tag] += clicks or 0
    top = db.session.execute(
        select(Movie.id, Movie.title, Movie.click_count)
        .order_by(Movie.click_count.desc(), Movie.id)
        .limit(10)
    ).all()
    today = utcnow().date()
    first_day = today - timedelta(days=REGISTRATION_DAYS - 1)
    day = func.date(Client.created_at)
    per_day = {
        str(row[0]): row[1]
        for row in db.session.execute(
            select(day, func.count())
            .where(Client.source == "registered", Client.created_at >= first_day)
            .group_by(day)
        )
    }

    days = [first_day + timedelta(days=offset) for offset in range(REGISTRATION_DAYS)]
    return jsonify(
        {
            "ratings_histogram": [
                {"rating": value, "count": histogram.get(value, 0)}
                for value in range(1, 6)
            ],
            "movies_per_tag": [
                {"tag": tag, "count": count}
                for tag, count in films_per_tag.most_common()
            ],
            "clicks_per_tag": [
                {"tag": tag, "clicks": count}
                for tag, count in clicks_per_tag.most_common()
            ],
            "top_clicked": [
                {"id": row.id, "title": row.title, "click_count": row.click_count}
                for row in top
            ],
            "registrations": [
                {"date": iso(d), "count": per_day.get(iso(d), 0)} for d in days
            ],
        }
    )


def training_manager():
    """Return this app's training manager (created on first use)."""
    manager = current_app.extensions.get("training")
    if manager is None:
        manager = TrainingManager(
            current_app.config["MODEL_PATH"],
            current_app.config["SQLALCHEMY_DATABASE_URI"],
            current_app.config.get("MODEL_TRAINER", DEFAULT_TRAINER),
        )
        current_app.extensions["training"] = manager
    return manager


def _model_state():
    body = training_manager().status()
    holder = current_app.extensions["recommender"]
    pack = holder.get()
    body["model"] = holder.status()
    if pack is not None:
        body["metrics"] = _model_metrics(pack)
    elif isinstance(body.get("metrics"), dict):
        body["metrics"] = {k: _finite(v) for k, v in body["metrics"].items()}
    return body


@bp.route("/model", methods=["GET"])
@bp.alt_response(200, schema=ModelStateSchema, success=True)
def model_state():
    """The training run's state and progress, and the loaded model's metrics."""
    return jsonify(_model_state())


@bp.route("/model/train", methods=["POST"])
@bp.alt_response(202, schema=ModelStateSchema, success=True)
def train_model():
    """Start training in a background process (409 while one runs)."""
    try:
        training_manager().start()
    except TrainingBusy:
        raise ApiError(409, "training_running", "模型正在训练中,请稍后再试") from None

    return jsonify(_model_state()), 202
