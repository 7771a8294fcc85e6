"""End to end in headless Chromium: the built site served by Flask on real data.

The MovieLens import goes into a SQLite file of its own (the browser registers and
rates, so it does not share the session database), a model pack is trained on it,
``python app.py`` serves the API and ``frontend/dist`` on a free port, and
``frontend/e2e/run.mjs`` drives Debian's Chromium through playwright-core.
Screenshots land in ``tests/artifacts/e2e/``.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ADMIN_PASSWORD, DETAILS_CSV, ML100K_DIR, ROOT
from frontend_tools import FRONTEND, ensure_frontend, require_chromium, require_tool

ARTIFACTS = ROOT / "tests" / "artifacts" / "e2e"
STEPS = (
    "a visitor sees 12 films with posters or placeholders",
    "a visitor registers",
    "the new client logs in",
    "browsing sorts films by score",
    'a search for "toy" finds Toy Story',
    "the film page shows facts and related films",
    "the client rates Toy Story 5 stars",
    "the home page turns into personal recommendations with reasons",
    "my ratings list the rating",
    "the AI movie expert answers with film cards",
    "a client cannot open the admin pages",
    "the admin logs in and sees the stats and a chart",
    "the admin sees the clients table",
    "the admin adds a film, finds it and deletes it",
    "the interface switches to English and back",
)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(url, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def e2e_data(tmp_path_factory):
    """A fresh SQLite import of MovieLens 100k and a model pack trained on it."""
    from init_dataset import import_dataset

    folder = tmp_path_factory.mktemp("e2e")
    database_url = f"sqlite:///{folder / 'movies.db'}"
    import_dataset(
        database_url,
        ML100K_DIR,
        DETAILS_CSV,
        reset=True,
        admin_username="root",
        admin_password=ADMIN_PASSWORD,
        progress=False,
    )
    model_path = folder / "model.joblib"
    trained = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_evaluate_model.py"),
            "--database-url",
            database_url,
            "--output",
            str(model_path),
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    return {"database_url": database_url, "model_path": model_path, "folder": folder}


@pytest.fixture(scope="module")
def live_server(e2e_data):
    """``python app.py`` on a free port, serving the built front end."""
    ensure_frontend(build=True)
    port = _free_port()
    folder = e2e_data["folder"]
    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": e2e_data["database_url"],
        "MODEL_PATH": str(e2e_data["model_path"]),
        "POSTER_DIR": str(folder / "posters"),
        "FRONTEND_DIST": str(FRONTEND / "dist"),
        "RATELIMIT_STORAGE_URI": "memory://",
        # Offline chat: a developer's .env must not send the test to a real provider.
        "LLM_API_KEY": "",
        "CACHE_URL": "",
    }
    log_path = folder / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        if not _wait_until_healthy(base_url, process):
            pytest.fail(f"the server did not start:\n{log_path.read_text()[-3000:]}")
        yield {"url": base_url, "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_site_in_headless_chromium(live_server):
    node = require_tool("node")
    chromium = require_chromium()
    started = time.time()

    result = subprocess.run(
        [node, str(FRONTEND / "e2e" / "run.mjs"), live_server["url"]],
        cwd=FRONTEND,
        env={
            **os.environ,
            "CHROMIUM_PATH": chromium,
            "E2E_ADMIN_USERNAME": "root",
            "E2E_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "E2E_ARTIFACTS": str(ARTIFACTS),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    output = result.stdout + result.stderr
    server_log = live_server["log"].read_text()[-3000:]
    assert result.returncode == 0, f"{output}\n--- server log ---\n{server_log}"
    for number, name in enumerate(STEPS, start=1):
        assert f"ok {number} - {name} (" in output, output
    assert f"e2e: {len(STEPS)} passed, 0 failed" in output
    for screenshot in (
        "01-visitor-home",
        "03-film-toy-story",
        "05-personal-home",
        "06-chat",
        "07-client-forbidden",
        "08-admin-dashboard",
    ):
        path = ARTIFACTS / f"{screenshot}.png"
        # Written by this run (another run may share the folder), and not blank.
        assert path.stat().st_mtime >= started - 1, f"{path} is stale"
        assert path.stat().st_size > 10_000, f"{path} looks empty"
    assert "Traceback" not in live_server["log"].read_text()
