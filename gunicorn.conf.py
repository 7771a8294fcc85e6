"""gunicorn settings for `make serve`.

Workers come from ``WEB_CONCURRENCY`` (default 2) and threads per worker from
``GUNICORN_THREADS`` (default 1: sync workers), both read by config.py. The app is
created once in the master (``preload_app``) so the model pack's pages are shared by
every forked worker; its arrays are memory-mapped, so a reload in one worker does not
copy them either.
"""

import gc

from config import load_settings

_settings = load_settings()

bind = f"{_settings['HOST']}:{_settings['PORT']}"
workers = _settings["WORKERS"]
threads = _settings["THREADS"]
worker_class = "gthread" if threads > 1 else "sync"
preload_app = True
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = "info"


# Pages served once in the master before forking, counting nothing (HEAD film
# pages count no view), first as a visitor, then with a session naming no account
# (the client paths, refused): their lazy imports, routing tables, compiled
# statements, catalogue index, and the interpreter's specialised bytecode are then
# made once and shared by every worker instead of copied into each.
WARM_UP_PATHS = (
    "/api/ping",
    "/api/movies/home",
    *(f"/api/movies/detail/{movie_id}" for movie_id in range(1, 41)),
)


def when_ready(server):
    """Warm the preloaded app up, then close the master's database connections."""
    if not _settings["WARM_UP"]:
        return
    from api.security import SESSION_KEYS

    app = server.app.wsgi()
    answered = 0
    try:
        for claimed in (None, 0):
            client = app.test_client()
            if claimed is not None:
                with client.session_transaction() as session:
                    session[SESSION_KEYS["client"]] = claimed
            for path in WARM_UP_PATHS:
                method = client.head if "/detail/" in path else client.get
                answered += method(path).status_code == 200
    except Exception as exc:  # the workers still start; they warm up on their own
        server.log.warning("warm-up stopped: %r", exc)
    finally:
        from models import dispose_engines

        with app.app_context():
            dispose_engines()  # workers open their own; the master keeps none
    server.log.info(
        "warm-up: %d of %d pages answered", answered, 2 * len(WARM_UP_PATHS)
    )


def pre_fork(server, worker):
    """Move the preloaded app's objects out of the collector's reach before forking.

    A collection in a worker would otherwise walk (and so write to) every page of
    the master's objects, turning shared pages into private copies.
    """
    gc.freeze()


def post_fork(server, worker):
    """Drop connections inherited from the master: each worker opens its own."""
    from models import dispose_engines

    app = server.app.wsgi()
    with app.app_context():
        dispose_engines(close=False)


def worker_exit(server, worker):
    """Write the worker's unwritten film views before it goes (models.ViewBuffer)."""
    from models import flush_views

    flush_views()
