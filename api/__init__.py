"""The REST API: shared error handling, extensions and blueprint registration.

Every error body has one shape::

    {"error": {"code": "movie_not_found", "message": "电影不存在"}}

``code`` is a stable English identifier for programs; ``message`` is for people
(Simplified Chinese). Raise :class:`ApiError` in handlers; a bare ``abort(404)``
gets a code derived from its status.
"""

import json
import logging
import time

import orjson
from flask import jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

logger = logging.getLogger(__name__)

limiter = Limiter(key_func=get_remote_address)

DEFAULT_CODES = {
    400: ("bad_request", "请求格式不正确"),
    401: ("unauthorized", "请先登录"),
    403: ("forbidden", "没有权限执行此操作"),
    404: ("not_found", "请求的资源不存在"),
    405: ("method_not_allowed", "不支持该请求方法"),
    409: ("conflict", "请求与当前状态冲突"),
    413: ("payload_too_large", "请求体过大"),
    415: ("unsupported_media_type", "请求必须是 JSON 格式"),
    422: ("validation_error", "请求参数校验失败"),
    429: ("rate_limited", "请求过于频繁,请稍后再试"),
    500: ("internal_error", "服务器内部错误"),
    503: ("service_unavailable", "服务暂时不可用,请稍后再试"),
}


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a user-facing message."""

    def __init__(self, status, code, message=None, details=None):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message or DEFAULT_CODES.get(status, ("", "请求失败"))[1]
        self.details = details


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON answers written by orjson: the same documents, several times
    faster (a film page's body took a tenth of its request through ``json``).

    Keys are sorted (``sort_keys``) and non-ASCII text is never escaped; dates,
    decimals and whatever else orjson does not know go through Flask's own
    conversions. NaN becomes null (``json`` would write invalid JSON). Calls with
    options other than indentation or separators, and values orjson refuses, go to
    the standard library.
    """

    ensure_ascii = False  # for those calls too

    def dumps(self, obj, **kwargs):
        layout = {"indent": kwargs.pop("indent", None)}
        layout["separators"] = kwargs.pop("separators", None)
        indent = layout["indent"]
        if kwargs or indent not in (None, 2):
            return super().dumps(obj, **layout, **kwargs)
        options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
        if self.sort_keys:
            options |= orjson.OPT_SORT_KEYS
        if indent:
            options |= orjson.OPT_INDENT_2
        try:
            return orjson.dumps(obj, default=self.default, option=options).decode()
        except orjson.JSONEncodeError:
            # What orjson refuses and json writes: integers beyond 64 bits, lone
            # surrogates (both only ever echoed from bad input).
            return super().dumps(obj, **layout)


def error_response(status, code=None, message=None, details=None, headers=None):
    """Return the JSON error response every failure goes through."""
    default_code, default_message = DEFAULT_CODES.get(status, ("error", "请求失败"))
    body = {
        "error": {"code": code or default_code, "message": message or default_message}
    }
    if details:
        body["error"]["details"] = details
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _bad_input(exc, details):
    """Return a (code, message) naming what was wrong with a 400/422 request."""
    if exc.code == 400 and details == ["Invalid JSON body."]:
        return "invalid_json", "请求体不是合法的 JSON"
    if exc.code == 422 and isinstance(details, dict) and details:
        fields = ", ".join(str(name) for name in details)
        return "validation_error", f"请求参数校验失败:{fields}"
    return None, None


def _validation_details(exc):
    """Pull webargs/marshmallow field messages out of an aborted request."""
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if isinstance(messages, dict) and len(messages) == 1:
        # webargs nests by location ("json", "query"); the field names matter here.
        (only,) = messages.values()
        return only
    return messages


def register_error_handlers(app):
    """Make every error JSON, at app level so routing 404/405 are covered too."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc):
        status = exc.code or 500
        details = _validation_details(exc)
        code, message = _bad_input(exc, details)
        headers = {}
        if status == 429:
            retry_after = getattr(exc, "retry_after", None) or _seconds_to_reset()
            if retry_after:
                headers["Retry-After"] = str(retry_after)
        if status == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(status, code, message, details, headers)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def handle_database_down(exc):
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        _rollback()
        return error_response(
            503, "database_unavailable", "数据库暂时不可用,请稍后再试"
        )

    @app.errorhandler(IntegrityError)
    def handle_integrity_error(exc):
        _rollback()
        return error_response(409, "conflict", "数据与现有记录冲突")

    @app.errorhandler(Exception)
    def handle_unexpected(exc):
        logger.exception("unhandled error")
        return error_response(500)


def _seconds_to_reset():
    """Seconds until the breached Flask-Limiter window resets, or None."""
    try:
        current = limiter.current_limit
    except Exception:  # outside a limited request there is nothing to report
        return None
    if current is None or not current.breached:
        return None
    return max(1, int(current.reset_at - time.time()))


def _rollback():
    from models import db

    try:
        db.session.rollback()
    except Exception:  # the connection may be gone; the session is discarded anyway
        logger.debug("rollback failed", exc_info=True)


# Ids are INT columns: a larger number in a URL is no row (404), never an overflow.
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """``<int:...>`` bounded to the id columns' range."""

    def __init__(self, url_map, fixed_digits=0, min=None, max=MAX_ID, signed=False):
        super().__init__(url_map, fixed_digits, min, max, signed)


class OpenApi(Api):
    """flask-smorest without its own error handler: ours keeps the error shape."""

    def _register_error_handlers(self):
        pass


def check_json_body():
    """Refuse a JSON body that cannot be decoded, before any view parses it.

    webargs lets through what is not a JSONDecodeError: nesting deep enough to hit
    the recursion limit, or an integer with more digits than Python converts.
    """
    if not request.path.startswith("/api/") or not request.content_length:
        return
    if not request.is_json:
        return
    try:
        json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, "invalid_json", "请求体不是合法的 JSON", ["Invalid JSON body."]
        ) from exc


def register_blueprints(app):
    """Register one blueprint per API area and document them at /api/openapi.json."""
    from flask_smorest import Blueprint as DocumentedBlueprint
    from flask_smorest.spec.plugins import integerconverter2paramschema

    from api import admin, auth, chat, movies, posters
    from api.schemas import ErrorSchema
    from api.security import VerifiedCookieSessions, check_origin

    for key, value in {
        "API_TITLE": "MovieRec API",
        "API_VERSION": "1.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
    }.items():
        app.config.setdefault(key, value)
    OpenApi.ERROR_SCHEMA = ErrorSchema
    app.url_map.converters["int"] = IdConverter
    api = OpenApi(app)
    api.register_converter(IdConverter, integerconverter2paramschema)
    app.extensions["openapi"] = api
    app.session_interface = VerifiedCookieSessions()
    app.before_request(check_origin)
    app.before_request(check_json_body)

    for module in (auth, movies, chat, admin, posters):
        if isinstance(module.bp, DocumentedBlueprint):
            api.register_blueprint(module.bp)
        else:
            app.register_blueprint(module.bp)
