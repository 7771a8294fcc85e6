"""Posters: the downloaded image of a film, or a generated SVG placeholder.

``GET /posters/<id>`` serves ``<id>.<ext>`` from ``POSTER_DIR`` (filled by
``download_posters.py``) with ETag, Last-Modified and Cache-Control, answering
conditional requests with 304. A film without a file gets an SVG placeholder showing
its title, year and first tag, so the front end never shows a broken image. The file
is looked up first: only the placeholder needs the database.
"""

import hashlib
import re
import textwrap
from pathlib import Path
from xml.sax.saxutils import escape

from flask import Blueprint, current_app, request, send_from_directory
from sqlalchemy import select

from api import ApiError
from models import Movie, db

bp = Blueprint("posters", __name__, url_prefix="/posters")

# Same order as download_posters.EXTENSIONS: most posters are JPEG.
MIMETYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
}
FILE_MAX_AGE = 86400
# Shorter: a real poster may be downloaded later and should replace the placeholder.
PLACEHOLDER_MAX_AGE = 3600
# An SVG opened directly must not run scripts or load anything.
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
# Characters XML 1.0 forbids even when escaped.
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
PALETTE = (
    ("#1f2a44", "#3b5b92"),
    ("#3d1f44", "#7a3b92"),
    ("#1f4436", "#3b9270"),
    ("#44321f", "#92683b"),
    ("#441f24", "#923b47"),
    ("#1f3c44", "#3b8092"),
)
TITLE_WIDTH = 16
TITLE_LINES = 5


def poster_dir():
    """Return the absolute poster folder (relative settings are under the app root)."""
    return Path(current_app.root_path, current_app.config["POSTER_DIR"])


def find_poster(movie_id):
    """Return the file name of the film's downloaded poster, or None."""
    directory = poster_dir()
    for extension in MIMETYPES:
        name = f"{movie_id}.{extension}"
        if (directory / name).is_file():
            return name
    return None


def _text(value):
    """Escape for XML text and double-quoted attributes, minus forbidden chars."""
    return escape(XML_INVALID.sub("", value or ""), {'"': "&quot;"})


def placeholder_svg(movie_id, title, year=None, tag=None):
    """Return an SVG poster (300x450) naming the film; every text is escaped."""
    background, accent = PALETTE[movie_id % len(PALETTE)]
    lines = textwrap.wrap(
        XML_INVALID.sub("", title or "").strip() or "?",
        width=TITLE_WIDTH,
        max_lines=TITLE_LINES,
        placeholder="…",
    )
    first_y = 200 - (len(lines) - 1) * 17
    title_spans = "".join(
        f'<tspan x="150" y="{first_y + index * 34}">{_text(line)}</tspan>'
        for index, line in enumerate(lines)
    )
    details = " · ".join(str(part) for part in (year, tag) if part)
    details_text = (
        f'<text x="150" y="{first_y + len(lines) * 34 + 16}" font-size="18" '
        f'fill="#d8deea">{_text(details)}</text>'
        if details
        else ""
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="450" '
        f'viewBox="0 0 300 450" role="img" aria-label="{_text(title)}">'
        f"<title>{_text(title)}</title>"
        f'<rect width="300" height="450" fill="{background}"/>'
        f'<rect x="12" y="12" width="276" height="426" rx="10" fill="none" '
        f'stroke="{accent}" stroke-width="3"/>'
        '<g font-family="Helvetica, Arial, sans-serif" text-anchor="middle">'
        f'<text font-size="26" font-weight="bold" fill="#ffffff">{title_spans}</text>'
        f"{details_text}"
        "</g></svg>"
    )


def _placeholder_response(movie_id):
    row = db.session.execute(
        select(Movie.title, Movie.year, Movie.tags).where(Movie.id == movie_id)
    ).first()
    if row is None:
        raise ApiError(404, "movie_not_found", "电影不存在")

    tags = [tag for tag in (row.tags or "").split(",") if tag]
    year = row.year
    body = placeholder_svg(movie_id, row.title, year, tags[0] if tags else None)
    data = body.encode("utf-8")
    response = current_app.response_class(
        data, content_type="image/svg+xml; charset=utf-8"
    )
    response.set_etag(hashlib.sha256(data).hexdigest()[:32])
    response.cache_control.public = True
    response.cache_control.max_age = PLACEHOLDER_MAX_AGE
    response.headers["Content-Security-Policy"] = SVG_POLICY
    return response.make_conditional(request)


@bp.get("/<int:movie_id>")
def get_poster(movie_id):
    """Serve the film's poster file, or its generated placeholder."""
    name = find_poster(movie_id)
    if name is None:
        response = _placeholder_response(movie_id)
    else:
        extension = name.rsplit(".", 1)[1]
        response = send_from_directory(
            poster_dir(), name, mimetype=MIMETYPES[extension], max_age=FILE_MAX_AGE
        )
        response.cache_control.public = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
