"""Serving benchmark: gunicorn on loopback with the real data, driven by wrk.

For each backend (SQLite and MariaDB) this imports MovieLens 100k into a scratch
database, trains a model pack, starts the app under gunicorn (``gunicorn.conf.py``),
logs in a client with a history (20 ratings, 10 views) and drives load from wrk, a
second process: the floor (``/api/ping``, the same app, no database), home and detail
(cycling over every film id), each as a visitor and logged in, and the film pages
again on a second instance that writes each view's click (``CLICK_FLUSH_SECONDS=0``;
the default batches them, models.ViewBuffer). Each route is measured
``--runs`` times in turn within one run of the floor, and the medians are printed:
req/s, p50, p99, the share of the floor's throughput and p99 relative to the floor's.

It also prints start-up time (process start to the first home answer), worker memory
(RSS and PSS, from /proc) and the admin stats latency.

Needs wrk (Debian package ``wrk``). Usage:
    python bench/serve_bench.py [--backends sqlite,mariadb] [--duration 10] [--runs 3]
"""

import argparse
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))
BIN = Path(sys.executable).parent
ADMIN_PASSWORD = "bench-admin-" + secrets.token_hex(4)

CYCLE_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/movies/detail/" .. ((counter %% %d) + 1))
end
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_database(url, model_path):
    from init_dataset import import_dataset

    import_dataset(
        url,
        SHARED / "ml-100k",
        SHARED / "ml-100k-details.csv",
        reset=True,
        admin_password=ADMIN_PASSWORD,
        progress=False,
    )
    env = dict(os.environ, DATABASE_URL=url, MODEL_PATH=str(model_path))
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_evaluate_model.py"),
            "--output",
            str(model_path),
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )


def start_server(url, model_path, port, workers, secret_key, **settings):
    env = dict(
        os.environ,
        APP_ENV="production",
        SECRET_KEY=secret_key,
        DATABASE_URL=url,
        MODEL_PATH=str(model_path),
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        RATELIMIT_ENABLED="false",
        **settings,
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/api/movies/home", timeout=2).status_code == 200:
                return process, base, time.perf_counter() - started
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + process.stderr.read()[-2000:])
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError("gunicorn did not answer within 60 s")


def cookie_header(http):
    """Return a requests session's cookies as one Cookie header value (for wrk)."""
    return "; ".join(f"{name}={value}" for name, value in http.cookies.items())


def logged_in_cookie(base):
    """Register a client, give it a history, and return its session cookie header."""
    http = requests.Session()
    username = "bench_" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    http.post(
        f"{base}/api/auth/register", json={"username": username, "password": password}
    ).raise_for_status()
    http.post(
        f"{base}/api/auth/login", json={"username": username, "password": password}
    ).raise_for_status()
    for index, movie_id in enumerate(range(1, 400, 20)):
        http.put(
            f"{base}/api/movies/{movie_id}/rating", json={"rating": 1 + index % 5}
        ).raise_for_status()
    for movie_id in range(50, 60):
        http.get(f"{base}/api/movies/detail/{movie_id}").raise_for_status()
    return cookie_header(http)


def admin_stats_latency(base, args, calls=100):
    """Return admin stats latency: (wrk p50, wrk p99, requests median), in ms.

    wrk on one connection times the server's answer; the median over ``calls``
    answers fetched with requests adds this Python client's own cost per call.
    """
    http = requests.Session()
    http.post(
        f"{base}/api/auth/login",
        json={"username": "root", "password": ADMIN_PASSWORD, "role": "admin"},
    ).raise_for_status()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        http.get(f"{base}/api/admin/stats").raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    cookie = cookie_header(http)
    one = argparse.Namespace(threads=1, connections=1, duration=3)
    _, p50, p99, errors = run_wrk(f"{base}/api/admin/stats", one, cookie)
    if errors:
        raise RuntimeError(f"admin stats answered {errors} errors under wrk")
    return p50, p99, statistics.median(timings)


def worker_memory(master_pid):
    """Return [(rss_mb, pss_mb)] for each worker of the gunicorn master."""
    children = (
        Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    )
    sizes = []
    for pid in children:
        fields = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
        sizes.append((fields["Rss"] / 1024, fields["Pss"] / 1024))
    return sizes


def _to_ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url, args, cookie=None, script=None):
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
    ]
    command += ["--latency", "--timeout", "10s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    if script:
        command += ["-s", script]
    output = subprocess.run(command + [url], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _to_ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _to_ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return rate, p50, p99, int(errors.group(1)) if errors else 0


def bench_backend(name, url, args, tmp):
    model_path = Path(tmp) / f"model-{name}.joblib"
    print(f"\n[{name}] importing and training ...", flush=True)
    prepare_database(url, model_path)
    secret_key = secrets.token_hex(32)
    process, base, startup = start_server(
        url, model_path, free_port(), args.workers, secret_key
    )
    # The same site with CLICK_FLUSH_SECONDS=0 (each view writes its click), idle
    # while the other is measured; the same secret key accepts the same cookie.
    per_view, per_view_base, _ = start_server(
        url, model_path, free_port(), args.workers, secret_key, CLICK_FLUSH_SECONDS="0"
    )
    try:
        cookie = logged_in_cookie(base)
        script = Path(tmp) / "cycle.lua"
        script.write_text(CYCLE_LUA % 1682)
        routes = [
            ("floor /api/ping", f"{base}/api/ping", None, None),
            ("home, visitor", f"{base}/api/movies/home", None, None),
            ("home, logged in", f"{base}/api/movies/home", cookie, None),
            ("detail, visitor", base, None, str(script)),
            ("detail, logged in", base, cookie, str(script)),
            ("detail, visitor *", per_view_base, None, str(script)),
            ("detail, logged in *", per_view_base, cookie, str(script)),
        ]
        if args.routes:
            wanted = set(args.routes.split(","))
            routes = [routes[0]] + [
                route
                for route in routes[1:]
                if route[0].replace(", ", "-").replace(" ", "-") in wanted
            ]
        results = {label: [] for label, *_ in routes}
        for _ in range(args.runs):
            for label, target, route_cookie, route_script in routes:
                results[label].append(run_wrk(target, args, route_cookie, route_script))
        memory = worker_memory(process.pid)
        stats_p50, stats_p99, stats_requests = admin_stats_latency(base, args)
    finally:
        for server in (process, per_view):
            server.terminate()
            server.wait(timeout=30)

    floor_rate = statistics.median(r[0] for r in results["floor /api/ping"])
    floor_p99 = statistics.median(r[2] for r in results["floor /api/ping"])
    print(f"[{name}] start-up to first home answer: {startup:.2f} s")
    print(
        f"[{name}] workers: "
        + ", ".join(f"RSS {rss:.0f} MB / PSS {pss:.0f} MB" for rss, pss in memory)
    )
    print(
        f"[{name}] admin stats: p50 {stats_p50:.2f} ms, p99 {stats_p99:.2f} ms "
        f"(wrk, one connection); {stats_requests:.2f} ms median over 100 calls "
        "from Python requests"
    )
    header = f"{'route':20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'floor%':>7}"
    print(header + f" {'p99/floor':>9} {'non-2xx':>8}")
    for label, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        errors = sum(r[3] for r in runs)
        share = 100 * rate / floor_rate
        print(
            f"{label:20} {rate:8.0f} {p50:8.2f} {p99:8.2f} {share:6.0f}%"
            f" {p99 / floor_p99:9.2f} {errors:8d}"
        )
    if any(label.endswith("*") for label in results):
        print("* CLICK_FLUSH_SECONDS=0: each view writes its click (default: batched)")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--routes",
        default="",
        help="only these routes (and the floor), e.g. home-logged-in,detail-visitor",
    )
    parser.add_argument(
        "--mysql-url",
        default="mysql+pymysql://root@127.0.0.1:3306/moviedb_bench?charset=utf8mb4",
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("error: wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends.split(","):
            if name == "sqlite":
                url = f"sqlite:///{tmp}/bench.db"
            else:
                from sqlalchemy import create_engine, text
                from sqlalchemy.engine import make_url

                url = args.mysql_url
                server = create_engine(make_url(url).set(database=""))
                with server.connect() as conn:
                    conn.execute(
                        text(
                            f"CREATE DATABASE IF NOT EXISTS `{make_url(url).database}` "
                            "CHARACTER SET utf8mb4"
                        )
                    )
                server.dispose()
            bench_backend(name, url, args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
