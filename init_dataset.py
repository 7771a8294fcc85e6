"""Import MovieLens 100k into the configured database.

Inputs:
    --source   a folder holding u.item, u.data, u.user and u.genre; a local
               ml-100k.zip; or a URL (default: the official GroupLens zip). Zips are
               verified against an MD5 digest before use. ``ML100K_SOURCE`` sets the
               default.
    --details  optional CSV ``movie_id,imdb_id,director,actors,summary,poster_url``
               merged into the films (``ML100K_DETAILS`` sets the default).

Outputs: rows in ``movie``, ``client`` (source ``movielens``), ``rating`` and the
admin account in the database named by ``DATABASE_URL``.

Every input is read and checked before the database is touched, and all rows are
written in one transaction, so a failure leaves the database as it was. A rerun
updates rows in place (no duplicates); ``--reset`` drops and recreates the tables.

Exit codes: 0 success, 1 bad input data (missing file, checksum, malformed line),
2 bad arguments, 3 database unreachable or failing, 4 cancelled at the prompt.
"""

import argparse
import csv
import hashlib
import logging
import os
import secrets
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm
from werkzeug.security import generate_password_hash

from config import DATA_DIR, ML100K_MD5, load_settings
from models import (
    Admin,
    Client,
    Movie,
    Rating,
    db,
    film_year,
    make_engine,
    rescore_movies,
    utcnow,
)

logger = logging.getLogger("init_dataset")

REQUIRED_FILES = ("u.item", "u.data", "u.user", "u.genre")
CHUNK_SIZE = 5000
MONTHS = {
    name: number
    for number, name in enumerate(
        [
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ],
        start=1,
    )
}


class DatasetError(Exception):
    """The input data cannot be imported; the message names file and line."""


@dataclass
class Dataset:
    genres: list[str]
    movies: list[dict]
    users: list[dict]
    ratings: list[tuple[int, int, int, int]]
    details: dict[int, dict] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Reading the source


def md5_of(data_or_path):
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(data_or_path, bytes):
        digest.update(data_or_path)
    else:
        with open(data_or_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def download_zip(url, destination, expected_md5, progress=True):
    """Download the zip to ``destination`` atomically and verify its digest."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    retry = Retry(total=3, backoff_factor=1, status_forcelist=(429, 500, 502, 503, 504))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = session.get(url, stream=True, timeout=30)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise DatasetError(f"cannot download {url}: {exc}") from exc
    total = int(response.headers.get("Content-Length") or 0) or None
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as handle,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc="download",
                disable=not progress,
            ) as bar,
        ):
            for block in response.iter_content(1 << 16):
                handle.write(block)
                bar.update(len(block))
        actual = md5_of(tmp_name)
        if expected_md5 and actual != expected_md5:
            raise DatasetError(
                f"checksum mismatch for {url}: "
                f"expected MD5 {expected_md5}, got {actual}"
            )
        os.replace(tmp_name, destination)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return destination


def read_source_files(source, checksum=ML100K_MD5, cache_dir=DATA_DIR, progress=True):
    """Return ``{name: bytes}`` for the four required files from any kind of source."""
    source = str(source)
    if source.startswith(("http://", "https://")):
        cached = Path(cache_dir) / "ml-100k.zip"
        if not (cached.is_file() and (not checksum or md5_of(cached) == checksum)):
            download_zip(source, cached, checksum, progress)
        return _read_zip(cached, checksum)
    path = Path(source)
    if path.is_dir():
        files = {}
        for name in REQUIRED_FILES:
            file_path = path / name
            if not file_path.is_file():
                raise DatasetError(f"missing file: {file_path}")
            files[name] = file_path.read_bytes()
        return files
    if path.is_file():
        return _read_zip(path, checksum)
    raise DatasetError(f"source not found: {source}")


def _read_zip(path, checksum):
    if checksum:
        actual = md5_of(path)
        if actual != checksum:
            raise DatasetError(
                f"checksum mismatch for {path}: expected MD5 {checksum}, got {actual}"
            )
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"not a zip file: {path}") from exc
    with archive:
        by_name = {Path(info.filename).name: info for info in archive.infolist()}
        files = {}
        for name in REQUIRED_FILES:
            if name not in by_name:
                raise DatasetError(f"missing file in {path}: {name}")
            files[name] = archive.read(by_name[name])
    return files


def _lines(data, name, encoding):
    text = data.decode(encoding)
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def parse_release_date(value, where):
    """Parse '01-Jan-1995'; an empty value is unknown (None), never a made-up date."""
    if not value:
        return None
    try:
        day, month, year = value.split("-")
        return date(int(year), MONTHS[month], int(day))
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{where}: bad release date {value!r}") from exc


def parse_dataset(files, details_path=None):
    """Parse and check every file; raise DatasetError naming file and line."""
    genres = []
    for number, line in _lines(files["u.genre"], "u.genre", "latin-1"):
        parts = line.split("|")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise DatasetError(f"u.genre line {number}: expected 'name|index'")
        genres.append(parts[0])

    movies = []
    movie_ids = set()
    for number, line in _lines(files["u.item"], "u.item", "latin-1"):
        where = f"u.item line {number}"
        parts = line.split("|")
        if len(parts) != 5 + len(genres):
            raise DatasetError(
                f"{where}: expected {5 + len(genres)} fields, found {len(parts)}"
            )
        try:
            movie_id = int(parts[0])
        except ValueError as exc:
            raise DatasetError(
                f"{where}: film id {parts[0]!r} is not a number"
            ) from exc
        flags = parts[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DatasetError(f"{where}: genre flags must be 0 or 1")
        names = [
            genre for genre, flag in zip(genres, flags, strict=True) if flag == "1"
        ]
        # "unknown" only when the film has no other genre.
        if len(names) > 1 and "unknown" in names:
            names.remove("unknown")
        movies.append(
            {
                "id": movie_id,
                "title": parts[1].strip(),
                "tags": ",".join(names),
                "release_date": (
                    released := parse_release_date(parts[2].strip(), where)
                ),
                "year": film_year(parts[1].strip(), released),
                "imdb_url": parts[4].strip() or None,
            }
        )
        movie_ids.add(movie_id)

    users = []
    user_ids = set()
    for number, line in _lines(files["u.user"], "u.user", "latin-1"):
        parts = line.split("|")
        if len(parts) != 5:
            raise DatasetError(
                f"u.user line {number}: expected 5 fields, found {len(parts)}"
            )
        try:
            user_id, age = int(parts[0]), int(parts[1])
        except ValueError as exc:
            raise DatasetError(
                f"u.user line {number}: id and age must be numbers"
            ) from exc
        users.append(
            {
                "ml_id": user_id,
                "age": age,
                "gender": parts[2][:1] or None,
                "occupation": parts[3] or None,
                "zip_code": parts[4] or None,
            }
        )
        user_ids.add(user_id)

    ratings = []
    for number, line in _lines(files["u.data"], "u.data", "latin-1"):
        parts = line.split("\t")
        if len(parts) != 4:
            raise DatasetError(f"u.data line {number}: expected 4 tab-separated fields")
        try:
            user_id, movie_id, value, stamp = (int(part) for part in parts)
        except ValueError as exc:
            raise DatasetError(
                f"u.data line {number}: fields must be integers"
            ) from exc
        if not 1 <= value <= 5:
            raise DatasetError(f"u.data line {number}: rating {value} is outside 1-5")
        if user_id not in user_ids:
            raise DatasetError(f"u.data line {number}: unknown user {user_id}")
        if movie_id not in movie_ids:
            raise DatasetError(f"u.data line {number}: unknown film {movie_id}")
        ratings.append((user_id, movie_id, value, stamp))

    details = read_details(details_path, movie_ids) if details_path else {}
    return Dataset(genres, movies, users, ratings, details)


def read_details(path, movie_ids):
    """Read the details CSV; rows for films not in u.item are ignored with a warning."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"details file not found: {path}")
    details = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        expected = {
            "movie_id",
            "imdb_id",
            "director",
            "actors",
            "summary",
            "poster_url",
        }
        if not reader.fieldnames or not expected <= set(reader.fieldnames):
            raise DatasetError(
                f"{path.name}: header must name {', '.join(sorted(expected))}"
            )
        for row in reader:
            try:
                movie_id = int(row["movie_id"])
            except (TypeError, ValueError) as exc:
                raise DatasetError(
                    f"{path.name} line {reader.line_num}: "
                    f"bad movie_id {row['movie_id']!r}"
                ) from exc
            if movie_id not in movie_ids:
                logger.warning(
                    "%s: film %s is not in u.item, skipped", path.name, movie_id
                )
                continue
            details[movie_id] = {
                key: (row.get(key) or "").strip() or None
                for key in ("imdb_id", "director", "actors", "summary", "poster_url")
            }
    return details


# ---------------------------------------------------------------------------
# Writing the database


def _upsert(conn, table, rows, keys, update_columns):
    """Insert rows, updating ``update_columns`` where the key already exists."""
    if not rows:
        return
    if conn.dialect.name == "mysql":
        from sqlalchemy.dialects.mysql import insert

        stmt = insert(table)
        stmt = stmt.on_duplicate_key_update(
            {c: stmt.inserted[c] for c in update_columns}
        )
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update_columns}
        )
    else:
        from sqlalchemy.dialects.postgresql import insert

        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update_columns}
        )
    conn.execute(stmt, rows)


def _chunks(rows, size=CHUNK_SIZE):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def write_dataset(conn, dataset, progress=True):
    """Write films, users and ratings in the caller's transaction; return counts."""
    now = utcnow()
    movie_rows = []
    for movie in dataset.movies:
        row = dict(movie, created_at=now, updated_at=now)
        extra = dataset.details.get(movie["id"])
        if extra:
            row.update(extra)
        movie_rows.append(row)
    movie_columns = ["title", "tags", "release_date", "year", "imdb_url", "updated_at"]
    with_details = [row for row in movie_rows if row["id"] in dataset.details]
    plain = [row for row in movie_rows if row["id"] not in dataset.details]
    detail_columns = ["imdb_id", "director", "actors", "summary", "poster_url"]
    with tqdm(
        total=len(movie_rows), desc="films", unit="row", disable=not progress
    ) as bar:
        for chunk in _chunks(plain):
            _upsert(conn, Movie.__table__, chunk, ["id"], movie_columns)
            bar.update(len(chunk))
        for chunk in _chunks(with_details):
            _upsert(
                conn, Movie.__table__, chunk, ["id"], movie_columns + detail_columns
            )
            bar.update(len(chunk))

    user_rows = [
        {
            "username": f"ml_user_{user['ml_id']}",
            "password_hash": None,
            "source": "movielens",
            "created_at": now,
            "is_active": True,
            "age": user["age"],
            "gender": user["gender"],
            "occupation": user["occupation"],
            "zip_code": user["zip_code"],
        }
        for user in dataset.users
    ]
    with tqdm(
        total=len(user_rows), desc="users", unit="row", disable=not progress
    ) as bar:
        for chunk in _chunks(user_rows):
            _upsert(
                conn,
                Client.__table__,
                chunk,
                ["username"],
                ["source", "age", "gender", "occupation", "zip_code"],
            )
            bar.update(len(chunk))
    client_ids = dict(
        conn.execute(
            select(Client.username, Client.id).where(Client.source == "movielens")
        ).all()
    )

    rating_rows = [
        {
            "client_id": client_ids[f"ml_user_{user_id}"],
            "movie_id": movie_id,
            "rating": value,
            "rated_at": datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None),
        }
        for user_id, movie_id, value, stamp in dataset.ratings
    ]
    with tqdm(
        total=len(rating_rows), desc="ratings", unit="row", disable=not progress
    ) as bar:
        for chunk in _chunks(rating_rows):
            _upsert(
                conn,
                Rating.__table__,
                chunk,
                ["client_id", "movie_id"],
                ["rating", "rated_at"],
            )
            bar.update(len(chunk))

    refresh_movie_scores(conn)
    return {
        "films": len(movie_rows),
        "users": len(user_rows),
        "ratings": len(rating_rows),
        "details": len(dataset.details),
    }


def refresh_movie_scores(conn):
    """Recompute every film's score and rating_count from the rating table in SQL."""
    conn.execute(rescore_movies())


def ensure_admin(conn, username, password):
    """Create the admin account; return a generated password to print, or None."""
    existing = conn.execute(select(Admin.id).where(Admin.username == username)).first()
    generated = None
    if password is None:
        if existing:
            return None
        password = generated = secrets.token_urlsafe(15)
    password_hash = generate_password_hash(password)
    if existing:
        conn.execute(
            update(Admin)
            .where(Admin.id == existing.id)
            .values(password_hash=password_hash)
        )
    else:
        conn.execute(
            Admin.__table__.insert().values(
                username=username, password_hash=password_hash, created_at=utcnow()
            )
        )
    return generated


# Indexes older versions created and this one dropped, by table.
OBSOLETE_INDEXES = {"movie": ("ix_movie_click_count",)}


def upgrade_schema(engine):
    """Bring an older database to the models: add the nullable columns and indexes
    newer models have, and drop the indexes they no longer want."""
    inspector = inspect(engine)
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        for table_name, names in OBSOLETE_INDEXES.items():
            present = {index["name"] for index in inspector.get_indexes(table_name)}
            for name in names:
                if name in present:
                    on_table = (
                        f" ON {quote(table_name)}"
                        if engine.dialect.name == "mysql"
                        else ""
                    )
                    conn.execute(text(f"DROP INDEX {quote(name)}{on_table}"))
                    logger.info("dropped index %s", name)
        for table in db.metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present or not column.nullable:
                    continue
                column_type = column.type.compile(dialect=engine.dialect)
                conn.execute(
                    text(
                        f"ALTER TABLE {quote(table.name)} "
                        f"ADD COLUMN {quote(column.name)} {column_type}"
                    )
                )
                logger.info("added column %s.%s", table.name, column.name)
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def import_dataset(
    database_url,
    source,
    details=None,
    *,
    reset=False,
    checksum=ML100K_MD5,
    admin_username="root",
    admin_password=None,
    progress=True,
):
    """Read, check and import the data set; return a summary dict.

    Raises:
        DatasetError: the input is missing, corrupt or malformed.
        SQLAlchemyError: the database cannot be reached or refuses the rows.
    """
    started = time.perf_counter()
    files = read_source_files(source, checksum=checksum, progress=progress)
    dataset = parse_dataset(files, details)
    logger.info(
        "parsed %d films, %d users, %d ratings",
        len(dataset.movies),
        len(dataset.users),
        len(dataset.ratings),
    )

    engine = make_engine(database_url)
    try:
        if reset:
            db.metadata.drop_all(engine)
        db.metadata.create_all(engine)
        upgrade_schema(engine)
        with engine.begin() as conn:
            counts = write_dataset(conn, dataset, progress=progress)
            generated = ensure_admin(conn, admin_username, admin_password)
    finally:
        engine.dispose()
    counts["seconds"] = round(time.perf_counter() - started, 2)
    counts["admin_password"] = generated
    return counts


def _confirm(message):
    if not sys.stdin.isatty():
        return False
    return input(f"{message} [y/N] ").strip().lower() in {"y", "yes"}


def main(argv=None):
    settings = load_settings()
    parser = argparse.ArgumentParser(
        description="Import MovieLens 100k into the configured database.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--source", default=settings["ML100K_SOURCE"], help="folder, zip file or URL"
    )
    parser.add_argument(
        "--details", default=settings["ML100K_DETAILS"], help="details CSV to merge"
    )
    parser.add_argument(
        "--checksum", default=ML100K_MD5, help="expected MD5 of a zip source ('' skips)"
    )
    parser.add_argument(
        "--database-url",
        default=settings["SQLALCHEMY_DATABASE_URI"],
        help="database to fill (default from DATABASE_URL)",
    )
    parser.add_argument("--reset", action="store_true", help="drop and recreate tables")
    parser.add_argument("--yes", action="store_true", help="do not ask before --reset")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    if (
        args.reset
        and not args.yes
        and not _confirm(
            "--reset drops every table (registered users, ratings, history). Continue?"
        )
    ):
        print(
            "error: --reset needs confirmation (answer y, or pass --yes)",
            file=sys.stderr,
        )
        return 4
    if args.database_url.startswith("sqlite:///"):
        Path(args.database_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    try:
        summary = import_dataset(
            args.database_url,
            args.source,
            args.details,
            reset=args.reset,
            checksum=args.checksum or None,
            admin_username=settings["ADMIN_USERNAME"],
            admin_password=settings["ADMIN_PASSWORD"],
            progress=not args.no_progress,
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(
            f"error: database failed ({exc.__class__.__name__}): {reason}",
            file=sys.stderr,
        )
        return 3

    # Running servers drop their cached film cards now, not after their TTL.
    from api.catalogue import CatalogueVersion

    CatalogueVersion(settings["CACHE_URL"], settings["CATALOGUE_STAMP"]).bump()

    if summary["admin_password"]:
        print(
            f"admin account '{settings['ADMIN_USERNAME']}' created with password: "
            f"{summary['admin_password']}  "
            "(shown once; set ADMIN_PASSWORD to choose one)"
        )
    print(
        f"imported {summary['films']} films, {summary['users']} users, "
        f"{summary['ratings']} ratings, {summary['details']} detail rows "
        f"in {summary['seconds']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
