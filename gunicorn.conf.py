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
