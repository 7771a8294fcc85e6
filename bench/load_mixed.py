"""Mixed load against gunicorn on MariaDB, then a check that nothing was lost.

Imports MovieLens 100k into a scratch MariaDB database, trains a model pack, starts
the fake OpenAI-compatible server (``tests/llm_server.py``) in this process and the
app under gunicorn (``gunicorn.conf.py``, ``APP_ENV=production``), then drives it
from this second process on loopback for ``--duration`` seconds:

- visitors browse: home, search and filter the list, tags, film pages;
- clients (registered and logged in first) view films, rate them (create, change,
  remove; many clients on the same few films), read their ratings and history, and
  chat with the AI expert (plain and streamed) through the fake provider.

Afterwards it reads the database and checks that each film's click_count rose by
exactly the film pages answered, that each client's footprints are exactly the
film pages it was answered, that the rating table holds exactly each client's
last rating, and that every touched film's rating_count and score equal what the
rating table says (score to the database's AVG precision). It prints requests,
errors, p50 and p99 per route and exits 1 on any 5xx, transport error or mismatch.

Usage:
    python bench/load_mixed.py [--duration 120] [--visitors 6] [--clients 6]
        [--database-url URL] [--model PACK] [--workers 2] [--threads 4]
"""

import argparse
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
SHARED = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))
BIN = Path(sys.executable).parent
DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/moviedb_load_mixed?charset=utf8mb4"
FILM_COUNT = 1682
# Ratings concentrate on a few films so that clients contend for the same rows.
HOT_FILMS = list(range(1, 41))
SEARCHES = ["star", "love", "the", "man", "Hanks", "Spielberg", "1995", "toy"]
TAGS = ["Action", "Comedy", "Drama", "Sci-Fi", "Thriller", "Romance", "Animation"]
SORTS = ["popular", "score", "newest", "title"]
QUESTIONS = [
    "推荐几部类似《Heat》的电影",
    "1994年最好的喜剧有哪些?",
    "Tell me about Toy Story",
    "有什么希区柯克的电影值得看?",
]
PASSWORD = "load-pass-" + secrets.token_hex(4)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(url, model_path, train):
    """Import MovieLens into a fresh database and train a pack unless one is given."""
    from init_dataset import import_dataset

    server = make_url(url)
    engine = create_engine(server.set(database=""))
    with engine.connect() as conn:
        conn.execute(
            text(
                f"CREATE DATABASE IF NOT EXISTS `{server.database}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        )
    engine.dispose()
    import_dataset(
        url,
        SHARED / "ml-100k",
        SHARED / "ml-100k-details.csv",
        reset=True,
        admin_password="load-admin-" + secrets.token_hex(4),
        progress=False,
    )
    if train:
        subprocess.run(
            [sys.executable, str(ROOT / "train_evaluate_model.py"), "--no-progress"]
            + ["--database-url", url, "--output", str(model_path)],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )


def start_gunicorn(url, model_path, llm_url, args, log_path):
    port = free_port()
    env = dict(
        os.environ,
        APP_ENV="production",
        SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=url,
        MODEL_PATH=str(model_path),
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=str(args.workers),
        GUNICORN_THREADS=str(args.threads),
        RATELIMIT_ENABLED="false",
        LLM_BASE_URL=llm_url,
        LLM_API_KEY="load-test-key",
        LLM_TIMEOUT="10",
    )
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller via the process
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/api/health", timeout=2).status_code == 200:
                return process, base
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise RuntimeError(
                "gunicorn exited:\n" + Path(log_path).read_text()[-3000:]
            )
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError("gunicorn did not answer within 90 s")


class Recorder:
    """Latencies and statuses per route, and what was sent, shared by all users."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = defaultdict(list)
        self.statuses = defaultdict(Counter)
        self.transport_errors = Counter()
        self.clicks = Counter()

    def call(self, http, method, route, url, **kwargs):
        started = time.perf_counter()
        try:
            response = http.request(method, url, timeout=30, **kwargs)
            if kwargs.get("stream"):
                body = response.content  # read the whole event stream
                response.stream_body = body
        except requests.RequestException as exc:
            with self.lock:
                self.transport_errors[f"{route}: {exc.__class__.__name__}"] += 1
                self.statuses[route]["error"] += 1
            return None
        elapsed = (time.perf_counter() - started) * 1000
        with self.lock:
            self.latencies[route].append(elapsed)
            self.statuses[route][response.status_code] += 1
        return response


class User(threading.Thread):
    def __init__(self, base, recorder, deadline, seed):
        super().__init__(daemon=True)
        self.base = base
        self.recorder = recorder
        self.deadline = deadline
        self.rng = random.Random(seed)
        self.http = requests.Session()
        self.views = Counter()  # film pages answered, by film

    def call(self, method, route, path, **kwargs):
        return self.recorder.call(self.http, method, route, self.base + path, **kwargs)

    def detail(self, movie_id):
        response = self.call(
            "GET", "GET /api/movies/detail/<id>", f"/api/movies/detail/{movie_id}"
        )
        if response is not None and response.status_code == 200:
            with self.recorder.lock:
                self.recorder.clicks[movie_id] += 1
            self.views[movie_id] += 1

    def browse(self):
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            self.call("GET", "GET /api/movies/home", "/api/movies/home")
        elif roll < 0.55:
            params = {"sort": rng.choice(SORTS), "page": rng.randint(1, 5)}
            if rng.random() < 0.5:
                params["q"] = rng.choice(SEARCHES)
            if rng.random() < 0.4:
                params["tag"] = rng.choice(TAGS)
            self.call("GET", "GET /api/movies", "/api/movies", params=params)
        elif roll < 0.65:
            self.call("GET", "GET /api/movies/tags", "/api/movies/tags")
        else:
            hot = rng.random() < 0.3
            self.detail(rng.choice(HOT_FILMS) if hot else rng.randint(1, FILM_COUNT))

    def run(self):
        while time.monotonic() < self.deadline:
            self.step()
        self.http.close()

    def step(self):
        self.browse()


class ClientUser(User):
    """A registered client: views, rates, reads its lists and chats."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.username = f"load_{os.getpid()}_{secrets.token_hex(4)}"
        self.expected = {}  # movie id -> the last rating the server accepted
        self.client_id = None

    def login(self):
        body = {"username": self.username, "password": PASSWORD}
        created = self.call("POST", "POST /api/auth/register", "/api/auth/register",
                            json=body)  # fmt: skip
        logged = self.call("POST", "POST /api/auth/login", "/api/auth/login", json=body)
        if created is None or logged is None or logged.status_code != 200:
            raise RuntimeError(f"could not log in {self.username}")
        self.client_id = logged.json()["user"]["id"]

    def rate(self):
        movie_id = self.rng.choice(HOT_FILMS)
        path = f"/api/movies/{movie_id}/rating"
        if movie_id in self.expected and self.rng.random() < 0.25:
            response = self.call("DELETE", "DELETE /api/movies/<id>/rating", path)
            if response is not None and response.status_code == 200:
                del self.expected[movie_id]
            return
        rating = self.rng.randint(1, 5)
        response = self.call(
            "PUT", "PUT /api/movies/<id>/rating", path, json={"rating": rating}
        )
        if response is not None and response.status_code in (200, 201):
            self.expected[movie_id] = rating

    def chat(self):
        body = {"message": self.rng.choice(QUESTIONS)}
        if self.rng.random() < 0.3:
            self.call("POST", "POST /api/ai/chat/stream", "/api/ai/chat/stream",
                      json=body, stream=True)  # fmt: skip
        else:
            self.call("POST", "POST /api/ai/chat", "/api/ai/chat", json=body)

    def step(self):
        roll = self.rng.random()
        if roll < 0.3:
            self.rate()
        elif roll < 0.4:
            self.chat()
        elif roll < 0.45:
            self.call("GET", "GET /api/me/ratings", "/api/me/ratings")
        elif roll < 0.5:
            self.call("GET", "GET /api/me/history", "/api/me/history")
        else:
            self.browse()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def read_state(engine):
    """click_count per film, and per film the dataset's rating count and sum."""
    with engine.connect() as conn:
        clicks = dict(conn.execute(text("SELECT id, click_count FROM movie")).all())
        rows = conn.execute(
            text(
                "SELECT r.movie_id, COUNT(*), SUM(r.rating) FROM rating r "
                "JOIN client c ON c.id = r.client_id "
                "WHERE c.username NOT LIKE 'load\\_%' GROUP BY r.movie_id"
            )
        ).all()
    return clicks, {movie: (int(n), int(total)) for movie, n, total in rows}


def verify(engine, before_clicks, base_ratings, recorder, clients):
    """Return a list of mismatches between the database and what was sent."""
    problems = []
    after_clicks, _ = read_state(engine)
    for movie_id, before in before_clicks.items():
        sent = recorder.clicks.get(movie_id, 0)
        if after_clicks[movie_id] - before != sent:
            problems.append(
                f"film {movie_id}: click_count +{after_clicks[movie_id] - before}, "
                f"film pages answered {sent}"
            )
    expected_totals = defaultdict(lambda: [0, 0])
    with engine.connect() as conn:
        for user in clients:
            stored = dict(
                conn.execute(
                    text("SELECT movie_id, rating FROM rating WHERE client_id = :c"),
                    {"c": user.client_id},
                ).all()
            )
            if stored != user.expected:
                problems.append(
                    f"{user.username}: ratings {stored} != sent {user.expected}"
                )
            viewed = dict(
                conn.execute(
                    text(
                        "SELECT movie_id, COUNT(*) FROM footprint"
                        " WHERE client_id = :c GROUP BY movie_id"
                    ),
                    {"c": user.client_id},
                ).all()
            )
            if viewed != dict(user.views):
                problems.append(
                    f"{user.username}: footprints {viewed} != film pages "
                    f"{dict(user.views)}"
                )
            for movie_id, rating in user.expected.items():
                expected_totals[movie_id][0] += 1
                expected_totals[movie_id][1] += rating
        for movie_id in HOT_FILMS:
            base_n, base_sum = base_ratings.get(movie_id, (0, 0))
            extra_n, extra_sum = expected_totals[movie_id]
            count = base_n + extra_n
            score, rating_count = conn.execute(
                text("SELECT score, rating_count FROM movie WHERE id = :m"),
                {"m": movie_id},
            ).one()
            mean = (base_sum + extra_sum) / count if count else None
            if rating_count != count:
                problems.append(
                    f"film {movie_id}: rating_count {rating_count} != {count}"
                )
            if (mean is None) != (score is None) or (
                mean is not None and abs(score - mean) > 5e-5
            ):
                problems.append(f"film {movie_id}: score {score} != {mean}")
    return problems


def report(recorder, duration):
    print(f"\n{'route':34} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}")
    total = errors = 0
    for route in sorted(recorder.statuses):
        statuses = recorder.statuses[route]
        count = sum(statuses.values())
        failed = sum(n for s, n in statuses.items() if s == "error" or s >= 500)
        latencies = recorder.latencies[route] or [0.0]
        total += count
        errors += failed
        print(
            f"{route:34} {count:8d} {failed:6d} "
            f"{percentile(latencies, 0.5):8.1f} {percentile(latencies, 0.99):8.1f}"
        )
    print(f"{'all routes':34} {total:8d} {errors:6d}   ({total / duration:.0f} req/s)")
    others = Counter()
    for statuses in recorder.statuses.values():
        others.update({s: n for s, n in statuses.items() if s != "error" and s >= 300})
    if others:
        print("non-2xx statuses:", dict(others))
    for name, count in recorder.transport_errors.items():
        print(f"transport error {name}: {count}")
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--visitors", type=int, default=6)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--database-url", default=os.environ.get("LOAD_DATABASE_URL", DEFAULT_URL)
    )
    parser.add_argument("--model", help="an existing model pack (skips training)")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args(argv)

    from llm_server import FakeLLM

    with tempfile.TemporaryDirectory(prefix="load_mixed_") as tmp:
        model_path = Path(args.model) if args.model else Path(tmp) / "model.joblib"
        print("importing MovieLens 100k and training ...", flush=True)
        prepare(args.database_url, model_path, train=not args.model)
        engine = create_engine(args.database_url)
        llm = FakeLLM().start()
        # The app's client may drop a kept-alive connection: count, do not print.
        resets = Counter()
        llm._server.handle_error = lambda request, address: resets.update(["reset"])
        llm.default_reply = "可以看看《Heat (1995)》和《Toy Story (1995)》。"
        log_path = Path(tmp) / "gunicorn.log"
        process, base = start_gunicorn(
            args.database_url, model_path, llm.base_url, args, log_path
        )
        try:
            before_clicks, base_ratings = read_state(engine)
            recorder = Recorder()
            clients = [
                ClientUser(base, recorder, 0, args.seed * 1000 + index)
                for index in range(args.clients)
            ]
            for user in clients:
                user.login()
            deadline = time.monotonic() + args.duration
            users = [
                User(base, recorder, deadline, args.seed * 2000 + index)
                for index in range(args.visitors)
            ]
            for user in clients:
                user.deadline = deadline
            print(
                f"{args.visitors} visitors and {args.clients} clients for "
                f"{args.duration:.0f} s against gunicorn ({args.workers} workers x "
                f"{args.threads} threads) on {make_url(args.database_url).host} ...",
                flush=True,
            )
            started = time.monotonic()
            for user in users + clients:
                user.start()
            for user in users + clients:
                user.join()
            elapsed = time.monotonic() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
            llm.stop()

        errors = report(recorder, elapsed)
        print(
            f"chat requests seen by the fake provider: {len(llm.requests)} "
            f"(connections reset by the app: {resets['reset']})"
        )
        problems = verify(engine, before_clicks, base_ratings, recorder, clients)
        engine.dispose()
        clicks = sum(recorder.clicks.values())
        ratings = sum(len(user.expected) for user in clients)
        views = sum(sum(user.views.values()) for user in clients)
        print(
            f"checked: {clicks} film pages -> click_count on {len(before_clicks)} "
            f"films; {views} clients' film pages -> footprints; "
            f"{ratings} final ratings of {len(clients)} clients; score and "
            f"rating_count of {len(HOT_FILMS)} rated films"
        )
        log = log_path.read_text()
        tracebacks = log.count("Traceback")
        if PASSWORD in log or "scrypt:" in log or "pbkdf2:" in log:
            problems.append("a password or a password hash is in the server log")
        if tracebacks:
            print(f"gunicorn log: {tracebacks} traceback(s)\n{log[-3000:]}")
        for problem in problems[:20]:
            print("MISMATCH", problem)
        ok = not errors and not problems and not tracebacks
        print("RESULT:", "ok (zero 5xx, all counts agree)" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
