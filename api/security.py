"""Sessions, login guards and the cross-site request check for the API.

Clients and admins log in through the same signed cookie session but under separate
keys (``client_id`` / ``admin_id``). Each key sits beside a fingerprint of the
account's password hash, so changing or resetting a password ends every other
session of that account.

Cross-site request forgery: state-changing requests (POST, PUT, PATCH, DELETE) under
``/api`` must send their body as ``application/json`` (an HTML form cannot do that
across sites without a CORS preflight, which fails for unknown origins), and when the
browser sends ``Origin`` it must be this site or one of ``CORS_ORIGINS``.
"""

import functools
import hashlib
import hmac
import time
from urllib.parse import urlsplit

from flask import current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature
from sqlalchemy import bindparam, select

from api import ApiError
from models import Admin, Client, db, read_row

ROLES = ("client", "admin")
SESSION_KEYS = {"client": "client_id", "admin": "admin_id"}
FINGERPRINT_KEYS = {"client": "client_auth", "admin": "admin_auth"}
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def check_origin():
    """Refuse state-changing API requests from other sites or with non-JSON bodies."""
    if request.method not in STATE_CHANGING_METHODS:
        return None
    if not request.path.startswith("/api/"):
        return None
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and (request.content_length or 0) > limit:
        # Also for routes that never read their body (logout, training start).
        raise ApiError(413, "payload_too_large", "请求体过大")
    origin = request.headers.get("Origin")
    if origin is not None and not _origin_allowed(origin):
        raise ApiError(403, "origin_not_allowed", "不允许来自该来源的跨站请求")
    has_body = bool(request.content_length) or request.headers.get(
        "Transfer-Encoding", ""
    ).lower() == ("chunked")
    if has_body and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "请求体必须是 JSON 格式")
    return None


class VerifiedCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, remembering the cookies already verified.

    Checking a cookie's signature (and building the signer) is a fixed cost on
    every logged-in request; a cookie seen before is looked up instead, and its
    age is still checked against the session lifetime. Only sessions of plain
    values are remembered, so no request can change another's copy. Bounded, per
    process; a new secret key starts afresh.
    """

    CACHE_SIZE = 10_000

    def __init__(self):
        self._verified = {}

    def open_session(self, app, request):
        value = request.cookies.get(self.get_cookie_name(app))
        if not value or not app.secret_key:
            return super().open_session(app, request)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()), value)
        known = self._verified.get(key)
        if known is not None:
            data, signed_at = known
            if 0 <= int(time.time()) - signed_at <= max_age:
                return self.session_class(data)
            self._verified.pop(key, None)  # another thread may have dropped it
            return self.session_class()
        try:
            data, signed_at = self.get_signing_serializer(app).loads(
                value, max_age=max_age, return_timestamp=True
            )
        except BadSignature:
            return self.session_class()
        if isinstance(data, dict) and all(
            isinstance(item, (str, int, float, bool, type(None)))
            for item in data.values()
        ):
            if len(self._verified) >= self.CACHE_SIZE:
                self._verified.clear()
            self._verified[key] = (dict(data), int(signed_at.timestamp()))
        return self.session_class(data)


def _origin_allowed(origin):
    if origin in current_app.config["CORS_ORIGINS"]:
        return True
    # Same origin: the page was served by this app (Origin "null" never matches).
    return urlsplit(origin).netloc == request.host


# Digests already made in this process, per secret key and password hash: every
# logged-in request compares one. Bounded; never shown or logged.
_FINGERPRINTS_SIZE = 10_000


def password_fingerprint(password_hash):
    """Return a short keyed digest of a password hash to bind sessions to it."""
    key = str(current_app.config["SECRET_KEY"])
    made = current_app.extensions.setdefault("password_fingerprints", {})
    fingerprint = made.get((key, password_hash))
    if fingerprint is None:
        digest = hmac.new(key.encode(), (password_hash or "").encode(), hashlib.sha256)
        fingerprint = digest.hexdigest()[:16]
        if len(made) >= _FINGERPRINTS_SIZE:
            made.clear()
        made[(key, password_hash)] = fingerprint
    return fingerprint


def session_matches(role, password_hash):
    """Whether the session's ``role`` fingerprint was made from this password hash."""
    return hmac.compare_digest(
        str(session.get(FINGERPRINT_KEYS[role])), password_fingerprint(password_hash)
    )


def _forget_request_checks():
    """Drop this request's cached session checks (the session just changed)."""
    for name in ("current_client_id", "current_accounts", "admin_session_valid"):
        g.pop(name, None)


def start_session(role, account):
    """Log ``account`` in as ``role`` in a fresh session (no session fixation)."""
    session.clear()
    session.permanent = True
    session[SESSION_KEYS[role]] = account.id
    session[FINGERPRINT_KEYS[role]] = password_fingerprint(account.password_hash)
    _forget_request_checks()


def refresh_session(role, account):
    """Keep the current session valid after its own account changed password."""
    session[FINGERPRINT_KEYS[role]] = password_fingerprint(account.password_hash)


def end_session():
    session.clear()
    _forget_request_checks()


def current_account(role):
    """Return the logged-in Client or Admin for ``role``, or None (cached)."""
    cache = g.setdefault("current_accounts", {})
    if role in cache:
        return cache[role]
    account = None
    account_id = session.get(SESSION_KEYS[role])
    if account_id is not None:
        model = Client if role == "client" else Admin
        account = db.session.get(model, account_id)
        if account is None or not session_matches(role, account.password_hash):
            account = None
    cache[role] = account
    return account


def current_client():
    """Return the active logged-in client, or None (visitors, disabled accounts)."""
    client = current_account("client")
    if client is None or not client.is_active:
        return None
    return client


# What the hot read paths need to trust a client session, as plain columns. Home and
# film pages select them beside their own data (joined on the claimed id), so the
# session check costs no statement of its own; see :func:`accept_client`.
CLIENT_CHECK_COLUMNS = (
    Client.__table__.c.password_hash.label("client_password_hash"),
    Client.__table__.c.is_active.label("client_is_active"),
)
CLIENT_AUTH = select(*CLIENT_CHECK_COLUMNS).where(
    Client.__table__.c.id == bindparam("client_id")
)


def claimed_client_id():
    """Return the client id the session names (not yet checked), or None."""
    if "current_client_id" in g:
        return g.current_client_id
    return session.get(SESSION_KEYS["client"])


# Password hashes that sessions were last accepted with, per client, beside the
# session fingerprint that matched: a page may then send its writes conditioned on
# the hash before the check has been read (api.movies.movie_detail). Bounded; a
# process's memory only, never shown or logged.
CHECKED_HASHES_SIZE = 10_000


def _checked_hashes():
    return current_app.extensions.setdefault("checked_client_hashes", {})


def accept_client(client_id, row):
    """Check the claimed client against a row holding ``CLIENT_CHECK_COLUMNS``.

    Returns the id when the account exists, is active and still has the password
    the session was made with; None otherwise (the request is then a visitor's).
    The answer is kept for the rest of the request.
    """
    if "current_client_id" in g:
        return g.current_client_id
    result = None
    password_hash = None if row is None else row.client_password_hash
    fingerprint = str(session.get(FINGERPRINT_KEYS["client"]))
    if client_id is not None and password_hash is not None and row.client_is_active:
        if session_matches("client", password_hash):
            result = client_id
    checked = _checked_hashes()
    if result is None:
        if row is not None:  # the account was read and refused
            checked.pop(client_id, None)
    elif checked.get(client_id) != (fingerprint, password_hash):
        if len(checked) >= CHECKED_HASHES_SIZE:
            checked.clear()
        checked[client_id] = (fingerprint, password_hash)
    g.current_client_id = result
    return result


def checked_password_hash(client_id):
    """Return the password hash this session was last accepted with here, or None.

    Only a hint: a statement conditioned on it does nothing once the password
    changed, and the session must still pass :func:`accept_client`.
    """
    entry = _checked_hashes().get(client_id)
    fingerprint = str(session.get(FINGERPRINT_KEYS["client"]))
    if entry is None or not hmac.compare_digest(entry[0], fingerprint):
        return None
    return entry[1]


def current_client_id():
    """Return the active logged-in client's id, or None, from one light query.

    The checks are those of :func:`current_client`, on a plain row instead of the
    ORM object.
    """
    client_id = claimed_client_id()
    if client_id is None or "current_client_id" in g:
        return client_id
    parameters = {"client_id": client_id}
    row = db.session.connection().execute(CLIENT_AUTH, parameters).one_or_none()
    return accept_client(client_id, row)


def current_role():
    for role in ROLES:
        if session.get(SESSION_KEYS[role]) is not None:
            return role
    return None


def require_client():
    """Return the logged-in client or raise 401/403."""
    client = current_account("client")
    if client is None:
        if current_account("admin") is not None:
            raise ApiError(403, "client_only", "该操作需要以普通用户身份登录")
        raise ApiError(401, "login_required", "请先登录")
    if not client.is_active:
        raise ApiError(403, "account_disabled", "账号已被禁用")
    return client


# What the admin guard needs to trust an admin session, as one plain column.
ADMIN_AUTH = select(Admin.__table__.c.password_hash).where(
    Admin.__table__.c.id == bindparam("admin_id")
)


def admin_session_valid():
    """Whether the session names an admin whose password is unchanged.

    The checks of ``current_account("admin")`` on one plain row, read without a
    transaction (every admin route runs it first); cached for the request.
    """
    if "admin_session_valid" in g:
        return g.admin_session_valid
    admin_id = session.get(SESSION_KEYS["admin"])
    valid = False
    if admin_id is not None:
        row = read_row(ADMIN_AUTH, {"admin_id": admin_id})
        valid = row is not None and session_matches("admin", row.password_hash)
    g.admin_session_valid = valid
    return valid


def require_admin():
    """Raise 401 (logged out) or 403 (a client) unless an admin is logged in."""
    if admin_session_valid():
        return
    if current_account("client") is not None:
        raise ApiError(403, "admin_required", "需要管理员权限")
    raise ApiError(401, "login_required", "请先登录")


def login_required(view):
    """Let only a logged-in, active client through."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        require_client()
        return view(*args, **kwargs)

    return wrapped


def admin_required(view):
    """Let only a logged-in admin through."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        require_admin()
        return view(*args, **kwargs)

    return wrapped
