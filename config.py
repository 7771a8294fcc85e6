"""Application settings.

This is the only module that reads the environment. Everything else reads
``current_app.config`` (inside the app) or calls :func:`load_settings` (scripts).
A ``.env`` file in the project root is loaded first when present; real environment
variables win over it.
"""

import os
import secrets
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = BASE_DIR / "data"
INSTANCE_DIR = BASE_DIR / "instance"

DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# GroupLens publishes this digest beside the zip (ml-100k.zip.md5).
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"

ENVIRONMENTS = ("development", "production", "testing")


class ConfigError(RuntimeError):
    """Raised when the settings cannot make a working application."""


def _bool(value, default=False):
    if value is None or value == "":
        return default
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _int(env, name, default):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env, name, default):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def development_secret_key(instance_dir=INSTANCE_DIR):
    """Return the development secret key, generating it once under ``instance/``."""
    path = Path(instance_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # O_EXCL: two processes starting at once must not both write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def engine_options(database_url):
    """Return SQLAlchemy engine options suited to the database behind the URL."""
    if database_url.startswith("mysql"):
        # Servers drop idle connections (wait_timeout): recycle before then. The
        # pre-ping and the reset on return are models.py's: a ping only after a
        # second idle, a rollback only when a transaction is open.
        return {"pool_recycle": 280, "pool_size": 10, "pool_reset_on_return": None}
    if database_url.startswith("sqlite"):
        return {"connect_args": {"timeout": 15}}
    return {"pool_pre_ping": True}


def autocommit_options(options):
    """Return engine options for MySQL's engine of one-statement reads.

    Hot pages run their single read there (models.read_row): with no transaction
    open there is no ROLLBACK to send afterwards, one round trip less per page.
    """
    options = dict(options or {})
    options.update(
        pool_size=2,  # each request takes one connection for a single statement
        isolation_level="AUTOCOMMIT",
        skip_autocommit_rollback=True,
    )
    return options


def load_settings(environ=None, *, load_dotenv_file=True):
    """Read every setting from the environment and return a config mapping.

    Args:
        environ: Mapping to read instead of ``os.environ`` (tests use this).
        load_dotenv_file: Load ``BASE_DIR/.env`` first when reading ``os.environ``.

    Returns:
        A dict of Flask config keys.
    """
    if environ is None:
        if load_dotenv_file:
            load_dotenv(BASE_DIR / ".env", override=False)
        environ = os.environ
    env = environ

    app_env = (env.get("APP_ENV") or "development").strip().lower()
    if app_env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}")

    database_url = env.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'movies.db'}"
    cors = env.get("CORS_ORIGINS", "http://localhost:5173")
    settings = {
        "APP_ENV": app_env,
        "TESTING": app_env == "testing",
        # The Werkzeug debugger runs code typed into the page: only on request.
        "DEBUG": _bool(env.get("FLASK_DEBUG"), False),
        "SECRET_KEY": env.get("SECRET_KEY") or None,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url),
        "MODEL_PATH": env.get("MODEL_PATH") or str(DATA_DIR / "model.joblib"),
        "RECOMMENDER": (env.get("RECOMMENDER") or "hybrid").strip().lower(),
        "POSTER_DIR": env.get("POSTER_DIR") or str(DATA_DIR / "posters"),
        "FRONTEND_DIST": env.get("FRONTEND_DIST")
        or str(BASE_DIR / "frontend" / "dist"),
        "CORS_ORIGINS": [o.strip() for o in cors.split(",") if o.strip()],
        "HOST": env.get("HOST") or "127.0.0.1",
        "PORT": _int(env, "PORT", 5000),
        "WORKERS": _int(env, "WEB_CONCURRENCY", 2),
        "THREADS": _int(env, "GUNICORN_THREADS", 1),
        "WARM_UP": _bool(env.get("GUNICORN_WARM_UP"), True),
        "LLM_API_KEY": env.get("LLM_API_KEY") or None,
        "LLM_BASE_URL": env.get("LLM_BASE_URL") or DASHSCOPE_BASE_URL,
        "LLM_MODEL": env.get("LLM_MODEL") or "qwen-plus",
        "LLM_TIMEOUT": _float(env, "LLM_TIMEOUT", 30.0),
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI") or "memory://",
        "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), True),
        "CACHE_URL": env.get("CACHE_URL") or None,
        "CATALOGUE_STAMP": env.get("CATALOGUE_STAMP")
        or str(INSTANCE_DIR / "catalogue.version"),
        "CATALOGUE_TTL": _int(env, "CATALOGUE_TTL", 300),
        # Film clicks and clients' views are written in batches this often
        # (models.ViewBuffer); 0 writes each view with its page.
        "CLICK_FLUSH_SECONDS": _float(env, "CLICK_FLUSH_SECONDS", 1.0),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), False),
        # Re-signing the cookie on every answer costs each request; sessions last
        # from login, not from the last request.
        "SESSION_REFRESH_EACH_REQUEST": False,
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "ADMIN_USERNAME": env.get("ADMIN_USERNAME") or "root",
        "ADMIN_PASSWORD": env.get("ADMIN_PASSWORD") or None,
        "ML100K_SOURCE": env.get("ML100K_SOURCE") or ML100K_URL,
        "ML100K_DETAILS": env.get("ML100K_DETAILS") or None,
    }
    if not 0 <= settings["CLICK_FLUSH_SECONDS"] < 86_400:  # also refuses nan, inf
        raise ConfigError("CLICK_FLUSH_SECONDS must be 0 or more (seconds, < 1 day)")
    if settings["RECOMMENDER"] not in {"hybrid", "itemcf", "content", "popular"}:
        raise ConfigError("RECOMMENDER must be hybrid, itemcf, content or popular")
    return settings


def testing_settings(**overrides):
    """Return settings for the test suite: no .env, no secrets from the machine."""
    env = {"APP_ENV": "testing", "SECRET_KEY": "test-only-" + secrets.token_hex(8)}
    settings = load_settings(env)
    settings.update(
        {
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options("sqlite://"),
            "RATELIMIT_ENABLED": False,
            "LLM_API_KEY": None,
            # Each view writes its click, so tests read counts at once; the
            # batched writer has tests of its own (tests/test_clicks.py).
            "CLICK_FLUSH_SECONDS": 0,
        }
    )
    settings.update(overrides)
    return settings
