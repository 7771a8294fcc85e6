"""download_posters.py against a local HTTP server with good and bad answers."""

import base64
import csv
import os
import socket
import struct
import threading
import time
import zlib
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from conftest import POSTERS_CSV
from urllib3.exceptions import MaxRetryError, NameResolutionError, ReadTimeoutError

import download_posters
from download_posters import MAX_BYTES, main, read_csv_source
from models import Movie, db


def tiny_png():
    """Return a valid 1x1 RGB PNG, built by hand (no imaging library needed)."""

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xc0\x39\x2b")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


PNG = tiny_png()
# A 2x3 baseline JPEG (made once with Pillow), the classic 1x1 GIF and the 1x1
# lossless WebP that browsers' feature tests use.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABQODxIPDRQSEBIXFRQYHjIhHhwcHj0sLiQySUBMS0dARkVQ"
    "WnNiUFVtVkVGZIhlbXd7gYKBTmCNl4x9lnN+gXz/2wBDARUXFx4aHjshITt8U0ZTfHx8fHx8fHx8fHx8"
    "fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHz/wAARCAADAAIDASIAAhEBAxEB/8QA"
    "FQABAQAAAAAAAAAAAAAAAAAAAAT/xAAUEAEAAAAAAAAAAAAAAAAAAAAA/8QAFQEBAQAAAAAAAAAAAAAA"
    "AAAABAX/xAAUEQEAAAAAAAAAAAAAAAAAAAAA/9oADAMBAAIRAxEAPwCIARaf/9k="
)
GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
IMAGES = {"png": PNG, "jpg": JPEG, "gif": GIF, "webp": WEBP}
MIMETYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif"}
MIMETYPES["webp"] = "image/webp"
HTML = b"<!doctype html><html><body>Poster not found</body></html>"
SLOW_SECONDS = 3.0


class PosterHandler(BaseHTTPRequestHandler):
    """Routes: /img/<name>.<ext>, /html, /missing, /flaky/<key>, /rate-limited/<key>,
    /slow, /huge, /huge-declared, /wrong-type, /fake-jpeg, /redirect, /mapping.csv."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms stalls between headers and body

    def log_message(self, format, *args):  # keep the test output clean
        pass

    def send(self, status, body, content_type, length=True):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        server = self.server
        with server.lock:
            server.hits[self.path] = server.hits.get(self.path, 0) + 1
            n_hits = server.hits[self.path]
        path = self.path.split("?", 1)[0]  # a query string only makes hits unique
        if path.startswith("/img/"):
            extension = path.rsplit(".", 1)[1]
            return self.send(200, IMAGES[extension], MIMETYPES[extension])
        if path == "/html":
            return self.send(200, HTML, "text/html; charset=utf-8")
        if path == "/missing":
            return self.send(404, b"not found", "text/plain")
        if path.startswith("/flaky/"):
            if n_hits == 1:
                return self.send(503, b"busy", "text/plain")
            return self.send(200, PNG, "image/png")
        if path.startswith("/rate-limited/"):
            if n_hits == 1:
                self.send_response(429)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self.send(200, GIF, "image/gif")
        if path == "/slow":
            time.sleep(SLOW_SECONDS)
            return self.send(200, PNG, "image/png")
        if path == "/huge":  # no Content-Length: the cap applies while streaming
            return self.send(200, PNG + b"\0" * MAX_BYTES, "image/png", length=False)
        if path == "/huge-declared":
            return self.send(200, PNG + b"\0" * MAX_BYTES, "image/png")
        if path == "/wrong-type":
            return self.send(200, PNG, "application/octet-stream")
        if path == "/fake-jpeg":
            return self.send(200, HTML, "image/jpeg")
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img/moved.gif")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if path == "/mapping.csv":
            body = f"1,{server.base}/img/1.png\n2,{server.base}/img/2.gif\n".encode()
            return self.send(200, body, "text/csv")
        return self.send(404, b"no route", "text/plain")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PosterHandler)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    httpd.hits = {}
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def out(tmp_path):
    return tmp_path / "posters"


def write_csv(path, rows, header=False):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(["movie_id", "url"])
        writer.writerows(rows)
    return path


def run(csv_path, out, *extra):
    return main(["--csv", str(csv_path), "--out", str(out), "--no-progress", *extra])


def read_failures(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def files_in(directory):
    return sorted(path.name for path in Path(directory).iterdir())


def test_downloads_each_image_format(server, tmp_path, out, capsys):
    rows = [(n, f"{server.base}/img/a{n}.{ext}") for n, ext in enumerate(IMAGES, 1)]
    source = write_csv(tmp_path / "posters.csv", rows)

    code = run(source, out)

    assert code == 0
    assert files_in(out) == ["1.png", "2.jpg", "3.gif", "4.webp", "failures.csv"]
    assert (out / "1.png").read_bytes() == PNG
    assert (out / "2.jpg").read_bytes() == JPEG
    assert (out / "3.gif").read_bytes() == GIF
    assert (out / "4.webp").read_bytes() == WEBP
    assert read_failures(out / "failures.csv") == []
    assert "posters: 4 downloaded, 0 skipped, 0 failed" in capsys.readouterr().out


def test_rerun_skips_existing_and_force_downloads_again(server, tmp_path, out, capsys):
    rows = [(10, f"{server.base}/img/b10.png"), (11, f"{server.base}/img/b11.gif")]
    source = write_csv(tmp_path / "posters.csv", rows)
    assert run(source, out) == 0
    capsys.readouterr()

    rerun = run(source, out)
    rerun_output = capsys.readouterr().out
    hits_after_rerun = server.hits["/img/b10.png"]
    (out / "11.gif").write_bytes(b"stale")
    forced = run(source, out, "--force")

    assert rerun == 0
    assert "0 downloaded, 2 skipped, 0 failed" in rerun_output
    assert hits_after_rerun == 1
    assert forced == 0
    assert server.hits["/img/b10.png"] == 2
    assert (out / "11.gif").read_bytes() == GIF


def test_force_replaces_a_poster_that_changed_format(server, tmp_path, out):
    out.mkdir()
    (out / "12.jpg").write_bytes(JPEG)
    source = write_csv(tmp_path / "posters.csv", [(12, f"{server.base}/img/c12.png")])

    assert run(source, out, "--force") == 0

    assert files_in(out) == ["12.png", "failures.csv"]


def test_failures_are_reported_by_reason(server, tmp_path, out, capsys):
    base = server.base
    rows = [
        (20, f"{base}/img/d20.png"),
        (21, f"{base}/html"),
        (22, f"{base}/missing"),
        (23, f"{base}/slow"),
        (24, f"{base}/huge"),
        (25, f"{base}/huge-declared"),
        (26, f"{base}/wrong-type"),
        (27, f"{base}/fake-jpeg"),
        (28, ""),
        (29, "ftp://example.org/poster.jpg"),
    ]
    source = write_csv(tmp_path / "posters.csv", rows, header=True)

    # The timeout leaves room for a loaded machine: only /slow may hit it.
    code = run(source, out, "--timeout", "1", "--retries", "0")

    assert code == 0  # one poster arrived
    assert files_in(out) == ["20.png", "failures.csv"]
    failures = read_failures(out / "failures.csv")
    assert [(row["movie_id"], row["reason"]) for row in failures] == [
        ("21", "not_image"),
        ("22", "http_404"),
        ("23", "timeout"),
        ("24", "too_large"),
        ("25", "too_large"),
        ("26", "not_image"),
        ("27", "not_image_data"),
        ("28", "no_url"),
        ("29", "invalid_url"),
    ]
    assert failures[1]["url"] == f"{base}/missing"
    output = capsys.readouterr().out
    assert "posters: 1 downloaded, 0 skipped, 9 failed" in output
    assert "http_404 1, invalid_url 1, no_url 1, not_image 2" in output
    assert "timeout 1, too_large 2" in output


def test_503_is_retried_then_succeeds(server, tmp_path, out):
    source = write_csv(tmp_path / "posters.csv", [(30, f"{server.base}/flaky/e30")])

    code = run(source, out, "--retries", "2")

    assert code == 0
    assert server.hits["/flaky/e30"] == 2
    assert (out / "30.png").read_bytes() == PNG


def test_429_is_retried_after_the_announced_delay(server, tmp_path, out):
    source = write_csv(
        tmp_path / "posters.csv", [(33, f"{server.base}/rate-limited/k33")]
    )

    code = run(source, out, "--retries", "1")

    assert code == 0
    assert server.hits["/rate-limited/k33"] == 2
    assert (out / "33.gif").read_bytes() == GIF


def test_failure_csv_can_be_fed_back(server, tmp_path, out, capsys):
    rows = [(31, f"{server.base}/flaky/f31"), (32, f"{server.base}/missing")]
    source = write_csv(tmp_path / "posters.csv", rows)
    failures = tmp_path / "failed.csv"

    first = run(source, out, "--retries", "0", "--failures", str(failures))
    first_failures = read_failures(failures)
    second = run(failures, out, "--retries", "0", "--failures", str(failures))

    assert first == 1  # nothing succeeded
    assert [row["reason"] for row in first_failures] == ["http_503", "http_404"]
    assert second == 0
    assert (out / "31.png").read_bytes() == PNG
    assert read_failures(failures) == [
        {"movie_id": "32", "url": f"{server.base}/missing", "reason": "http_404"}
    ]
    assert "1 downloaded, 0 skipped, 1 failed" in capsys.readouterr().out


def test_every_download_failing_exits_1(server, tmp_path, out):
    rows = [(40, f"{server.base}/missing"), (41, f"{server.base}/html")]
    source = write_csv(tmp_path / "posters.csv", rows)

    assert run(source, out) == 1
    assert files_in(out) == ["failures.csv"]


def test_nothing_left_to_do_exits_0(server, tmp_path, out, capsys):
    out.mkdir()
    (out / "42.gif").write_bytes(GIF)
    source = write_csv(tmp_path / "posters.csv", [(42, f"{server.base}/missing?id=42")])
    empty = write_csv(tmp_path / "empty.csv", [], header=True)

    assert run(source, out) == 0
    assert run(empty, out) == 0
    assert "/missing?id=42" not in server.hits
    assert "0 downloaded, 0 skipped, 0 failed" in capsys.readouterr().out


def test_ids_must_be_integers_and_nothing_escapes_out(server, tmp_path, out):
    rows = [
        ("../escaped", f"{server.base}/img/g1.png"),
        ("/tmp/abs", f"{server.base}/img/g2.png"),
        ("4.5", f"{server.base}/img/g3.png"),
        ("-7", f"{server.base}/img/g4.png"),
        ("007", f"{server.base}/img/g5.png"),
    ]
    source = write_csv(tmp_path / "posters.csv", rows, header=True)

    code = run(source, out)

    assert code == 0
    assert files_in(out) == ["7.png", "failures.csv"]
    assert files_in(tmp_path) == ["posters", "posters.csv"]
    reasons = {
        row["movie_id"]: row["reason"] for row in read_failures(out / "failures.csv")
    }
    assert reasons == {
        "../escaped": "invalid_id",
        "/tmp/abs": "invalid_id",
        "4.5": "invalid_id",
        "-7": "invalid_id",
    }
    assert "/img/g1.png" not in server.hits


def test_limit_takes_the_first_rows(server, tmp_path, out):
    rows = [(n, f"{server.base}/img/h{n}.gif") for n in (53, 51, 52)]
    source = write_csv(tmp_path / "posters.csv", rows)

    assert run(source, out, "--limit", "2") == 0

    assert files_in(out) == ["51.gif", "53.gif", "failures.csv"]


def test_redirects_are_followed(server, tmp_path, out):
    source = write_csv(tmp_path / "posters.csv", [(60, f"{server.base}/redirect")])

    assert run(source, out) == 0

    assert (out / "60.gif").read_bytes() == GIF


def test_csv_source_can_be_a_url(server, out):
    assert main(["--csv", f"{server.base}/mapping.csv", "--out", str(out)]) == 0

    assert (out / "1.png").read_bytes() == PNG
    assert (out / "2.gif").read_bytes() == GIF


def test_unreachable_csv_url_exits_1(server, out):
    code = main(
        ["--csv", f"{server.base}/missing", "--out", str(out), "--retries", "0"]
    )

    assert code == 1


def test_reads_the_shared_mapping_without_header():
    tasks, rejected = read_csv_source(str(POSTERS_CSV), 5, 0)

    assert len(tasks) == 1592
    assert rejected == []
    assert tasks[0].movie_id == 1
    assert tasks[0].url.startswith("https://images-na.ssl-images-amazon.com/")
    assert len({task.movie_id for task in tasks}) == 1592


@pytest.mark.parametrize(
    "arguments",
    [
        ["--workers", "0"],
        ["--timeout", "0"],
        ["--retries", "-1"],
        ["--limit", "0"],
        ["--workers", "many"],
        ["--csv", "no-such-file.csv"],
        ["--from-db", "--csv", "x.csv"],
        ["--unknown-flag"],
    ],
)
def test_bad_arguments_exit_2(tmp_path, arguments, capsys):
    code = main([*arguments, "--out", str(tmp_path / "posters")])

    assert code == 2
    assert "error" in capsys.readouterr().err


def test_from_db_reads_poster_urls(server, app, db_url, tmp_path, out):
    with app.app_context():
        db.session.add_all(
            [
                Movie(id=70, title="A", poster_url=f"{server.base}/img/i70.jpg"),
                Movie(id=71, title="B", poster_url=None),
                Movie(id=72, title="C", poster_url=""),
                Movie(
                    id=73,
                    title="D",
                    poster_url=f"{server.base}/missing",
                    release_date=date(1995, 1, 1),
                ),
            ]
        )
        db.session.commit()

    code = main(
        ["--from-db", "--database-url", db_url, "--out", str(out), "--no-progress"]
    )

    assert code == 0
    assert files_in(out) == ["70.jpg", "failures.csv"]
    assert (out / "70.jpg").read_bytes() == JPEG
    assert [row["movie_id"] for row in read_failures(out / "failures.csv")] == ["73"]


def test_unreachable_database_exits_1(tmp_path, out, capsys):
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'movies.db'}"

    code = main(["--from-db", "--database-url", url, "--out", str(out)])

    assert code == 1
    assert "cannot read the poster list" in capsys.readouterr().err


def test_image_extension_reads_magic_bytes():
    assert download_posters.image_extension(PNG) == "png"
    assert download_posters.image_extension(JPEG) == "jpg"
    assert download_posters.image_extension(GIF) == "gif"
    assert download_posters.image_extension(WEBP) == "webp"
    assert download_posters.image_extension(b"RIFF\0\0\0\0WAVEfmt ") is None
    assert download_posters.image_extension(HTML) is None


def test_stale_temporary_files_are_removed(server, tmp_path, out):
    out.mkdir()
    stale = out / ".80.k2j3.part"
    fresh = out / ".81.x9y8.part"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    source = write_csv(tmp_path / "posters.csv", [(80, f"{server.base}/img/j80.gif")])

    assert run(source, out) == 0

    assert files_in(out) == [".81.x9y8.part", "80.gif", "failures.csv"]


def test_refused_connection_is_not_a_timeout(tmp_path, out):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = write_csv(
        tmp_path / "posters.csv", [(90, f"http://127.0.0.1:{port}/p.jpg")]
    )

    assert run(source, out, "--retries", "1") == 1

    assert read_failures(out / "failures.csv")[0]["reason"] == "connection_error"


def test_dns_failure_is_a_connection_error_not_a_timeout():
    # urllib3 derives NameResolutionError from ConnectTimeoutError; requests wraps it.
    dns = NameResolutionError("posters.invalid", None, socket.gaierror(-2, "unknown"))
    error = requests.ConnectionError(MaxRetryError(None, "/p.jpg", reason=dns))
    timeout = requests.ConnectionError(
        MaxRetryError(None, "/p.jpg", reason=ReadTimeoutError(None, "/p.jpg", "slow"))
    )

    assert download_posters._reason_for(error) == "connection_error"
    assert download_posters._reason_for(timeout) == "timeout"
    assert download_posters._reason_for(requests.TooManyRedirects()) == (
        "too_many_redirects"
    )
