"""Faults while serving: the database goes away, the model pack breaks, training dies.

- MariaDB unreachable: a TCP proxy on loopback stands between the app and the shared
  server (which other test runs use, so it is never stopped); cutting the proxy
  closes its listener and every live connection. Database routes answer 503 JSON,
  ``/api/health`` says so, and the same app recovers once the proxy is back.
- The model pack deleted or corrupted under a running app: it keeps serving (the
  loaded pack, or tags and popularity when there is none), logs once, and
  ``/api/health`` and ``/api/admin/model`` report it.
- Training killed half-way through writing the pack, or failing on a full disk: the
  previous pack stays in place and in use, and the next run works.

The model and training tests use SQLite only: they exercise files, not the database.
"""

import errno
import hashlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from api_data import ADMIN_PASSWORD, ADMIN_USERNAME, seed
from conftest import make_app, mysql_url, require_mysql
from sqlalchemy.engine import make_url

from models import db, dispose_engines

# --- a TCP proxy that can be cut -----------------------------------------------------


class TcpProxy:
    """Forward 127.0.0.1:<port> to an upstream address, in threads."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.port = 0
        self._listener = None
        self._live = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopped.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener):
        while not self._stopped.is_set():
            try:
                downstream, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            for sock in (downstream, upstream):
                sock.settimeout(None)
            with self._lock:
                self._live.update((downstream, upstream))
            for source, target in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(
                    target=self._pump, args=(source, target), daemon=True
                ).start()

    def _pump(self, source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, target)

    def _close(self, *socks):
        for sock in socks:
            with self._lock:
                self._live.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self):
        """Refuse new connections and drop every open one, like a stopped server."""
        self._stopped.set()
        self._listener.close()
        with self._lock:
            live = list(self._live)
        self._close(*live)

    def restore(self):
        """Listen again on the same port."""
        return self.start()


@pytest.fixture
def proxied_app(tmp_path):
    """A seeded app on MariaDB reached only through a proxy, and the proxy."""
    direct = mysql_url("_faults")
    require_mysql(direct)
    url = make_url(direct)
    proxy = TcpProxy((url.host, url.port or 3306)).start()
    app = make_app(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        ),
        MODEL_PATH=str(tmp_path / "model.joblib"),
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
    seed(app)
    yield app, proxy
    if proxy._stopped.is_set():
        proxy.restore()
    with app.app_context():
        db.session.remove()
        db.drop_all()
        dispose_engines()
    proxy.cut()


def test_database_outage_is_503_and_the_app_recovers_by_itself(
    proxied_app, auth, caplog
):
    app, proxy = proxied_app
    member = app.test_client()
    auth.register_and_login(member)
    visitor = app.test_client()
    assert visitor.get("/api/movies/detail/1").status_code == 200
    assert visitor.get("/api/health").get_json()["database"]["ok"] is True

    proxy.cut()
    caplog.clear()
    health = visitor.get("/api/health")
    assert health.status_code == 503
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["database"] == {
        "ok": False,
        "backend": "mysql",
        "error": "OperationalError",
    }
    calls = [
        visitor.get("/api/movies/detail/1"),
        visitor.get("/api/movies?q=star"),
        visitor.post("/api/auth/login", json={"username": "x", "password": "y" * 8}),
        member.put("/api/movies/1/rating", json={"rating": 4}),
        member.get("/api/me/history"),
    ]
    for response in calls:
        assert response.status_code == 503, response.get_json()
        assert response.get_json()["error"] == {
            "code": "database_unavailable",
            "message": "数据库暂时不可用,请稍后再试",
        }
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "database unavailable: OperationalError" in warnings

    proxy.restore()
    assert visitor.get("/api/health").status_code == 200
    detail = visitor.get("/api/movies/detail/1")
    assert detail.status_code == 200
    assert detail.get_json()["title"] == "Star Wars (1977)"
    rated = member.put("/api/movies/1/rating", json={"rating": 4})
    assert rated.status_code == 201
    assert rated.get_json()["rating_count"] == 4
    assert member.get("/api/movies/detail/2").status_code == 200
    assert member.get("/api/me/history").get_json()["total"] == 1


# --- model pack faults ---------------------------------------------------------------


@pytest.fixture(scope="module")
def good_pack(tmp_path_factory):
    """A real pack trained on the hand-made catalogue (about a second)."""
    from train_evaluate_model import train

    folder = tmp_path_factory.mktemp("pack")
    database = f"sqlite:///{folder / 'train.db'}"
    app = make_app(database, MODEL_PATH=str(folder / "unused.joblib"))
    with app.app_context():
        db.create_all()
    seed(app)
    with app.app_context():
        dispose_engines()
    path = folder / "good.joblib"
    train(database, str(path), progress_callback=lambda stage, fraction: None)
    return path


@pytest.fixture
def pack_app(tmp_path, good_pack):
    """A seeded SQLite app serving a copy of the good pack, checked on every call."""
    model_path = tmp_path / "models" / "model.joblib"
    model_path.parent.mkdir()
    shutil.copy(good_pack, model_path)
    app = make_app(f"sqlite:///{tmp_path / 'app.db'}", MODEL_PATH=str(model_path))
    with app.app_context():
        db.create_all()
    seed(app)
    app.extensions["recommender"].check_interval = 0
    yield app
    with app.app_context():
        dispose_engines()


def admin_client(app, auth):
    client = app.test_client()
    auth.login_admin(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    return client


def model_status(client):
    """(health's model, /api/admin/model's model), which must agree."""
    health = client.get("/api/health").get_json()["model"]
    admin = client.get("/api/admin/model").get_json()["model"]
    assert health == admin
    return health


def pack_warnings(caplog):
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "model pack" in r.getMessage()
    ]


def replace_file(path, data):
    """Put ``data`` at ``path`` the way a deploy would: a new file renamed over it."""
    temporary = path.with_suffix(".incoming")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def test_deleted_pack_keeps_serving_and_says_so(pack_app, good_pack, auth, caplog):
    admin = admin_client(pack_app, auth)
    loaded = model_status(admin)
    assert loaded["loaded"] is True and loaded["error"] is None
    path = Path(pack_app.config["MODEL_PATH"])

    path.unlink()
    caplog.clear()
    statuses = [model_status(admin) for _ in range(3)]
    related = pack_app.test_client().get("/api/movies/detail/1")
    assert related.status_code == 200
    assert statuses[0]["loaded"] is True
    assert statuses[0]["created_at"] == loaded["created_at"]
    assert statuses[0]["error"] == (
        "model pack file was deleted; serving the loaded pack"
    )
    assert statuses[1:] == statuses[:1] * 2
    assert pack_warnings(caplog) == [
        f"model pack {path} was deleted; still serving the loaded pack"
    ]

    replace_file(path, good_pack.read_bytes())
    assert model_status(admin)["error"] is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupted_pack_keeps_the_loaded_one_and_says_so(
    pack_app, good_pack, auth, caplog, damage
):
    admin = admin_client(pack_app, auth)
    member = pack_app.test_client()
    auth.register_and_login(member)
    member.put("/api/movies/1/rating", json={"rating": 5})
    before = member.get("/api/movies/home").get_json()["recs"]
    loaded = model_status(admin)
    path = Path(pack_app.config["MODEL_PATH"])
    data = good_pack.read_bytes()
    broken = {
        "garbage": b"this is not a model pack" * 100,
        "truncated": data[: len(data) // 2],
        "empty": b"",
    }[damage]

    caplog.clear()
    replace_file(path, broken)
    statuses = [model_status(admin) for _ in range(3)]
    after = member.get("/api/movies/home").get_json()["recs"]

    assert statuses[0]["loaded"] is True
    assert statuses[0]["created_at"] == loaded["created_at"]
    assert "is corrupt or unreadable" in statuses[0]["error"]
    assert statuses[1:] == statuses[:1] * 2
    assert after == before  # the loaded pack still answers, identically
    (warning,) = pack_warnings(caplog)
    assert warning.endswith("; still serving the previous pack")

    replace_file(path, data)
    assert model_status(admin)["error"] is None


def test_app_started_on_a_corrupt_pack_serves_from_tags_and_popularity(
    pack_app, auth, caplog
):
    path = Path(pack_app.config["MODEL_PATH"])
    replace_file(path, b"\x00" * 4096)
    app = make_app(pack_app.config["SQLALCHEMY_DATABASE_URI"], MODEL_PATH=str(path))
    caplog.clear()
    admin = admin_client(app, auth)
    status = model_status(admin)
    model_status(admin)

    assert status["loaded"] is False
    assert "is corrupt or unreadable" in status["error"]
    assert len(pack_warnings(caplog)) == 1
    home = app.test_client().get("/api/movies/home")
    assert home.status_code == 200
    assert len(home.get_json()["recs"]) == 11  # every film of the small catalogue
    detail = app.test_client().get("/api/movies/detail/1").get_json()
    assert detail["related"][0]["id"] == 2  # shares Action and Sci-Fi, most rated
    assert admin.get("/api/admin/stats").get_json()["model_loaded"] is False


def test_metrics_of_a_pack_from_too_few_ratings_are_null_not_nan(pack_app, auth):
    """JSON has no NaN: a browser's JSON.parse would reject the whole answer."""
    admin = admin_client(pack_app, auth)
    for path in ("/api/admin/stats", "/api/admin/model"):
        response = admin.get(path)
        assert response.status_code == 200
        assert b"NaN" not in response.data and b"Infinity" not in response.data
    stats = admin.get("/api/admin/stats").get_json()
    assert stats["model_loaded"] is True
    assert stats["rmse"] is None  # 14 ratings: nothing left to evaluate on
    assert stats["eval_date"] is not None


# --- training that fails half-way ----------------------------------------------------


def hang_while_writing(database_url, output, progress_callback=None):
    """Train for real, then stall half-way through writing the pack (to be killed)."""
    import joblib

    from train_evaluate_model import train

    def stalled_dump(state, path):
        with open(path, "wb") as stream:
            stream.write(b"half a pack")
            stream.flush()
        time.sleep(60)

    joblib.dump = stalled_dump
    return train(database_url, output, progress_callback=progress_callback)


def disk_full(database_url, output, progress_callback=None):
    """Train for real; the disk fills up half-way through writing the pack."""
    import joblib

    from train_evaluate_model import train

    def failing_dump(state, path):
        with open(path, "wb") as stream:
            stream.write(b"half a pack")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    joblib.dump = failing_dump
    return train(database_url, output, progress_callback=progress_callback)


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def use_trainer(app, trainer):
    """Set the trainer, also on the app's training manager if already made."""
    app.config["MODEL_TRAINER"] = trainer
    if "training" in app.extensions:
        app.extensions["training"].trainer = trainer


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in Path(folder).glob(".model-*.tmp"))


def test_training_killed_while_writing_keeps_the_previous_pack(pack_app, auth):
    admin = admin_client(pack_app, auth)
    path = Path(pack_app.config["MODEL_PATH"])
    before, loaded = digest(path), model_status(admin)
    use_trainer(pack_app, "test_faults:hang_while_writing")

    assert admin.post("/api/admin/model/train").status_code == 202
    wait_for(lambda: leftovers(path.parent))  # the child is writing its temp file
    lock = Path(f"{path}.training.lock")
    pid = int(lock.read_text())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)

    state = wait_for(
        lambda: (
            (body := admin.get("/api/admin/model").get_json())["state"] != "running"
            and body
        )
    )
    assert state["state"] == "failed"
    assert state["last_error"] == "训练进程意外退出"
    assert digest(path) == before
    assert model_status(admin) == loaded
    assert pack_app.test_client().get("/api/movies/home").status_code == 200

    # The dead run's lock is taken over: the next run trains and is picked up.
    use_trainer(pack_app, "train_evaluate_model:train")
    assert admin.post("/api/admin/model/train").status_code == 202
    done = wait_for(
        lambda: (
            (body := admin.get("/api/admin/model").get_json())["state"]
            in ("done", "failed")
            and body
        )
    )
    assert done["state"] == "done", done
    assert digest(path) != before
    reloaded = model_status(admin)
    assert reloaded["loaded"] is True and reloaded["error"] is None
    assert reloaded["created_at"] != loaded["created_at"]
    assert leftovers(path.parent) == []  # the killed run's half pack is gone


def test_training_failing_on_a_full_disk_keeps_the_previous_pack(pack_app, auth):
    admin = admin_client(pack_app, auth)
    path = Path(pack_app.config["MODEL_PATH"])
    before, loaded = digest(path), model_status(admin)
    use_trainer(pack_app, "test_faults:disk_full")

    assert admin.post("/api/admin/model/train").status_code == 202
    state = wait_for(
        lambda: (
            (body := admin.get("/api/admin/model").get_json())["state"] != "running"
            and body
        )
    )
    assert state["state"] == "failed"
    assert state["last_error"] == "OSError: [Errno 28] No space left on device"
    assert digest(path) == before
    assert leftovers(path.parent) == []
    assert model_status(admin) == loaded
