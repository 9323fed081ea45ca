"""The tax apps registered to answer 扫码验证 requests, and how one proves it is one.

A bureau registers each app once (``cert-verifier app register --name 青岛税务APP``): the app
gets an id and a secret, shown once; the store keeps the secret's SHA-256 only (the secret is
32 random bytes: no dictionary can guess it, so a fast hash is enough). The app sends both on
every call of the app API as ``Authorization: Bearer <appId>.<secret>`` over TLS. ``revoke``
ends an app's rights at once. What the app does before it answers (scanning the code, the face
check against the person's identity) is the app's own business: the verifier trusts a
registered app's word on which person it verified, and nothing else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cert_agent.verifier.errors import AppUnauthorized
from cert_agent.verifier.store.interfaces import Apps
from cert_agent.verifier.store.records import App

_CREDENTIAL = re.compile(r"^Bearer (app-[0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Registered:
    """A new app's credentials: the secret is shown to the bureau once and kept nowhere."""

    app_id: str
    secret: str

    @property
    def credential(self) -> str:
        return f"{self.app_id}.{self.secret}"


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


async def register(apps: Apps, name: str, now: dt.datetime) -> Registered:
    app_id = "app-" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    await apps.register_app(App(app_id, name, secret_digest(secret), revoked=False), now)
    return Registered(app_id, secret)


async def authenticate(apps: Apps, authorization: str) -> App:
    """The registered, unrevoked app whose credential the Authorization header carries, else
    APP_UNAUTHORIZED (the same for every reason: a caller learns nothing of which apps exist)."""
    match = _CREDENTIAL.match(authorization)
    if match is None:
        raise AppUnauthorized("no app credential")
    app = await apps.app(match.group(1))
    known = app is not None and not app.revoked
    expected = app.secret_sha256 if app is not None else "0" * 64
    if not hmac.compare_digest(expected, secret_digest(match.group(2))) or not known:
        raise AppUnauthorized("unknown app, revoked app or wrong secret")
    assert app is not None
    return app
