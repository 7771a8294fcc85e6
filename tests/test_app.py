"""The application factory, configuration, health and JSON errors."""

import pytest

from app import create_app
from config import ConfigError, load_settings, testing_settings


def test_health_reports_database_and_model(client, backend):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == {
        "ok": True,
        "backend": "sqlite" if backend == "sqlite" else "mysql",
    }
    assert body["model"]["loaded"] is False


def test_health_says_when_database_is_down():
    app = create_app(
        testing_settings(
            SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:1/none",
            SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        )
    )
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is False
    assert body["database"]["error"] == "OperationalError"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/nothing-here", 404, "not_found"),
        ("post", "/api/health", 405, "method_not_allowed"),
    ],
)
def test_errors_under_api_are_json(client, method, path, status, code):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]


def test_production_without_secret_key_refuses_to_start():
    settings = load_settings({"APP_ENV": "production"})
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app(settings)


def test_development_secret_key_is_generated_once(tmp_path, monkeypatch):
    from config import development_secret_key

    first = development_secret_key(tmp_path)
    assert len(first) == 64
    assert development_secret_key(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_settings_come_from_the_environment():
    settings = load_settings(
        {
            "DATABASE_URL": "mysql+pymysql://u:p@db:3306/moviedb?charset=utf8mb4",
            "CORS_ORIGINS": "https://a.example, https://b.example",
            "PORT": "8080",
            "LLM_MODEL": "qwen-max",
        }
    )
    # Ping and reset are models.py's pool events (only when needed), not the pool's.
    assert "pool_pre_ping" not in settings["SQLALCHEMY_ENGINE_OPTIONS"]
    assert settings["SQLALCHEMY_ENGINE_OPTIONS"]["pool_reset_on_return"] is None
    assert settings["SQLALCHEMY_ENGINE_OPTIONS"]["pool_recycle"] > 0
    assert settings["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert settings["PORT"] == 8080
    assert settings["LLM_MODEL"] == "qwen-max"
    assert settings["LLM_API_KEY"] is None
    assert settings["LLM_BASE_URL"].startswith("https://dashscope")


def test_bad_setting_is_a_clear_error():
    with pytest.raises(ConfigError, match="PORT must be an integer"):
        load_settings({"PORT": "eighty"})


def test_json_answers_keep_flasks_document():
    import math
    from datetime import date, datetime
    from decimal import Decimal

    app = create_app(testing_settings())
    value = {
        "b": "Misérables, Les (1995)",
        "a": [math.nan, Decimal("4.50"), 2**40],
        "c": {"when": datetime(2026, 12, 4, 5, 6, 7), "day": date(1996, 2, 14)},
        1: True,
    }

    with app.app_context():
        text_ = app.json.dumps(value)
        pretty = app.json.dumps({"z": 1, "y": [1]}, indent=2)
        huge = app.json.dumps({"n": 10**30, "s": "\udb49"})

    assert text_ == (
        '{"1":true,"a":[null,"4.50",1099511627776],"b":"Misérables, Les (1995)",'
        '"c":{"day":"Wed, 14 Feb 1996 00:00:00 GMT",'
        '"when":"Fri, 04 Dec 2026 05:06:07 GMT"}}'
    )
    assert pretty == '{\n  "y": [\n    1\n  ],\n  "z": 1\n}'
    # orjson refuses both; the standard library writes them.
    assert huge == '{"n": 1000000000000000000000000000000, "s": "\udb49"}'
