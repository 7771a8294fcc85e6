"""The AI movie expert: chat over any OpenAI-compatible API, grounded in the catalogue.

``POST /api/ai/chat`` answers ``{"reply", "movies"}``; ``POST /api/ai/chat/stream``
answers ``text/event-stream``: ``delta`` events with the reply's text, then one
``done`` event with the whole reply and the film cards (or one ``error`` event).
Without ``LLM_API_KEY`` both answer from the catalogue and the recommender.
Grounding, prompts and provider calls live in ``assistant.py``.
"""

import json
import logging
import time

import marshmallow as ma
from flask import Response, current_app, jsonify, request, stream_with_context
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint
from marshmallow import fields

from api import ApiError, limiter
from api.schemas import MovieSchema
from api.security import current_client
from assistant import (
    MAX_HISTORY_TURNS,
    MAX_MESSAGE_CHARS,
    Assistant,
    ProviderError,
    build_messages,
    classify,
    completion_text,
    create_completion,
    delta_text,
    ground,
    is_provider_failure,
    offline_answer,
    reply_cards,
)
from models import db

logger = logging.getLogger(__name__)

bp = Blueprint(
    "chat",
    __name__,
    url_prefix="/api/ai",
    description="AI movie expert, grounded in the catalogue",
)

# One bucket for both routes. Visitors count per address only; a logged-in client
# also counts per account, whichever address they come from.
ADDRESS_LIMIT = "30 per minute"
CLIENT_LIMIT = "10 per minute;200 per day"
ROLES = ("user", "assistant")


class ChatTurnSchema(ma.Schema):
    role = fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    content = fields.String(required=True)


class ChatRequestSchema(ma.Schema):
    message = fields.String(
        required=True,
        metadata={"description": f"The question, 1-{MAX_MESSAGE_CHARS} characters"},
    )
    history = fields.List(
        fields.Nested(ChatTurnSchema),
        metadata={
            "description": f"Earlier turns; only the last {MAX_HISTORY_TURNS} are used"
        },
    )


class ChatReplySchema(ma.Schema):
    reply = fields.String()
    movies = fields.List(fields.Nested(MovieSchema))
    offline = fields.Boolean(
        metadata={"description": "True when answered without the AI model"}
    )


class ChatFailureErrorSchema(ma.Schema):
    code = fields.String(
        metadata={
            "description": "llm_timeout, llm_unavailable, llm_auth_failed, "
            "llm_rate_limited or llm_error"
        }
    )
    message = fields.String()


class ChatFailureSchema(ma.Schema):
    reply = fields.String(metadata={"description": "The apology to show"})
    movies = fields.List(fields.Nested(MovieSchema))
    error = fields.Nested(ChatFailureErrorSchema)


STREAM_DESCRIPTION = (
    "Server-sent events: `delta` events with `{content}`, then one `done` event "
    "with `{reply, movies, offline}`, or one `error` event with the failure body"
)


@bp.record_once
def _set_up(state):
    state.app.extensions["assistant"] = Assistant()


def _client_key():
    client = current_client()
    return f"client:{client.id}" if client else get_remote_address()


def _is_visitor():
    return current_client() is None


def _rate_limited(view):
    view = limiter.shared_limit(
        CLIENT_LIMIT,
        scope="ai-chat-client",
        key_func=_client_key,
        exempt_when=_is_visitor,
    )(view)
    return limiter.shared_limit(ADDRESS_LIMIT, scope="ai-chat-address")(view)


def read_chat_request():
    """Return the validated ``(message, history)`` of a chat request."""
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        raise ApiError(400, "invalid_json", "请求体不是合法的 JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "请求体必须是 JSON 对象")
    unknown = sorted(set(body) - {"message", "history"})
    if unknown:
        raise ApiError(
            422,
            "validation_error",
            "请求参数校验失败:" + ", ".join(unknown),
            {name: ["Unknown field."] for name in unknown},
        )
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ApiError(400, "message_required", "请输入要咨询的问题")
    message = message.strip()
    if len(message) > MAX_MESSAGE_CHARS:
        raise ApiError(
            413, "message_too_long", f"问题不能超过 {MAX_MESSAGE_CHARS} 个字符"
        )

    history = body.get("history")
    if history is None:
        history = []
    if not isinstance(history, list):
        raise ApiError(400, "invalid_history", "对话历史格式不正确")
    # Every turn is checked, including the older ones that are then dropped.
    for turn in history:
        if (
            not isinstance(turn, dict)
            or turn.get("role") not in ROLES
            or not isinstance(turn.get("content"), str)
        ):
            raise ApiError(400, "invalid_history", "对话历史格式不正确")
    turns = []
    for turn in history[-MAX_HISTORY_TURNS:]:
        content = turn["content"].strip()[:MAX_MESSAGE_CHARS]
        if content:
            turns.append({"role": turn["role"], "content": content})
    return message, turns


def _prepare(message):
    """Ground the question; return the assistant, index and grounding."""
    assistant = current_app.extensions["assistant"]
    index = assistant.index()
    client = current_client()
    pack = current_app.extensions["recommender"].get()
    grounding = ground(index, message, client.id if client else None, pack)
    return assistant, index, grounding


def _log_failure(error, started):
    logger.warning(
        "chat provider failed: code=%s cause=%s status=%s after %.1f s",
        error.code,
        error.cause,
        error.status,
        time.monotonic() - started,
    )


def _failure(error, started):
    """Log the provider failure (never the key) and answer 503 with the apology."""
    _log_failure(error, started)
    response = jsonify(error.body())
    response.status_code = 503
    return response


def _release_connection():
    # The model may take many seconds: do not hold a pooled connection (and an open
    # transaction) meanwhile. Loaded films stay readable once detached.
    db.session.close()


def _provider_call(assistant, grounding, message, history, **kwargs):
    config = current_app.config
    started = time.monotonic()
    return create_completion(
        assistant.client(config),
        started + config["LLM_TIMEOUT"],
        model=config["LLM_MODEL"],
        messages=build_messages(grounding, message, history),
        **kwargs,
    )


@bp.route("/chat", methods=["POST"])
@_rate_limited
@bp.doc(requestBody={"content": {"application/json": {"schema": ChatRequestSchema}}})
@bp.alt_response(200, schema=ChatReplySchema, success=True)
@bp.alt_response(503, schema=ChatFailureSchema, description="The provider failed")
def chat():
    """Answer a question about films, grounded in the catalogue."""
    message, history = read_chat_request()
    started = time.monotonic()

    assistant, index, grounding = _prepare(message)
    if not current_app.config.get("LLM_API_KEY"):
        reply, movies = offline_answer(grounding)
        return jsonify({"reply": reply, "movies": movies, "offline": True})
    _release_connection()

    try:
        completion = _provider_call(assistant, grounding, message, history)
    except ProviderError as error:
        return _failure(error, started)
    reply = completion_text(completion)
    if not reply:
        return _failure(ProviderError("llm_error", "empty reply"), started)

    movies = reply_cards(index, grounding, reply)
    logger.info(
        "chat answered: context films=%d cards=%d in %.1f s",
        len(grounding.films()),
        len(movies),
        time.monotonic() - started,
    )
    return jsonify({"reply": reply, "movies": movies, "offline": False})


@bp.route("/chat/stream", methods=["POST"])
@_rate_limited
@bp.doc(requestBody={"content": {"application/json": {"schema": ChatRequestSchema}}})
@bp.alt_response(
    200,
    schema={
        "type": "object",
        "description": "One server-sent event; data is one line of JSON",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["delta", "done", "error"]},
            "data": {"type": "string"},
        },
    },
    content_type="text/event-stream",
    description=STREAM_DESCRIPTION,
    success=True,
)
@bp.alt_response(503, schema=ChatFailureSchema, description="The provider failed")
def chat_stream():
    """Stream the answer as server-sent events, then the film cards."""
    message, history = read_chat_request()
    started = time.monotonic()

    assistant, index, grounding = _prepare(message)
    if not current_app.config.get("LLM_API_KEY"):
        reply, movies = offline_answer(grounding)
        return _event_stream(_offline_events(reply, movies))
    _release_connection()

    # Failures before the first byte (refused key, provider down, timeout) still
    # get the plain 503 answer; later ones become an ``error`` event.
    try:
        stream = _provider_call(assistant, grounding, message, history, stream=True)
    except ProviderError as error:
        return _failure(error, started)
    events = _relay(stream, index, grounding, started)
    return _event_stream(stream_with_context(events))


def sse(event, payload):
    """Frame one server-sent event (JSON data on a single line)."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {data}\n\n"


def _event_stream(events):
    return Response(
        events,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _offline_events(reply, movies):
    for line in reply.splitlines(keepends=True):
        yield sse("delta", {"content": line})
    yield sse("done", {"reply": reply, "movies": movies, "offline": True})


def _relay(stream, index, grounding, started):
    """Pass the provider's deltas on, then the cards; a failure becomes an event."""
    parts = []
    try:
        for chunk in stream:
            text = delta_text(chunk)
            if text:
                parts.append(text)
                yield sse("delta", {"content": text})
    except Exception as exc:  # after the headers, a failure can only be an event
        if not is_provider_failure(exc):
            logger.exception("chat stream failed unexpectedly")
        error = classify(exc)
        _log_failure(error, started)
        yield sse("error", error.body())
        return
    finally:
        stream.close()

    reply = "".join(parts).strip()
    if not reply:
        error = ProviderError("llm_error", "empty reply")
        _log_failure(error, started)
        yield sse("error", error.body())
        return
    movies = reply_cards(index, grounding, reply)
    logger.info(
        "chat streamed: context films=%d cards=%d in %.1f s",
        len(grounding.films()),
        len(movies),
        time.monotonic() - started,
    )
    yield sse("done", {"reply": reply, "movies": movies, "offline": False})
