"""Admin dashboard: stats, clients, films, charts and model training."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/api/admin")
