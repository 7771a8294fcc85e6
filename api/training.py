"""Model training in a background process, one at a time across app processes.

A lock file beside the pack (``<MODEL_PATH>.training.lock``, created with
``O_EXCL``) makes a second start fail while one runs, whichever worker it reaches.
The child writes its state to ``<MODEL_PATH>.training.json`` (atomically), so every
worker reports the same progress. The trainer is ``module:function`` from the
``MODEL_TRAINER`` setting (default ``train_evaluate_model:train``), called as
``train(database_url, output, progress_callback=f(stage, fraction))``.

The child is ``python -m api.training`` rather than a multiprocessing fork: forking
a threaded server is unsafe, and spawn would re-run an unguarded main script.
"""

import importlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from models import utcnow
from train_evaluate_model import PHASES, STAGES

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent.parent

DEFAULT_TRAINER = "train_evaluate_model:train"
IDLE = {
    "state": "idle",
    "progress": None,
    "message": None,
    "started_at": None,
    "finished_at": None,
    "last_error": None,
    "metrics": None,
}


class TrainingBusy(Exception):
    """Raised when a training run is already in progress."""


def _iso_now():
    return utcnow().replace(microsecond=0).isoformat() + "Z"


def _write_json(path, data):
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(data, stream, ensure_ascii=False)
    os.replace(temporary, path)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def overall_progress(stage, fraction):
    """Map a trainer's (stage, fraction) to 0..1 over both phases."""
    phase = 0
    for index, prefix in enumerate(PHASES):
        if stage.startswith(prefix):
            phase, stage = index, stage[len(prefix) :]
    if stage == "done":
        return 1.0
    position = STAGES.index(stage) if stage in STAGES else 0
    within = (position + max(0.0, min(1.0, fraction))) / len(STAGES)
    return round((phase + within) / len(PHASES), 4)


def run_training(trainer, database_url, output, status_path, lock_path):
    """Child process body: train, then record the outcome and release the lock."""
    logging.basicConfig(level=logging.INFO)
    status = _read_json(status_path) or dict(IDLE)
    last_write = [0.0]

    def report(stage, fraction):
        status.update(progress=overall_progress(stage, fraction), message=stage)
        now = time.monotonic()
        if now - last_write[0] >= 0.5 or stage == "done":
            last_write[0] = now
            _write_json(status_path, status)

    try:
        module_name, function_name = trainer.split(":")
        train = getattr(importlib.import_module(module_name), function_name)
        metrics = train(database_url, output, progress_callback=report)
        metrics = {
            key: value
            for key, value in (metrics or {}).items()
            if isinstance(value, int | float | str | type(None))
        }
        status.update(state="done", progress=1.0, message="done", metrics=metrics)
    except BaseException as exc:  # the parent must learn of any failure
        logger.exception("training failed")
        status.update(state="failed", last_error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        status["finished_at"] = _iso_now()
        _write_json(status_path, status)
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            pass


class TrainingManager:
    """Start training runs and report their state."""

    def __init__(self, model_path, database_url, trainer=DEFAULT_TRAINER):
        self.model_path = os.fspath(model_path)
        self.database_url = database_url
        self.trainer = trainer
        self.status_path = self.model_path + ".training.json"
        self.lock_path = self.model_path + ".training.lock"

    def _acquire(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.lock_path)), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                if self._lock_owner_alive():
                    raise TrainingBusy() from None
                # A run that died without cleaning up: take its lock over.
                try:
                    os.unlink(self.lock_path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return
        raise TrainingBusy()

    def _lock_owner_alive(self):
        try:
            with open(self.lock_path) as handle:
                pid = int(handle.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return False
        return pid > 0 and _pid_alive(pid)

    def _remove_leftovers(self):
        """Delete half-written packs of runs that were killed (we hold the lock)."""
        folder = Path(self.model_path).resolve().parent
        for leftover in folder.glob(".model-*.tmp"):
            try:
                leftover.unlink()
            except FileNotFoundError:
                continue
            logger.info("removed a half-written pack of a killed run: %s", leftover)

    def start(self):
        """Start a run in a new process; raise TrainingBusy while one runs."""
        self._acquire()
        self._remove_leftovers()
        previous = _read_json(self.status_path) or {}
        status = dict(IDLE)
        status.update(
            state="running",
            progress=0.0,
            message="starting",
            started_at=_iso_now(),
            metrics=previous.get("metrics"),
        )
        _write_json(self.status_path, status)
        # The child imports what this process can (tests add their own trainers).
        paths = [str(BASE_DIR)] + [path for path in sys.path if path]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        # Arguments go through stdin: a database URL may hold a password, and
        # command lines are visible to every user of the machine.
        arguments = {
            "trainer": self.trainer,
            "database_url": self.database_url,
            "output": self.model_path,
            "status_path": self.status_path,
            "lock_path": self.lock_path,
        }
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "api.training"],
                cwd=BASE_DIR,
                env=environment,
                stdin=subprocess.PIPE,
            )
            process.stdin.write(json.dumps(arguments).encode())
            process.stdin.close()
        except Exception as exc:
            status.update(state="failed", last_error=f"{type(exc).__name__}: {exc}")
            _write_json(self.status_path, status)
            os.unlink(self.lock_path)
            raise
        try:
            # No O_CREAT: a child that already finished has removed the lock.
            fd = os.open(self.lock_path, os.O_WRONLY | os.O_TRUNC)
        except FileNotFoundError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(str(process.pid))
        # Reap the child when it ends so that it never lingers as a zombie.
        threading.Thread(target=process.wait, daemon=True).start()
        logger.info("model training started: pid=%s", process.pid)
        return status

    def status(self):
        """Return the state of the current or last run."""
        status = _read_json(self.status_path) or dict(IDLE)
        if status.get("state") == "running" and not self._lock_owner_alive():
            # Give a finishing child a moment to write its own outcome.
            time.sleep(0.05)
            status = _read_json(self.status_path) or status
            if status.get("state") == "running":
                status.update(
                    state="failed", last_error="训练进程意外退出", finished_at=None
                )
        return status


def main():
    """Run one training from the JSON arguments on stdin (the app starts this)."""
    arguments = json.load(sys.stdin)
    run_training(**arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
