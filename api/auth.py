"""Authentication: register, log in and out, the current user, password change."""

import functools
import logging

from flask import jsonify, request
from flask_smorest import Blueprint
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from api import ApiError, limiter
from api.schemas import (
    LoginResultSchema,
    LoginSchema,
    MessageSchema,
    NewAccountSchema,
    PasswordChangeSchema,
    RegisterSchema,
)
from api.security import (
    current_account,
    current_role,
    end_session,
    refresh_session,
    start_session,
)
from models import Admin, Client, db, utcnow

logger = logging.getLogger(__name__)

bp = Blueprint(
    "auth", __name__, url_prefix="/api/auth", description="Accounts and sessions"
)

# Every attempt counts per address; only failures count per username, so that a
# guessing attack on one account cannot lock its owner out for long.
LOGIN_LIMIT_PER_ADDRESS = "30 per minute"
LOGIN_LIMIT_PER_USERNAME = "5 per minute"
REGISTER_LIMIT_PER_ADDRESS = "20 per hour"

_dummy_hash = {}


def _login_username():
    body = request.get_json(silent=True)
    username = body.get("username") if isinstance(body, dict) else None
    return f"login:{str(username)[:64].lower()}"


def _failed(response):
    return response.status_code == 401


def _check_password(password_hash, password):
    """Check a password; spend the same time when the account does not exist."""
    if password_hash is None:
        if "value" not in _dummy_hash:
            _dummy_hash["value"] = generate_password_hash("not-a-real-password")
        check_password_hash(_dummy_hash["value"], password)
        return False
    return check_password_hash(password_hash, password)


def account_dict(role, account):
    body = account.to_dict()
    if role == "admin":
        body.update(source="admin", is_active=True)
    return body


@bp.route("/register", methods=["POST"])
@limiter.limit(REGISTER_LIMIT_PER_ADDRESS)
@bp.arguments(RegisterSchema)
@bp.alt_response(201, schema=NewAccountSchema, success=True)
def register(data):
    """Create a client account."""
    username = data["username"]
    taken = db.session.scalar(
        select(Client.id).where(func.lower(Client.username) == username.lower())
    )
    if taken is not None:
        raise ApiError(409, "username_taken", "用户名已被占用")

    client = Client(
        username=username,
        password_hash=generate_password_hash(data["password"]),
        source="registered",
        created_at=utcnow(),
        is_active=True,
    )
    db.session.add(client)
    try:
        db.session.commit()
    except IntegrityError:
        # Two registrations of one name at once: the unique index decides.
        db.session.rollback()
        raise ApiError(409, "username_taken", "用户名已被占用") from None

    logger.info("client registered: id=%s", client.id)
    return jsonify({"id": client.id, "username": client.username}), 201


@bp.route("/login", methods=["POST"])
@limiter.limit(LOGIN_LIMIT_PER_ADDRESS)
@limiter.limit(LOGIN_LIMIT_PER_USERNAME, key_func=_login_username, deduct_when=_failed)
@bp.arguments(LoginSchema)
@bp.alt_response(200, schema=LoginResultSchema, success=True)
def login(data):
    """Log in as a client (default) or an admin; the old session is discarded."""
    role = data["role"]
    model = Admin if role == "admin" else Client
    account = db.session.scalar(select(model).where(model.username == data["username"]))
    # Case-insensitive collations (MariaDB) may find "Alice" for "alice".
    if account is not None and account.username != data["username"]:
        account = None
    password_hash = account.password_hash if account is not None else None
    if not _check_password(password_hash, data["password"]):
        raise ApiError(401, "invalid_credentials", "用户名或密码错误")
    if role == "client" and not account.is_active:
        raise ApiError(403, "account_disabled", "账号已被禁用")

    account.last_login_at = utcnow()
    db.session.commit()
    start_session(role, account)

    return jsonify(
        {"msg": "登录成功", "role": role, "user": account_dict(role, account)}
    )


@bp.route("/logout", methods=["POST"])
@bp.alt_response(200, schema=MessageSchema, success=True)
def logout():
    """End the session (harmless when already logged out)."""
    end_session()
    return jsonify({"msg": "已退出登录"})


@bp.route("/me", methods=["GET"])
@bp.alt_response(200, schema=LoginResultSchema, success=True)
def me():
    """Return the logged-in account and its role."""
    role = current_role()
    account = current_account(role) if role else None
    if account is None:
        end_session()
        raise ApiError(401, "login_required", "请先登录")
    if role == "client" and not account.is_active:
        end_session()
        raise ApiError(403, "account_disabled", "账号已被禁用")
    return jsonify({"role": role, "user": account_dict(role, account)})


def _account_required(view):
    """401 before the body is validated, as on every other guarded route."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        role = current_role()
        if role is None or current_account(role) is None:
            raise ApiError(401, "login_required", "请先登录")
        return view(*args, **kwargs)

    return wrapped


@bp.route("/password", methods=["PUT"])
@limiter.limit(LOGIN_LIMIT_PER_ADDRESS)
@_account_required
@bp.arguments(PasswordChangeSchema)
@bp.alt_response(200, schema=MessageSchema, success=True)
def change_password(data):
    """Change the logged-in account's password; other sessions end."""
    role = current_role()
    account = current_account(role) if role else None
    if account is None:
        raise ApiError(401, "login_required", "请先登录")
    if role == "client" and not account.is_active:
        raise ApiError(403, "account_disabled", "账号已被禁用")
    if not check_password_hash(account.password_hash or "", data["old_password"]):
        raise ApiError(403, "wrong_password", "原密码错误")

    account.password_hash = generate_password_hash(data["new_password"])
    db.session.commit()
    refresh_session(role, account)

    return jsonify({"msg": "密码已修改"})
