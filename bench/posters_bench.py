"""Measure download_posters.py on a local server, and GET /posters/<id> in-process.

1. Starts a threaded HTTP server in a separate process on 127.0.0.1 (random port)
   serving --count JPEG posters of --size bytes, writes a movie_id,url CSV, and runs
   download_posters.main with --workers; prints posters/s and MB/s, then the time of
   a rerun (every poster skipped).
2. Times GET /posters/<id> through the Flask test client (SQLite, no network) for a
   downloaded file, a 304 revalidation and a generated placeholder.

Usage: python bench/posters_bench.py [--count 1000] [--workers 8] [--size 16384]
                                    [--repeat 3] [--requests 2000]
"""

import argparse
import base64
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A real 2x3 JPEG; the bench pads it after its end marker to a poster-like size.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABQODxIPDRQSEBIXFRQYHjIhHhwcHj0sLiQySUBMS0dARkVQ"
    "WnNiUFVtVkVGZIhlbXd7gYKBTmCNl4x9lnN+gXz/2wBDARUXFx4aHjshITt8U0ZTfHx8fHx8fHx8fHx8"
    "fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHz/wAARCAADAAIDASIAAhEBAxEB/8QA"
    "FQABAQAAAAAAAAAAAAAAAAAAAAT/xAAUEAEAAAAAAAAAAAAAAAAAAAAA/8QAFQEBAQAAAAAAAAAAAAAA"
    "AAAABAX/xAAUEQEAAAAAAAAAAAAAAAAAAAAA/9oADAMBAAIRAxEAPwCIARaf/9k="
)


def serve(size, ready):
    """Run the poster server until killed; report its port through ``ready``."""
    body = JPEG + b"\0" * max(0, size - len(JPEG))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle plus delayed
        # ACKs stall each keep-alive answer by ~40 ms and the bench measures that.
        disable_nagle_algorithm = True

        def log_message(self, format, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    ready.put(httpd.server_address[1])
    httpd.serve_forever()


def bench_download(count, workers, size, repeat):
    from download_posters import main

    ready = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(size, ready), daemon=True)
    server.start()
    try:
        port = ready.get(timeout=10)
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "posters.csv"
            source.write_text(
                "".join(
                    f"{n},http://127.0.0.1:{port}/p/{n}.jpg\n"
                    for n in range(1, count + 1)
                )
            )
            timings = []
            rerun_timings = []
            for run in range(repeat):
                out = Path(tmp) / f"posters-{run}"
                arguments = ["--csv", str(source), "--out", str(out), "--no-progress"]
                arguments += ["--workers", str(workers)]
                started = time.perf_counter()
                code = main(arguments)
                timings.append(time.perf_counter() - started)
                n_files = len(list(out.glob("*.jpg")))
                if code != 0 or n_files != count:
                    raise SystemExit(f"download failed: exit {code}, {n_files} files")
                started = time.perf_counter()
                code = main(arguments)
                rerun_timings.append(time.perf_counter() - started)
    finally:
        server.kill()
        server.join()
    seconds = statistics.median(timings)
    print(
        f"download: {count} posters of {size / 1024:.0f} KiB with {workers} workers "
        f"in {seconds:.2f} s (median of {repeat}) = {count / seconds:.0f} posters/s, "
        f"{count * size / 1e6 / seconds:.1f} MB/s"
    )
    print(f"rerun (all skipped): {statistics.median(rerun_timings):.3f} s")


def bench_serving(requests_per_case):
    from app import create_app
    from config import engine_options, testing_settings
    from models import Movie, db

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        posters = Path(tmp) / "posters"
        posters.mkdir()
        (posters / "1.jpg").write_bytes(JPEG + b"\0" * 16000)
        app = create_app(
            testing_settings(
                SQLALCHEMY_DATABASE_URI=url,
                SQLALCHEMY_ENGINE_OPTIONS=engine_options(url),
                POSTER_DIR=str(posters),
                MODEL_PATH=str(Path(tmp) / "model.joblib"),
            )
        )
        with app.app_context():
            db.create_all()
            db.session.add_all(
                [
                    Movie(id=1, title="Toy Story (1995)", tags="Animation"),
                    Movie(
                        id=2,
                        title="GoldenEye (1995)",
                        tags="Action,Adventure,Thriller",
                        release_date=date(1995, 1, 1),
                    ),
                ]
            )
            db.session.commit()
        client = app.test_client()
        etag = client.get("/posters/1").headers["ETag"]
        cases = [
            ("file", "/posters/1", {}, 200),
            ("file 304", "/posters/1", {"If-None-Match": etag}, 304),
            ("placeholder", "/posters/2", {}, 200),
        ]
        for name, path, headers, status in cases:
            started = time.perf_counter()
            for _ in range(requests_per_case):
                response = client.get(path, headers=headers)
                assert response.status_code == status, response.status_code
            seconds = time.perf_counter() - started
            print(
                f"serve {name}: {requests_per_case / seconds:.0f} requests/s "
                f"({seconds / requests_per_case * 1000:.2f} ms each, test client)"
            )
        with app.app_context():
            db.engine.dispose()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=1000, help="posters to fetch")
    parser.add_argument("--workers", type=int, default=8, help="download workers")
    parser.add_argument("--size", type=int, default=16384, help="bytes per poster")
    parser.add_argument("--repeat", type=int, default=3, help="download runs (median)")
    parser.add_argument(
        "--requests", type=int, default=2000, help="GET /posters/<id> per case"
    )
    args = parser.parse_args(argv)

    bench_download(args.count, args.workers, args.size, args.repeat)
    bench_serving(args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
