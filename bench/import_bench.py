"""Time the whole init_dataset.py process on SQLite and on MariaDB.

Runs the real script as a subprocess (interpreter start-up included) on the
MovieLens 100k files, three times per backend: a fresh import with --reset and
an idempotent rerun. Prints the median wall time of each.

Usage: python bench/import_bench.py [--source DIR] [--details CSV] [--mysql-url URL]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))


def run_once(url, source, details, reset):
    command = [sys.executable, str(ROOT / "init_dataset.py"), "--source", str(source)]
    command += ["--details", str(details), "--database-url", url, "--no-progress"]
    if reset:
        command += ["--reset", "--yes"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=SHARED / "ml-100k")
    parser.add_argument("--details", default=SHARED / "ml-100k-details.csv")
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get(
            "TEST_MYSQL_URL",
            "mysql+pymysql://root@127.0.0.1:3306/moviedb_test?charset=utf8mb4",
        ),
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        backends = {"sqlite": f"sqlite:///{tmp}/bench.db", "mariadb": args.mysql_url}
        print(f"{'backend':8} {'fresh import (s)':>17} {'rerun (s)':>10}")
        for name, url in backends.items():
            fresh = [
                run_once(url, args.source, args.details, True)
                for _ in range(args.repeat)
            ]
            rerun = [
                run_once(url, args.source, args.details, False)
                for _ in range(args.repeat)
            ]
            fresh_s, rerun_s = statistics.median(fresh), statistics.median(rerun)
            print(f"{name:8} {fresh_s:17.2f} {rerun_s:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
