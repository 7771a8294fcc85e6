"""Memory of gunicorn workers serving a model pack, and what each extra worker adds.

Starts the app under gunicorn (``gunicorn.conf.py``, preloaded, sync workers) with
the given pack, once with 1 worker and once with ``--workers`` workers, sends each
worker some traffic that reads the pack (film pages and a client's home page), then
reads RSS and PSS of the master and every worker from /proc. PSS splits shared pages
between the processes that map them, so the growth of the total PSS per extra worker
is what a worker really costs.

Usage:
    python bench/memory_bench.py --pack data/model.joblib [--database-url URL]
    python bench/scale_train.py --ratings 2000000 --films 60000 --save /tmp/p.joblib
    python bench/memory_bench.py --pack /tmp/p.joblib
"""

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_of(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return fields["Rss"], fields["Pss"]


def measure(args, workers):
    port = free_port()
    env = dict(
        os.environ,
        APP_ENV="production",
        SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=args.database_url,
        MODEL_PATH=str(Path(args.pack).resolve()),
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        GUNICORN_THREADS="1",
        RATELIMIT_ENABLED="false",
    )
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/api/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        http = requests.Session()
        name = "mem_" + secrets.token_hex(3)
        credentials = {"username": name, "password": "memory-bench-1"}
        http.post(f"{base}/api/auth/register", json=credentials)
        http.post(f"{base}/api/auth/login", json=credentials)
        for movie_id in range(1, 200, 7):
            http.put(f"{base}/api/movies/{movie_id}/rating", json={"rating": 4})
        # Sync workers take one connection at a time: enough requests reach each.
        for index in range(60 * workers):
            http.get(f"{base}/api/movies/detail/{index % 1682 + 1}")
            http.get(f"{base}/api/movies/home")
        master = memory_of(process.pid)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        worker_memory = [memory_of(int(pid)) for pid in children.read_text().split()]
    finally:
        process.terminate()
        process.wait(timeout=30)
    total_pss = master[1] + sum(pss for _, pss in worker_memory)
    return master, worker_memory, total_pss


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pack", default=str(ROOT / "data" / "model.joblib"))
    parser.add_argument(
        "--database-url", default=f"sqlite:///{ROOT / 'data' / 'movies.db'}"
    )
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)

    size = Path(args.pack).stat().st_size / 1e6
    print(f"pack {args.pack}: {size:.1f} MB")
    results = {}
    for workers in (1, args.workers):
        master, worker_memory, total_pss = measure(args, workers)
        results[workers] = total_pss
        print(
            f"{workers} worker(s): master RSS {master[0]:.0f} MB; workers "
            + ", ".join(
                f"RSS {rss:.0f} / PSS {pss:.0f} MB" for rss, pss in worker_memory
            )
            + f"; total PSS {total_pss:.0f} MB"
        )
    extra = (results[args.workers] - results[1]) / (args.workers - 1)
    print(f"each extra worker adds {extra:.1f} MB (growth of total PSS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
