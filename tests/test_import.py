"""init_dataset.py on the real MovieLens 100k files and on small broken copies."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import DETAILS_CSV, ML100K_DIR, mysql_url, require_mysql
from sqlalchemy import func, select

import init_dataset
from init_dataset import DatasetError, import_dataset
from models import Admin, Client, Movie, Rating, make_engine


def counts(url):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "films": conn.scalar(select(func.count()).select_from(Movie)),
                "clients": conn.scalar(select(func.count()).select_from(Client)),
                "ratings": conn.scalar(select(func.count()).select_from(Rating)),
                "admins": conn.scalar(select(func.count()).select_from(Admin)),
            }
    finally:
        engine.dispose()


def fetch_movie(url, movie_id):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Movie).where(Movie.id == movie_id)).one()
    finally:
        engine.dispose()


@pytest.fixture
def small_source(tmp_path):
    """A copy of the real files cut down to 200 ratings, for fast broken variants."""
    folder = tmp_path / "ml-small"
    folder.mkdir()
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(ML100K_DIR / name, folder / name)
    lines = (ML100K_DIR / "u.data").read_text().splitlines()[:200]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def real_db_url(backend, tmp_path_factory):
    """A fresh import of the real files that only this module reads.

    (The session-wide ``ml_db_url`` gains users and ratings from other tests.)
    """
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('import') / 'movies.db'}"
    else:
        url = mysql_url("_import")
        require_mysql(url)
    import_dataset(url, ML100K_DIR, DETAILS_CSV, reset=True, progress=False)
    return url


def test_real_import_counts_and_facts(real_db_url):
    assert counts(real_db_url) == {
        "films": 1682,
        "clients": 943,
        "ratings": 100000,
        "admins": 1,
    }
    toy_story = fetch_movie(real_db_url, 1)
    assert toy_story.title == "Toy Story (1995)"
    assert toy_story.tags == "Animation,Children's,Comedy"
    assert toy_story.rating_count == 452
    assert toy_story.score == pytest.approx(3.8783, abs=1e-3)
    assert toy_story.release_date.isoformat() == "1995-01-01"
    # The details CSV was merged.
    assert toy_story.director == "John Lasseter"
    assert "Tom Hanks" in toy_story.actors
    assert toy_story.imdb_id == "tt0114709"


def test_film_267_has_no_made_up_date(real_db_url):
    unknown = fetch_movie(real_db_url, 267)
    assert unknown.title == "unknown"
    assert unknown.release_date is None
    assert unknown.tags == "unknown"


def test_latin1_title_reads_correctly(real_db_url):
    assert fetch_movie(real_db_url, 543).title == "Misérables, Les (1995)"


def test_duplicate_titles_stay_separate_films(real_db_url):
    engine = make_engine(real_db_url)
    with engine.connect() as conn:
        repeated = conn.execute(
            select(Movie.title).group_by(Movie.title).having(func.count() > 1)
        ).all()
    engine.dispose()
    assert len(repeated) == 18


def test_movielens_users_have_no_password(real_db_url):
    engine = make_engine(real_db_url)
    with engine.connect() as conn:
        user = conn.execute(select(Client).where(Client.username == "ml_user_42")).one()
    engine.dispose()
    assert user.source == "movielens"
    assert user.password_hash is None
    assert user.age == 30 and user.gender == "M" and user.occupation == "administrator"


def test_latin1_title_in_json(ml_client):
    from flask import json

    with ml_client.application.app_context():
        from models import db

        movie = db.session.get(Movie, 543)
        body = json.dumps(movie.to_dict(), ensure_ascii=False)
    assert "Misérables, Les (1995)" in body
    assert '"release_date": "1995-01-01"' in body


def test_rerun_is_idempotent_and_updates_changed_rows(db_url, small_source):
    import_dataset(db_url, small_source, reset=True, progress=False)
    first = counts(db_url)
    assert first["films"] == 1682 and first["ratings"] == 200

    # Change one film's title and one rating in the source, then import again.
    item = (small_source / "u.item").read_bytes()
    item = item.replace(b"1|Toy Story (1995)|", b"1|Toy Story, The (1995)|")
    (small_source / "u.item").write_bytes(item)
    lines = (small_source / "u.data").read_text().splitlines()
    user, movie, rating, stamp = lines[0].split("\t")
    new_rating = 1 if rating != "1" else 2
    lines[0] = "\t".join([user, movie, str(new_rating), stamp])
    (small_source / "u.data").write_text("\n".join(lines) + "\n")

    import_dataset(db_url, small_source, progress=False)
    assert counts(db_url) == first
    assert fetch_movie(db_url, 1).title == "Toy Story, The (1995)"
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = conn.scalar(
            select(Rating.rating)
            .join(Client)
            .where(Client.username == f"ml_user_{user}", Rating.movie_id == int(movie))
        )
        film = conn.execute(select(Movie).where(Movie.id == int(movie))).one()
        mean = conn.scalar(
            select(func.avg(Rating.rating)).where(Rating.movie_id == int(movie))
        )
    engine.dispose()
    assert stored == new_rating
    assert film.score == pytest.approx(float(mean))


def test_reset_drops_registered_rows(db_url, small_source):
    import_dataset(db_url, small_source, reset=True, progress=False)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            Client.__table__.insert().values(username="someone", source="registered")
        )
    engine.dispose()
    assert counts(db_url)["clients"] == 944

    import_dataset(db_url, small_source, reset=True, progress=False)
    assert counts(db_url)["clients"] == 943


def test_admin_password_is_generated_hashed_and_kept(db_url, small_source):
    summary = import_dataset(db_url, small_source, reset=True, progress=False)
    generated = summary["admin_password"]
    assert generated and len(generated) >= 16
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = conn.scalar(select(Admin.password_hash))
    engine.dispose()
    assert generated not in stored
    from werkzeug.security import check_password_hash

    assert check_password_hash(stored, generated)
    # A rerun without ADMIN_PASSWORD keeps the account and prints nothing new.
    assert (
        import_dataset(db_url, small_source, progress=False)["admin_password"] is None
    )


def test_details_merge_without_losing_them_on_plain_rerun(db_url, small_source):
    import_dataset(db_url, small_source, DETAILS_CSV, reset=True, progress=False)
    import_dataset(db_url, small_source, progress=False)
    assert fetch_movie(db_url, 1).director == "John Lasseter"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f: _append(f / "u.item", b"9999|Broken film|01-Jan-1995\n"),
            "u.item line 1683",
        ),
        (
            lambda f: _append(f / "u.data", b"1\t1\t7\t881250949\n"),
            "rating 7 is outside 1-5",
        ),
        (lambda f: _append(f / "u.data", b"1\t1\n"), "u.data line 201"),
        (lambda f: (f / "u.user").unlink(), "missing file"),
    ],
    ids=["truncated-item-line", "rating-of-7", "truncated-data-line", "missing-file"],
)
def test_broken_input_is_refused_and_database_untouched(
    db_url, small_source, mutate, message
):
    import_dataset(db_url, small_source, reset=True, progress=False)
    before = counts(db_url)
    mutate(small_source)
    with pytest.raises(DatasetError, match=message):
        import_dataset(db_url, small_source, progress=False)
    assert counts(db_url) == before


def _append(path, data):
    with open(path, "ab") as handle:
        handle.write(data)


def _zip_folder(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for child in sorted(folder.iterdir()):
            archive.write(child, f"ml-100k/{child.name}")
    return hashlib.md5(zip_path.read_bytes(), usedforsecurity=False).hexdigest()


def test_zip_source_with_matching_checksum_imports(db_url, small_source, tmp_path):
    digest = _zip_folder(small_source, tmp_path / "ml-100k.zip")
    summary = import_dataset(
        db_url, tmp_path / "ml-100k.zip", checksum=digest, reset=True, progress=False
    )
    assert summary["films"] == 1682 and summary["ratings"] == 200


def test_zip_with_wrong_checksum_is_refused(db_url, small_source, tmp_path):
    import_dataset(db_url, small_source, reset=True, progress=False)
    before = counts(db_url)
    _zip_folder(small_source, tmp_path / "ml-100k.zip")
    # No checksum given: the official GroupLens digest applies and cannot match.
    with pytest.raises(DatasetError, match="checksum mismatch"):
        import_dataset(db_url, tmp_path / "ml-100k.zip", progress=False)
    assert counts(db_url) == before


def test_cli_reports_summary_and_exit_codes(db_url, small_source, capsys):
    code = init_dataset.main(
        ["--source", str(small_source), "--database-url", db_url, "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "imported 1682 films, 943 users, 200 ratings" in out

    code = init_dataset.main(
        [
            "--source",
            str(small_source / "nope"),
            "--database-url",
            db_url,
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: source not found")


def test_cli_reset_without_yes_is_refused_when_not_interactive(db_url, small_source):
    code = init_dataset.main(
        ["--source", str(small_source), "--database-url", db_url, "--reset"]
    )
    assert code == 4


def test_unreachable_database_is_a_clear_error(small_source, capsys):
    url = "mysql+pymysql://root@127.0.0.1:1/nowhere?charset=utf8mb4"
    code = init_dataset.main(
        ["--source", str(small_source), "--database-url", url, "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: database failed (OperationalError)")
    assert len(err.strip().splitlines()) == 1


def test_import_failing_half_way_leaves_database_as_it_was(
    db_url, small_source, monkeypatch
):
    import_dataset(db_url, small_source, reset=True, progress=False)
    before = counts(db_url)
    toy_story_title = fetch_movie(db_url, 1).title

    # Change the source, then make the write fail after films, users and ratings
    # were written inside the transaction: nothing of it may remain.
    item = (small_source / "u.item").read_bytes()
    (small_source / "u.item").write_bytes(item.replace(b"|Toy Story (1995)|", b"|X|"))
    lines = (ML100K_DIR / "u.data").read_text().splitlines()[:5000]
    (small_source / "u.data").write_text("\n".join(lines) + "\n")

    def fail(conn):
        raise RuntimeError("disk full")

    monkeypatch.setattr(init_dataset, "refresh_movie_scores", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        import_dataset(db_url, small_source, progress=False)
    assert counts(db_url) == before
    assert fetch_movie(db_url, 1).title == toy_story_title


def test_import_killed_while_writing_leaves_database_as_it_was(db_url, small_source):
    import_dataset(db_url, small_source, reset=True, progress=False)
    before = counts(db_url)

    root = Path(init_dataset.__file__).parent
    command = [sys.executable, str(root / "init_dataset.py"), "--source"]
    command += [str(ML100K_DIR), "--database-url", db_url]
    process = subprocess.Popen(
        command, cwd=root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    # The progress bars go to stderr: kill the process once it is writing ratings.
    seen = b""
    while b"ratings:" not in seen:
        chunk = os.read(process.stderr.fileno(), 256)
        assert chunk, "the import ended before writing ratings"
        seen += chunk
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert counts(db_url) == before
