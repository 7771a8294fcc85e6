"""Application factory.

``python app.py`` runs the development server on HOST:PORT (default
127.0.0.1:5000). Production runs under gunicorn (``make serve``).
"""

import logging
from pathlib import Path

from flask import Flask, current_app, jsonify, send_from_directory
from flask_cors import CORS
from sqlalchemy import text
from sqlalchemy.engine import make_url
from werkzeug.routing import PathConverter

from api import (
    ApiError,
    FastJSONProvider,
    limiter,
    register_blueprints,
    register_error_handlers,
)
from assistant import provider_library
from config import INSTANCE_DIR, ConfigError, development_secret_key, load_settings
from models import ViewBuffer, db
from recommender import PackHolder

logger = logging.getLogger(__name__)


def create_app(config=None):
    """Create the Flask application.

    Args:
        config: Optional mapping of settings that override the environment
            (tests pass ``config.testing_settings(...)``).
    """
    app = Flask(__name__, instance_path=str(INSTANCE_DIR), static_folder=None)
    settings = dict(config) if config is not None else load_settings()
    app.config.from_mapping(settings)
    # Chinese messages and latin-1 titles go out as UTF-8 text, not \u escapes.
    app.json = FastJSONProvider(app)
    _check_secret_key(app)

    if app.config.get("LLM_API_KEY"):
        provider_library()  # before gunicorn forks, so workers share it
    db.init_app(app)
    limiter.init_app(app)
    CORS(
        app,
        resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}},
        supports_credentials=True,
    )
    app.extensions["recommender"] = PackHolder(app.config["MODEL_PATH"])
    if app.config.get("CLICK_FLUSH_SECONDS"):
        app.extensions["views"] = ViewBuffer(app, app.config["CLICK_FLUSH_SECONDS"])

    register_error_handlers(app)
    register_blueprints(app)
    app.after_request(_security_headers)
    app.add_url_rule("/api/health", "health", health)
    app.add_url_rule("/api/ping", "ping", ping)
    _register_frontend(app)

    if not app.testing:
        app.extensions["recommender"].get()
        logger.info(
            "app started: env=%s database=%s",
            app.config["APP_ENV"],
            make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name(),
        )
    return app


def _check_secret_key(app):
    if app.config.get("SECRET_KEY"):
        return
    if app.config["APP_ENV"] == "production":
        raise ConfigError(
            "SECRET_KEY is not set: production needs a fixed secret key "
            '(for example: export SECRET_KEY="$(python -c '
            "'import secrets; print(secrets.token_hex(32))')\")"
        )
    app.config["SECRET_KEY"] = development_secret_key(app.instance_path)


def _security_headers(response):
    """Browsers must not guess a type: a JSON or SVG answer never runs as a page."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def ping():
    """Answer without touching the database: liveness, and the benchmarks' floor."""
    return jsonify({"pong": True})


def health():
    """Report whether the database answers and whether a model pack is loaded."""
    database = {"ok": True, "backend": db.engine.url.get_backend_name()}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure here means "not reachable"
        db.session.rollback()
        database.update(ok=False, error=exc.__class__.__name__)
    model = current_app.extensions["recommender"].status()
    body = {"status": "ok" if database["ok"] else "degraded", "database": database}
    body["model"] = model
    return jsonify(body), 200 if database["ok"] else 503


class FrontendPathConverter(PathConverter):
    """A path that is not under /api or /posters.

    Those prefixes never reach the front end's catch-all route, so an API path
    with the wrong method gets 405 and an unknown one 404, as JSON.
    """

    regex = r"(?!(?:api|posters)(?:/|$))[^/].*?"


def _register_frontend(app):
    """Serve the built Vue app at / with client-side routes falling back to it."""
    dist = Path(app.config["FRONTEND_DIST"])
    app.url_map.converters["frontend_path"] = FrontendPathConverter

    def frontend(path=""):
        if not (dist / "index.html").is_file():
            raise ApiError(
                404,
                "frontend_not_built",
                "前端尚未构建:请在 frontend/ 中运行 npm run build",
            )
        if path and (dist / path).is_file():
            return send_from_directory(dist, path)
        if path.startswith("assets/"):
            # A stale hashed asset: 404, not the page (a script must not get HTML).
            raise ApiError(404, "not_found")
        response = send_from_directory(dist, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    app.add_url_rule("/", "frontend", frontend)
    app.add_url_rule("/<frontend_path:path>", "frontend", frontend)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        application = create_app()
    except ConfigError as exc:  # a clear message, not a traceback
        raise SystemExit(f"error: {exc}") from None
    application.run(
        host=application.config["HOST"],
        port=application.config["PORT"],
        debug=application.config["DEBUG"],
        use_reloader=False,
    )
