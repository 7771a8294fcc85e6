"""Fuzzing every documented route from /api/openapi.json with schemathesis.

Each operation is called as a visitor, a logged-in client and an admin with
generated valid and invalid inputs (positive and negative modes). Every answer must
be a non-5xx whose status, content type and body match the OpenAPI document.

The run is bounded and reproducible (derandomized Hypothesis): ``FUZZ_EXAMPLES``
examples per operation, role and mode on SQLite (default 20) and a quarter of that
on MariaDB. ``make fuzz`` runs a long one (``FUZZ_EXAMPLES=300``).
"""

import os
from pathlib import Path

import pytest
import schemathesis
from api_data import ADMIN_PASSWORD, ADMIN_USERNAME, seeded_app
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.security import generate_password_hash

from app import create_app
from config import testing_settings
from models import Client, db
from train_evaluate_model import train

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
MYSQL_EXAMPLES = max(2, EXAMPLES // 4)
ROLES = ("visitor", "client", "admin")
# Far from the ids the catalogue and the generated paths use, so that the admin's
# fuzzed deletes and patches never remove the client the fuzzer logs in as.
FUZZ_CLIENT_ID = 987_654
FUZZ_CLIENT = ("fuzz_client", "fuzz-client-pass-1")

SERVER_ERROR = schemathesis.checks.not_a_server_error
POSITIVE_CHECKS = [
    SERVER_ERROR,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]


# Invalid input must be refused with one of these; 413 is a body over 64 KB.
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


def _load_schema():
    """The OpenAPI document, read once from an app that needs no database."""
    app = create_app(testing_settings())
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    )
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=config)


SCHEMA = _load_schema()
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CASES = [(role, op) for role in ROLES for op in OPERATIONS]


@pytest.fixture(scope="module")
def fuzz_app(backend, tmp_path_factory):
    """The hand-made catalogue, a client far from generated ids, a model pack."""
    app, teardown = seeded_app(backend, tmp_path_factory, "fuzz")
    model_path = Path(app.config["MODEL_PATH"])
    # Fuzzed training starts run a trainer that returns at once, never the real one.
    app.config["MODEL_TRAINER"] = "fake_trainer:train"
    Path(f"{model_path}.release").touch()
    with app.app_context():
        db.session.add(
            Client(
                id=FUZZ_CLIENT_ID,
                username=FUZZ_CLIENT[0],
                password_hash=generate_password_hash(FUZZ_CLIENT[1]),
                source="registered",
                is_active=True,
            )
        )
        db.session.commit()
    # A real pack, so that home, related films and chat take the model's paths too
    # (the admin's fuzzed deletes then leave it knowing films the catalogue lost).
    train(
        app.config["SQLALCHEMY_DATABASE_URI"],
        str(model_path),
        progress_callback=lambda stage, fraction: None,
    )
    assert app.test_client().get("/api/health").get_json()["model"]["loaded"]
    yield app
    teardown()


@pytest.fixture(scope="module")
def session_cookies(fuzz_app):
    """The signed session cookie of each role (sessions live in the cookie)."""
    cookies = {"visitor": None}
    for role, (username, password) in (
        ("client", FUZZ_CLIENT),
        ("admin", (ADMIN_USERNAME, ADMIN_PASSWORD)),
    ):
        browser = fuzz_app.test_client()
        response = browser.post(
            "/api/auth/login",
            json={"username": username, "password": password, "role": role},
        )
        assert response.status_code == 200, response.get_json()
        cookies[role] = browser.get_cookie("session").value
    return cookies


def fuzz(app, cookie, operation, mode, examples, statuses):
    """Call ``operation`` with ``examples`` generated cases and validate each answer."""
    checks = NEGATIVE_CHECKS if mode == GenerationMode.NEGATIVE else POSITIVE_CHECKS

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        browser = app.test_client()
        if cookie is not None:
            browser.set_cookie("session", cookie)
        response = case.call_and_validate(session=browser, app=app, checks=checks)
        statuses.append(response.status_code)

    call()


@pytest.mark.parametrize(
    ("role", "operation"),
    CASES,
    ids=[f"{role}-{op.method.upper()} {op.path}" for role, op in CASES],
)
def test_operation_conforms_to_its_schema(
    fuzz_app, session_cookies, backend, role, operation
):
    examples = EXAMPLES if backend == "sqlite" else MYSQL_EXAMPLES
    statuses = []
    modes = [GenerationMode.POSITIVE]
    if operation.body or list(operation.iter_parameters()):
        modes.append(GenerationMode.NEGATIVE)  # nothing to corrupt otherwise
    for mode in modes:
        fuzz(fuzz_app, session_cookies[role], operation, mode, examples, statuses)
    assert statuses  # at least one request (operations without inputs make one)
    assert max(statuses) < 500


# What the fuzzer found, kept as plain regression tests -----------------------------


def test_ids_beyond_the_id_columns_are_404_not_an_overflow(fuzz_app, session_cookies):
    huge = 2**70
    admin = fuzz_app.test_client()
    admin.set_cookie("session", session_cookies["admin"])
    for method, url in (
        ("GET", f"/api/movies/detail/{huge}"),
        ("GET", f"/api/movies/detail/{2**31}"),
        ("DELETE", f"/api/admin/movies/{huge}"),
        ("POST", f"/api/admin/clients/{huge}/reset-password"),
        ("GET", f"/posters/{huge}"),
    ):
        response = admin.open(url, method=method)
        # No API rule matches (the front end's catch-all answers GET only).
        codes = {404: "not_found", 405: "method_not_allowed"}
        allowed = {404} if method == "GET" else {404, 405}
        assert response.status_code in allowed, (method, url)
        assert response.get_json()["error"]["code"] == codes[response.status_code]
    spec = fuzz_app.test_client().get("/api/openapi.json").get_json()
    (parameter,) = spec["paths"]["/api/movies/detail/{movie_id}"]["parameters"]
    assert parameter["schema"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 2**31 - 1,
    }


def test_every_chat_history_turn_is_checked_not_only_the_last_ten(fuzz_app):
    history = [{"role": "user"}] + [{"role": "user", "content": "hi"}] * 10
    for path in ("/api/ai/chat", "/api/ai/chat/stream"):
        response = fuzz_app.test_client().post(
            path, json={"message": "Heat", "history": history}
        )
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_history"


def test_stream_events_are_documented_as_they_are_sent(fuzz_app):
    spec = fuzz_app.test_client().get("/api/openapi.json").get_json()
    answer = spec["paths"]["/api/ai/chat/stream"]["post"]["responses"]["200"]
    event = answer["content"]["text/event-stream"]["schema"]
    assert event["required"] == ["event", "data"]
    assert event["properties"]["event"]["enum"] == ["delta", "done", "error"]
