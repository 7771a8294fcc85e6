"""Films: home recommendations, detail, search, tags, ratings and history."""

from flask import Blueprint

bp = Blueprint("movies", __name__, url_prefix="/api")
