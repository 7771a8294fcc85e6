"""The AI movie expert."""

from flask import Blueprint

bp = Blueprint("chat", __name__, url_prefix="/api/ai")
