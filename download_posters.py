"""Download film posters into the poster folder, in parallel and resumably.

Inputs (one of):
    --csv       a path or http(s) URL of ``movie_id,url`` rows, with or without a
                header line; extra columns are ignored, so the failure CSV of an
                earlier run is a valid input (default: the public movielens-posters
                mapping for MovieLens 100k on GitHub).
    --from-db   the ``poster_url`` column of the ``movie`` table (filled by
                ``init_dataset.py --details``) in ``--database-url``.

Outputs:
    ``<out>/<movie_id>.<ext>`` (jpg, png, gif or webp, chosen from the image's magic
    bytes), written atomically (a temporary file in ``--out``, then a rename); and a
    failure CSV ``movie_id,url,reason`` (default ``<out>/failures.csv``), rewritten on
    every run, that ``--csv`` takes again.

A poster already present is skipped, so a rerun resumes where the last one stopped
(``--force`` downloads again). An answer is kept only when its Content-Type is
``image/*``, its first bytes are those of a JPEG, PNG, WebP or GIF file and its body
is at most 5 MB. Movie ids must be integers: nothing is ever written outside
``--out``. Requests retry with exponential backoff on connection errors, timeouts,
429 and 5xx answers (honouring Retry-After).

Exit codes: 0 when at least one poster was downloaded or nothing was left to do,
1 when every download failed (or the source could not be read), 2 for bad arguments,
130 when interrupted (Ctrl-C; a rerun resumes).
"""

import argparse
import csv
import io
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.retry import Retry

from config import ConfigError, load_settings
from models import Movie, make_engine

logger = logging.getLogger("download_posters")

DEFAULT_CSV_URL = (
    "https://raw.githubusercontent.com/babu-thomas/movielens-posters/master/"
    "movie_poster.csv"
)
MAX_BYTES = 5 * 1024 * 1024
CHUNK_SIZE = 64 * 1024
BACKOFF_FACTOR = 0.5
MAX_REDIRECTS = 5
RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "movierec-download-posters/1.0"
EXTENSIONS = ("jpg", "png", "webp", "gif")
POSTER_NAME = re.compile(r"^(\d+)\.(jpg|png|webp|gif)$")
MOVIE_ID = re.compile(r"^\d{1,10}$", re.ASCII)
PART_NAME = re.compile(r"^\.\d+\..*\.part$")
STALE_PART_SECONDS = 3600


class SourceError(Exception):
    """The list of posters cannot be read."""


@dataclass(frozen=True)
class PosterTask:
    movie_id: int
    url: str


@dataclass
class Outcome:
    movie_id: int | str
    url: str
    status: str  # "downloaded", "skipped" or "failed"
    reason: str = ""


class DownloadError(Exception):
    """One poster could not be downloaded; ``reason`` is a short stable code."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def image_extension(head):
    """Return the file extension for an image's first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def make_session(retries, pool_size=10):
    """Return a requests Session that retries with backoff on 429, 5xx and timeouts."""
    retry = Retry(
        total=retries,
        backoff_factor=BACKOFF_FACTOR,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        # Hand back the last answer once retries run out, so it is reported as http_503.
        raise_on_status=False,
    )
    adapter = HTTPAdapter(
        max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size
    )
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = MAX_REDIRECTS
    session.headers["User-Agent"] = USER_AGENT
    return session


def _causes(exc):
    """Yield an exception and everything it wraps (requests nests urllib3's)."""
    seen = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.append(getattr(current, "reason", None))
        pending.append(current.__cause__)
        pending.append(current.__context__)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))


def _reason_for(exc):
    """Return a short stable code for a failed request."""
    causes = list(_causes(exc))
    # urllib3 derives NewConnectionError (refused, DNS failure) from
    # ConnectTimeoutError for old callers: test it first so it is not a "timeout".
    if any(isinstance(cause, NewConnectionError) for cause in causes):
        return "connection_error"
    timeouts = (requests.Timeout, Urllib3TimeoutError, TimeoutError)
    if any(isinstance(cause, timeouts) for cause in causes):
        return "timeout"
    if isinstance(exc, requests.TooManyRedirects):
        return "too_many_redirects"
    if isinstance(exc, requests.ConnectionError):
        return "connection_error"
    return "request_error"


def parse_rows(rows, origin, limit=None):
    """Check ``movie_id,url`` rows; return (tasks, rejected rows as Outcomes).

    A first row whose first field is not a number is taken as a header. Ids must be
    integers or the row is rejected (``invalid_id``): they name the files written.
    Later duplicates of an id are ignored with a warning. ``limit`` keeps only the
    first N data rows.
    """
    tasks = []
    rejected = []
    seen = set()
    n_rows = 0
    n_duplicates = 0
    for index, row in enumerate(rows):
        if not row or not any(field.strip() for field in row):
            continue
        raw_id = row[0].strip()
        url = row[1].strip() if len(row) > 1 else ""
        if index == 0 and not raw_id.isdigit():
            continue  # header
        if limit is not None and n_rows >= limit:
            break
        n_rows += 1
        if not MOVIE_ID.match(raw_id):
            rejected.append(Outcome(raw_id, url, "failed", "invalid_id"))
            continue
        movie_id = int(raw_id)
        if movie_id in seen:
            n_duplicates += 1
            continue
        seen.add(movie_id)
        if not url:
            rejected.append(Outcome(movie_id, url, "failed", "no_url"))
            continue
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            rejected.append(Outcome(movie_id, url, "failed", "invalid_url"))
            continue
        tasks.append(PosterTask(movie_id, url))
    if n_duplicates:
        logger.warning("%s: ignored %d duplicate movie ids", origin, n_duplicates)
    return tasks, rejected


def read_csv_source(source, timeout, retries, limit=None):
    """Read the mapping from a local file or an http(s) URL."""
    if urlsplit(source).scheme in ("http", "https"):
        try:
            with make_session(retries, pool_size=1) as session:
                response = session.get(source, timeout=timeout)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise SourceError(
                f"cannot fetch {source}: {_reason_for(exc)} ({exc})"
            ) from exc
        response.encoding = response.encoding or "utf-8"
        return parse_rows(csv.reader(io.StringIO(response.text)), source, limit)
    with open(source, newline="", encoding="utf-8-sig") as handle:
        return parse_rows(csv.reader(handle), source, limit)


def read_database_source(database_url, limit=None):
    """Read ``(id, poster_url)`` of the films that have a poster URL."""
    engine = make_engine(database_url)
    query = (
        select(Movie.id, Movie.poster_url)
        .where(Movie.poster_url.is_not(None), Movie.poster_url != "")
        .order_by(Movie.id)
        .limit(limit)
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise SourceError(
            f"database failed ({exc.__class__.__name__}): {reason}"
        ) from exc
    finally:
        engine.dispose()
    return parse_rows([[str(movie_id), url] for movie_id, url in rows], "database")


def existing_posters(out_dir):
    """Return {movie_id: [file names]} of the posters already in ``out_dir``.

    Also removes temporary files left by an interrupted run (older than an hour, so
    that another run working in the same folder keeps its own).
    """
    found = {}
    stale_before = time.time() - STALE_PART_SECONDS
    with os.scandir(out_dir) as entries:
        for entry in entries:
            match = POSTER_NAME.match(entry.name)
            if match and entry.is_file() and entry.stat().st_size > 0:
                found.setdefault(int(match.group(1)), []).append(entry.name)
            elif PART_NAME.match(entry.name) and entry.stat().st_mtime < stale_before:
                Path(entry.path).unlink(missing_ok=True)
    return found


class Downloader:
    """Fetch posters with one retrying Session per worker thread."""

    def __init__(self, out_dir, timeout, retries, pool_size=10):
        self.out_dir = Path(out_dir)
        self.timeout = timeout
        self.retries = retries
        self.pool_size = pool_size
        self._local = threading.local()
        self._sessions = []
        self._lock = threading.Lock()

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = make_session(self.retries, self.pool_size)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self):
        for session in self._sessions:
            session.close()

    def fetch(self, task):
        """Download one poster; return its Outcome (never raises for HTTP trouble)."""
        try:
            name = self._download(task)
        except DownloadError as exc:
            return Outcome(task.movie_id, task.url, "failed", exc.reason)
        except requests.RequestException as exc:
            return Outcome(task.movie_id, task.url, "failed", _reason_for(exc))
        except OSError as exc:
            logger.warning("cannot write poster %s: %s", task.movie_id, exc)
            return Outcome(task.movie_id, task.url, "failed", "write_error")
        return Outcome(task.movie_id, task.url, "downloaded", name)

    def _download(self, task):
        response = self._session().get(task.url, stream=True, timeout=self.timeout)
        with response:
            if response.status_code != 200:
                raise DownloadError(f"http_{response.status_code}")
            content_type = response.headers.get("Content-Type", "")
            if not content_type.split(";")[0].strip().lower().startswith("image/"):
                raise DownloadError("not_image")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_BYTES:
                raise DownloadError("too_large")
            return self._write(task.movie_id, response)

    def _write(self, movie_id, response):
        handle = tempfile.NamedTemporaryFile(
            dir=self.out_dir, prefix=f".{movie_id}.", suffix=".part", delete=False
        )
        temporary = Path(handle.name)
        try:
            with handle:
                head = b""
                extension = None
                n_bytes = 0
                for chunk in response.iter_content(CHUNK_SIZE):
                    n_bytes += len(chunk)
                    if n_bytes > MAX_BYTES:
                        raise DownloadError("too_large")
                    if extension is None:
                        head += chunk[:16]
                        if len(head) >= 12:
                            extension = image_extension(head)
                            if extension is None:
                                raise DownloadError("not_image_data")
                    handle.write(chunk)
            if extension is None:
                extension = image_extension(head)
            if extension is None:
                raise DownloadError("not_image_data" if n_bytes else "empty_body")
            name = f"{movie_id}.{extension}"
            os.replace(temporary, self.out_dir / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        # After --force a poster may change format: drop the old file so that one
        # poster per film remains and the server cannot pick the stale one.
        for other in EXTENSIONS:
            if other != extension:
                (self.out_dir / f"{movie_id}.{other}").unlink(missing_ok=True)
        return name


def write_failures(path, outcomes):
    """Write ``movie_id,url,reason`` rows atomically (a header alone when none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Integer ids in order first, then the rejected non-integer ones.
    rows = sorted(
        outcomes,
        key=lambda item: (
            (0, item.movie_id, "")
            if isinstance(item.movie_id, int)
            else (1, 0, str(item.movie_id))
        ),
    )
    handle = tempfile.NamedTemporaryFile(
        "w",
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=".part",
        delete=False,
        newline="",
        encoding="utf-8",
    )
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(["movie_id", "url", "reason"])
            writer.writerows([item.movie_id, item.url, item.reason] for item in rows)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def download_posters(
    tasks, out_dir, *, workers=8, timeout=10.0, retries=3, force=False, progress=True
):
    """Download every task not already present; return the list of Outcomes.

    Skipped posters are returned with status ``skipped``.
    """
    out_dir = Path(out_dir)
    present = {} if force else existing_posters(out_dir)
    outcomes = [
        Outcome(task.movie_id, task.url, "skipped")
        for task in tasks
        if task.movie_id in present
    ]
    pending = [task for task in tasks if task.movie_id not in present]
    if not pending:
        return outcomes

    downloader = Downloader(out_dir, timeout, retries, pool_size=workers)
    bar = tqdm(total=len(pending), unit="poster", desc="posters", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(downloader.fetch, task) for task in pending]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if outcome.status == "failed":
                logger.debug(
                    "poster %s failed: %s (%s)",
                    outcome.movie_id,
                    outcome.reason,
                    outcome.url,
                )
            bar.update(1)
    except BaseException:
        # Ctrl-C: drop the queued downloads instead of waiting for all of them; the
        # running ones finish (bounded by --timeout) and remove their temporary files.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
        downloader.close()
    return outcomes


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def build_parser(settings):
    parser = argparse.ArgumentParser(
        description="Download film posters (resumable, parallel).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--csv",
        default=DEFAULT_CSV_URL,
        help="path or http(s) URL of movie_id,url rows (header optional)",
    )
    source.add_argument(
        "--from-db",
        action="store_true",
        help="take movie.poster_url from --database-url instead of --csv",
    )
    parser.add_argument(
        "--database-url",
        default=settings["SQLALCHEMY_DATABASE_URI"],
        help="database read by --from-db; DATABASE_URL sets the default",
    )
    parser.add_argument(
        "--out",
        default=settings["POSTER_DIR"],
        help="poster folder; POSTER_DIR sets the default",
    )
    parser.add_argument(
        "--failures",
        default="<out>/failures.csv",
        help="failure CSV movie_id,url,reason, rewritten each run",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=8, help="parallel downloads"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        help="seconds to connect and between received bytes",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=3,
        help="retries per poster on errors, timeouts, 429 and 5xx (with backoff)",
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        help="take only the first N rows of the source",
    )
    parser.add_argument(
        "--force", action="store_true", help="download posters already present again"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bar")
    return parser


def summarize(outcomes, seconds):
    """Return the one-line summary of a run."""
    counts = Counter(outcome.status for outcome in outcomes)
    reasons = Counter(o.reason for o in outcomes if o.status == "failed")
    line = (
        f"posters: {counts['downloaded']} downloaded, {counts['skipped']} skipped, "
        f"{counts['failed']} failed"
    )
    if reasons:
        detail = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
        line += f" ({detail})"
    return line + f" in {seconds:.2f} s"


def main(argv=None) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(settings)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad arguments, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # One warning per retried request would bury the progress bar; reasons are counted.
    logging.getLogger("urllib3").setLevel(logging.ERROR)

    out_dir = Path(args.out)
    failures_path = Path(args.failures.replace("<out>", str(out_dir), 1))
    if not args.from_db and urlsplit(args.csv).scheme not in ("http", "https"):
        if not Path(args.csv).is_file():
            print(f"error: --csv {args.csv}: no such file", file=sys.stderr)
            return 2
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: --out {out_dir}: {exc}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    try:
        if args.from_db:
            tasks, rejected = read_database_source(args.database_url, args.limit)
        else:
            tasks, rejected = read_csv_source(
                args.csv, args.timeout, args.retries, args.limit
            )
    except (SourceError, OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"error: cannot read the poster list: {exc}", file=sys.stderr)
        return 1
    logger.info(
        "%d posters listed, %d rows rejected; writing to %s",
        len(tasks),
        len(rejected),
        out_dir,
    )

    try:
        outcomes = download_posters(
            tasks,
            out_dir,
            workers=args.workers,
            timeout=args.timeout,
            retries=args.retries,
            force=args.force,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    outcomes.extend(rejected)
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    write_failures(failures_path, failed)

    print(summarize(outcomes, time.perf_counter() - started))
    if failed:
        print(f"failures written to {failures_path} (rerun with --csv to retry them)")
    n_downloaded = sum(outcome.status == "downloaded" for outcome in outcomes)
    if failed and not n_downloaded:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
