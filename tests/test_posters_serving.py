"""GET /posters/<id>: downloaded files, SVG placeholders, caching and 404s."""

import base64
import os
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import event

from models import Movie, db

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
SVG_NS = "{http://www.w3.org/2000/svg}"


def add_movie(app, movie_id=1, title="Toy Story (1995)", **fields):
    fields.setdefault("release_date", date(1995, 1, 1))
    fields.setdefault("tags", "Animation,Children's,Comedy")
    with app.app_context():
        db.session.add(Movie(id=movie_id, title=title, **fields))
        db.session.commit()


def write_poster(app, name, data):
    directory = Path(app.config["POSTER_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return directory / name


def svg_texts(body):
    root = ET.fromstring(body)
    return [
        "".join(node.itertext())
        for node in root.iter(f"{SVG_NS}text")
        if "".join(node.itertext())
    ]


def test_serves_downloaded_file_with_cache_headers(app, client):
    add_movie(app)
    write_poster(app, "1.gif", GIF)

    response = client.get("/posters/1")

    assert response.status_code == 200
    assert response.data == GIF
    assert response.mimetype == "image/gif"
    assert response.headers["ETag"]
    assert response.headers["Last-Modified"]
    assert response.cache_control.public
    assert response.cache_control.max_age == 86400
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_file_answers_conditional_requests_with_304(app, client):
    add_movie(app)
    write_poster(app, "1.webp", WEBP)
    first = client.get("/posters/1")

    by_etag = client.get("/posters/1", headers={"If-None-Match": first.headers["ETag"]})
    by_date = client.get(
        "/posters/1", headers={"If-Modified-Since": first.headers["Last-Modified"]}
    )
    stale = client.get("/posters/1", headers={"If-None-Match": '"not-this-one"'})

    assert first.mimetype == "image/webp"
    assert by_etag.status_code == 304
    assert by_etag.data == b""
    assert by_date.status_code == 304
    assert stale.status_code == 200
    assert stale.data == WEBP


def test_file_is_served_without_a_database_query(app, client):
    add_movie(app)
    write_poster(app, "1.gif", GIF)
    statements = []
    with app.app_context():
        engine = db.engine

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        file_response = client.get("/posters/1")
        n_for_file = len(statements)
        client.get("/posters/2")  # no file: the placeholder must look the film up
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert file_response.status_code == 200
    assert n_for_file == 0
    assert len(statements) == 1


def test_film_without_file_gets_svg_placeholder(app, client):
    add_movie(app, 7, "Toy Story (1995)")

    response = client.get("/posters/7")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert svg_texts(response.data) == ["Toy Story (1995)", "1995 · Animation"]
    root = ET.fromstring(response.data)
    assert root.get("width") == "300" and root.get("height") == "450"
    assert root.find(f"{SVG_NS}title").text == "Toy Story (1995)"
    assert response.cache_control.public
    assert response.cache_control.max_age == 3600
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_placeholder_escapes_the_title(app, client):
    title = 'Tom & Jerry <script>alert("x")</script>\x07'
    add_movie(app, 3, title, release_date=None, tags="")

    response = client.get("/posters/3")

    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>" not in body
    assert "Tom &amp; Jerry &lt;script&gt;" in body
    root = ET.fromstring(response.data)  # well-formed despite the control character
    assert root.find(f"{SVG_NS}title").text == 'Tom & Jerry <script>alert("x")</script>'
    assert root.get("aria-label") == 'Tom & Jerry <script>alert("x")</script>'
    # No year and no tag: only the wrapped title lines are drawn.
    assert [span.text for span in root.iter(f"{SVG_NS}tspan")] == [
        "Tom & Jerry <scr",
        'ipt>alert("x")</',
        "script>",
    ]
    assert len(root.findall(f"{SVG_NS}g/{SVG_NS}text")) == 1


def test_placeholder_wraps_long_titles_and_keeps_cjk(app, client):
    add_movie(
        app,
        4,
        "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)",
        release_date=date(1963, 1, 1),
        tags="Sci-Fi,War",
    )
    add_movie(app, 5, "霸王别姬 (1993)", release_date=date(1993, 1, 1), tags="Drama")

    long_title = ET.fromstring(client.get("/posters/4").data)
    chinese = client.get("/posters/5")

    spans = [span.text for span in long_title.iter(f"{SVG_NS}tspan")]
    assert len(spans) == 5
    assert spans[0] == "Dr. Strangelove"
    assert spans[-1].endswith("…")
    assert all(len(span) <= 16 for span in spans)
    assert svg_texts(chinese.data) == ["霸王别姬 (1993)", "1993 · Drama"]


def test_placeholder_has_its_own_etag_and_answers_304(app, client):
    add_movie(app, 1, "Toy Story (1995)")
    add_movie(app, 2, "GoldenEye (1995)")

    first = client.get("/posters/1")
    other = client.get("/posters/2")
    again = client.get("/posters/1", headers={"If-None-Match": first.headers["ETag"]})

    assert first.headers["ETag"]
    assert first.headers["ETag"] != other.headers["ETag"]
    assert again.status_code == 304
    assert again.data == b""


def test_downloaded_poster_replaces_the_placeholder(app, client):
    add_movie(app)
    placeholder = client.get("/posters/1")
    write_poster(app, "1.gif", GIF)

    revalidated = client.get(
        "/posters/1", headers={"If-None-Match": placeholder.headers["ETag"]}
    )

    assert placeholder.mimetype == "image/svg+xml"
    assert revalidated.status_code == 200
    assert revalidated.data == GIF
    assert revalidated.headers["ETag"] != placeholder.headers["ETag"]


def test_new_file_changes_the_etag(app, client):
    add_movie(app)
    path = write_poster(app, "1.gif", GIF)
    first = client.get("/posters/1")
    path.write_bytes(GIF + b"\x00")  # download_posters.py --force replaced it
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 60))

    second = client.get("/posters/1", headers={"If-None-Match": first.headers["ETag"]})

    assert second.status_code == 200
    assert second.data == GIF + b"\x00"


def test_unknown_film_is_404_json(app, client):
    add_movie(app)

    response = client.get("/posters/999")

    assert response.status_code == 404
    assert response.json == {
        "error": {"code": "movie_not_found", "message": "电影不存在"}
    }


@pytest.mark.parametrize(
    "path",
    ["/posters/abc", "/posters/-1", "/posters/1.gif", "/posters/..%2f1", "/posters/"],
)
def test_non_integer_id_is_404_json(app, client, path):
    add_movie(app)
    write_poster(app, "1.gif", GIF)

    response = client.get(path)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_film_json_points_at_the_poster_route(app, client):
    add_movie(app, 12, "Usual Suspects, The (1995)")
    with app.app_context():
        poster = db.session.get(Movie, 12).to_dict()["poster"]

    response = client.get(poster)

    assert poster == "/posters/12"
    assert response.status_code == 200
    assert svg_texts(response.data)[0].startswith("Usual Suspects")
