"""Who may read the Incidents view: the caller's Airflow token, taken from the request and validated.

Airflow does not authenticate plugin routes, so every router of the view depends on
:func:`caller_dependency`; the validation itself (Airflow's auth manager) is the plugin's
:data:`Authenticator`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

TOKEN_COOKIE = "_token"  # noqa: S105 - a cookie name: Airflow's COOKIE_NAME_JWT_TOKEN


class AccessDenied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Caller:
    name: str


Authenticator = Callable[[str], Awaitable[Caller]]
"""Validates a presented JWT: returns the caller, or raises AccessDenied (401 invalid, 403 not allowed)."""

CallerDependency = Callable[[Request], Awaitable[Caller]]


def caller_dependency(authenticate: Authenticator) -> CallerDependency:
    """The routes' dependency: the request's Airflow JWT (``Authorization: Bearer`` first, else the UI's
    ``_token`` cookie, which the browser sends to the framed pages), validated by ``authenticate``."""

    async def caller(request: Request) -> Caller:
        header = request.headers.get("authorization")
        token = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AccessDenied(401, "the Authorization header must be 'Bearer <Airflow JWT>'")
            token = value.strip()
        else:
            token = request.cookies.get(TOKEN_COOKIE) or None
        if not token:
            raise AccessDenied(401, "sign in to Airflow first (no Airflow token on this request)")
        return await authenticate(token)

    return caller
