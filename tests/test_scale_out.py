"""Two app instances sharing MariaDB and Redis behave as one site.

Each instance is a real gunicorn process on its own port (as on two hosts behind a
load balancer): a session made on one is accepted by the other, a rate limit counts
across both, and an admin's film edit on one is visible on the other at once.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import (
    ADMIN_PASSWORD,
    DETAILS_CSV,
    IN_CI,
    ML100K_DIR,
    mysql_url,
    require_mysql,
)

from init_dataset import import_dataset

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_redis():
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.flushdb()
    except redis.RedisError as exc:
        message = f"Redis not reachable at {REDIS_URL} ({exc.__class__.__name__})"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message + ": scale-out test skipped")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_instance(env, port):
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--config",
            "gunicorn.conf.py",
            "app:create_app()",
        ],
        cwd=ROOT,
        env=dict(env, PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("instance exited:\n" + process.stderr.read()[-3000:])
        try:
            if requests.get(f"{base}/api/health", timeout=1).status_code == 200:
                return process, base
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("instance did not answer within 30 s")


@pytest.fixture(scope="module")
def scale_env(tmp_path_factory):
    url = mysql_url("_scale")
    require_mysql(url)
    require_redis()
    import_dataset(
        url,
        ML100K_DIR,
        DETAILS_CSV,
        reset=True,
        admin_password=ADMIN_PASSWORD,
        progress=False,
    )
    tmp = tmp_path_factory.mktemp("scale")
    env = dict(
        os.environ,
        APP_ENV="production",
        SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=url,
        CACHE_URL=REDIS_URL,
        RATELIMIT_STORAGE_URI=REDIS_URL,
        RATELIMIT_ENABLED="true",
        MODEL_PATH=str(tmp / "model.joblib"),
        CATALOGUE_STAMP=str(tmp / "never-used.version"),
        WEB_CONCURRENCY="1",
        HOST="127.0.0.1",
    )
    return env


@pytest.fixture(scope="module")
def two_instances(scale_env):
    instances = [start_instance(scale_env, free_port()) for _ in range(2)]
    yield [base for _, base in instances]
    for process, _ in instances:
        process.terminate()
        process.wait(timeout=20)


def test_warming_up_before_the_fork_counts_no_view(two_instances):
    from sqlalchemy import create_engine, text

    # Each master served 84 pages (film pages among them) before forking.
    engine = create_engine(mysql_url("_scale"))
    with engine.connect() as conn:
        clicks = conn.scalar(text("SELECT SUM(click_count) FROM movie"))
        footprints = conn.scalar(text("SELECT COUNT(*) FROM footprint"))
    engine.dispose()
    assert (clicks, footprints) == (0, 0)
    answer = requests.get(f"{two_instances[0]}/api/movies/detail/1", timeout=5)
    assert answer.json()["click_count"] == 1


def scale_clicks(movie_id):
    from sqlalchemy import create_engine, text

    engine = create_engine(mysql_url("_scale"))
    with engine.connect() as conn:
        clicks = conn.scalar(
            text("SELECT click_count FROM movie WHERE id = :id"), {"id": movie_id}
        )
    engine.dispose()
    return clicks


def test_each_instance_writes_its_clicks_on_its_own(two_instances):
    first, second = two_instances
    shown = [
        requests.get(f"{base}/api/movies/detail/9", timeout=5).json()["click_count"]
        for base in (first, second, second)
    ]
    # Each instance shows the stored count plus its own unwritten clicks.
    assert shown == [1, 1, 2]
    deadline = time.monotonic() + 10
    while scale_clicks(9) != 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scale_clicks(9) == 3
    assert requests.get(f"{first}/api/movies/detail/9").json()["click_count"] == 4


def test_a_stopping_instance_writes_its_unwritten_clicks(scale_env):
    # This one would write only hourly: its clicks reach the database as it stops.
    process, base = start_instance(
        dict(scale_env, CLICK_FLUSH_SECONDS="3600"), free_port()
    )
    try:
        for expected in (1, 2, 3):
            answer = requests.get(f"{base}/api/movies/detail/11", timeout=5)
            assert answer.json()["click_count"] == expected
        assert scale_clicks(11) == 0
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert scale_clicks(11) == 3


def scale_client(base):
    http = requests.Session()
    credentials = {
        "username": "scale_" + secrets.token_hex(3),
        "password": "scale-out-pass-1",
    }
    assert http.post(f"{base}/api/auth/register", json=credentials).status_code == 201
    assert http.post(f"{base}/api/auth/login", json=credentials).status_code == 200
    return http


def history(http, base):
    response = http.get(f"{base}/api/me/history", timeout=5)
    assert response.status_code == 200
    return [(item["movie"]["id"], item["views"]) for item in response.json()["items"]]


def test_views_on_both_instances_reach_the_history_within_the_interval(
    two_instances,
):
    first, second = two_instances
    http = scale_client(first)
    for base, movie_id in ((first, 21), (second, 22), (second, 21)):
        assert http.get(f"{base}/api/movies/detail/{movie_id}").status_code == 200
    # The instance read from writes its own views first; the other's follow
    # within its CLICK_FLUSH_SECONDS (1 s here).
    deadline = time.monotonic() + 10
    while len(history(http, first)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert history(http, first) == [(21, 2), (22, 1)]
    assert history(http, second) == [(21, 2), (22, 1)]


def test_a_stopping_instance_writes_its_unwritten_views(scale_env, two_instances):
    first, _ = two_instances
    process, base = start_instance(
        dict(scale_env, CLICK_FLUSH_SECONDS="3600"), free_port()
    )
    http = scale_client(first)
    try:
        for movie_id in (23, 24):
            assert http.get(f"{base}/api/movies/detail/{movie_id}").status_code == 200
        assert history(http, first) == []
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert history(http, first) == [(24, 1), (23, 1)]


def test_session_made_on_one_instance_is_accepted_by_the_other(two_instances):
    first, second = two_instances
    http = requests.Session()
    username = "scale_" + secrets.token_hex(3)
    credentials = {"username": username, "password": "scale-out-pass-1"}
    assert http.post(f"{first}/api/auth/register", json=credentials).status_code == 201
    assert http.post(f"{first}/api/auth/login", json=credentials).status_code == 200

    response = http.get(f"{second}/api/auth/me")
    assert response.status_code == 200
    assert response.json()["user"]["username"] == username
    assert requests.get(f"{second}/api/auth/me").status_code == 401


def test_login_rate_limit_counts_across_instances(two_instances):
    first, second = two_instances
    wrong = {"username": "ml_user_1", "password": "not-the-password"}
    # Five failed attempts per username per minute, split over both instances.
    statuses = [
        requests.post(f"{base}/api/auth/login", json=wrong).status_code
        for base in (first, second, first, second, first)
    ]
    assert statuses == [401] * 5
    response = requests.post(f"{second}/api/auth/login", json=wrong)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"


def test_admin_edit_on_one_instance_is_visible_on_the_other_at_once(two_instances):
    first, second = two_instances
    tag = "ScaleOut" + secrets.token_hex(2)
    # Load the other instance's catalogue index before the edit.
    tags_before = requests.get(f"{second}/api/movies/tags").json()
    assert tag not in {row["tag"] for row in tags_before}

    admin = requests.Session()
    login = {"username": "root", "password": ADMIN_PASSWORD, "role": "admin"}
    assert admin.post(f"{first}/api/auth/login", json=login).status_code == 200
    created = admin.post(
        f"{first}/api/admin/movies", json={"title": "分布式测试影片", "tags": [tag]}
    )
    assert created.status_code == 201

    tags_after = requests.get(f"{second}/api/movies/tags").json()
    assert {"tag": tag, "count": 1} in tags_after

    movie_id = created.json()["id"]
    assert admin.delete(f"{first}/api/admin/movies/{movie_id}").status_code == 200
    tags_final = requests.get(f"{second}/api/movies/tags").json()
    assert tag not in {row["tag"] for row in tags_final}
