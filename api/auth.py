"""Authentication: register, log in and out, the current user, password change."""

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/api/auth")
