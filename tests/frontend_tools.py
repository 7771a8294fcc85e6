"""Helpers for the front-end tests: Node, the npm install, the build and Chromium.

Missing tools are failures with a message saying how to get them (``make test``
installs them), never skips.
"""

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
DIST_INDEX = FRONTEND / "dist" / "index.html"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
BUILD_INPUTS = ("src", "index.html", "package.json", "package-lock.json", "public")


def require_tool(name):
    """Return the path of ``name`` on PATH, or fail saying how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: the front-end tests need Node.js 20.19+ and npm "
            "(see README, 'Web front end')"
        )
    return path


def require_chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: `make test` installs it "
            "(apt-get install chromium), or set CHROMIUM_PATH"
        )
    return CHROMIUM


def _newest_input_mtime():
    newest = 0.0
    for name in BUILD_INPUTS:
        path = FRONTEND / name
        paths = path.rglob("*") if path.is_dir() else [path]
        for item in paths:
            if item.is_file():
                newest = max(newest, item.stat().st_mtime)
    return newest


def _run(command, timeout):
    result = subprocess.run(
        command,
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def ensure_frontend(build=True):
    """Install the npm packages when missing and rebuild a stale ``dist/``.

    A file lock keeps two test processes from building into the same folder.
    """
    npm = require_tool("npm")
    require_tool("node")
    with open(FRONTEND / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (FRONTEND / "node_modules" / ".package-lock.json").is_file():
            _run([npm, "ci", "--no-audit", "--no-fund"], timeout=600)
        if build and (
            not DIST_INDEX.is_file()
            or DIST_INDEX.stat().st_mtime < _newest_input_mtime()
        ):
            _run([npm, "run", "build"], timeout=600)
