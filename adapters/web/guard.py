"""The guard every request passes, and what handlers share.

`guard` finds the session (signed cookie, or a bearer token), signs loopback visitors in without a
password, refuses writes without the session's CSRF token, turns refusals into one-line answers
(JSON for the API, a page otherwise) and sets the security headers. Handlers then check the
admin rule (`require_admin`) and the rate limits (`rate_limit`) themselves.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from adapters.web import pages
from adapters.web.adapter import WebCore, WebOptions
from adapters.web.live import LiveJobs
from adapters.web.security import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    RateLimiter,
    Session,
    SessionSigner,
    same_secret,
)
from bot.errors import FolioError, NotFoundError, PermissionDeniedError, QueueFullError
from bot.replies import user_message

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A stored PDF is untrusted: no scripts, nothing loaded from elsewhere, not framed by others.
PDF_CSP = "default-src 'none'; object-src 'self'; frame-ancestors 'self'; base-uri 'none'"
_PUBLIC = ("/healthz", "/login", "/static/")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

@dataclass
class Context:
    """The dependencies every handler shares (one per app)."""

    core: WebCore
    options: WebOptions
    live: LiveJobs
    signer: SessionSigner
    questions: RateLimiter
    writes: RateLimiter
    mark: str = ""  # of the current password and admin token (see `secrets_mark`)

    def is_admin(self, session: Session) -> bool:
        """The admin rule: with FOLIO_WEB_ADMIN_TOKEN set, whoever entered it; without it, every
        user of a loopback-only page (it is this machine's own) and nobody otherwise."""
        if self.options.admin_token:
            return session.admin
        return self.options.loopback

    def collection(self, requested: str | None) -> str:
        if not requested:
            return self.options.collections[0]
        if requested not in self.options.collections:
            raise HttpProblem(403, f"The web page does not serve collection {requested!r}.")
        return requested


class HttpProblem(Exception):
    """A request refused with a status and a one-line reason."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


CTX: web.AppKey[Context] = web.AppKey("folio_web", Context)


# ---- the guard ------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    api = request.path.startswith("/api/")
    fresh: Session | None = None
    try:
        session, bearer, fresh = find_session(ctx, request)
        request["session"] = session
        request["bearer"] = bearer
        public = any(request.path == p or request.path.startswith(p) for p in _PUBLIC if p)
        if not session.signed_in and not public:
            if api:
                raise HttpProblem(401, "Sign in first (POST /login), or send a bearer token.")
            response: web.StreamResponse = redirect("/login")
        else:
            if request.method in _WRITE_METHODS and not bearer:
                await check_csrf(request, session)
            response = await handler(request)
    except HttpProblem as problem:
        response = problem_response(problem, api=api or request.method != "GET", request=request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = problem_response(HttpProblem(exc.status, exc.reason), api=api, request=request)
        else:
            response = exc
    if fresh is not None and not response.prepared and COOKIE not in response.cookies:
        set_cookie(ctx, request, response, fresh)
    security_headers(response, request)
    return response


def find_session(ctx: Context, request: web.Request) -> tuple[Session, bool, Session | None]:
    """(session, authenticated by bearer token, a new session to set as the cookie or None)."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        token = auth[len("Bearer "):].strip()
        if same_secret(token, ctx.options.admin_token):
            return Session(csrf="", issued=time.time(), user="api-admin", name="api",
                           admin=True), True, None
        if same_secret(token, ctx.options.password):
            return Session(csrf="", issued=time.time(), user="api", name="api"), True, None
        raise HttpProblem(401, "That bearer token is not valid.")
    session = ctx.signer.loads(request.cookies.get(COOKIE))
    if session is not None and (not session.signed_in or session.mark == ctx.mark):
        return session, False, None
    fresh = Session.anonymous()
    if ctx.options.loopback and not ctx.options.password:
        # Loopback needs no sign-in: a generated name, changeable on /login.
        fresh = fresh.sign_in(f"guest-{secrets.token_hex(2)}", admin=False, mark=ctx.mark)
    return fresh, False, fresh


async def check_csrf(request: web.Request, session: Session) -> None:
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        given = str(form.get(CSRF_FIELD, ""))
    if not given and request.content_type.startswith("multipart/"):
        return  # checked on the first part, by the upload handler (see _read_uploads)
    if not same_secret(given, session.csrf):
        raise HttpProblem(403, "The form expired or came from another site; reload the page.")


def set_cookie(
    ctx: Context, request: web.Request, response: web.StreamResponse, session: Session
) -> None:
    # Secure whenever the page is reached over HTTPS (directly or through a TLS proxy); a
    # Secure cookie on plain HTTP would never come back and sign-in would loop.
    https = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
    response.set_cookie(
        COOKIE, ctx.signer.dumps(session), max_age=int(ctx.signer.max_age_s), httponly=True,
        samesite="Strict", path="/", secure=https,
    )


def security_headers(response: web.StreamResponse, request: web.Request) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    if not request.path.startswith("/files/"):
        headers["X-Frame-Options"] = "DENY"
    headers.setdefault("Cache-Control", "no-store")


def problem_response(problem: HttpProblem, *, api: bool, request: web.Request) -> web.Response:
    headers = {}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(problem.retry_after)))
    if api or request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response({"error": problem.message}, status=problem.status,
                                 headers=headers)
    session = request.get("session")
    body = pages.error_page(problem.status, problem.message, session=session)
    return web.Response(text=body, status=problem.status, content_type="text/html",
                        headers=headers)


# ---- helpers ------------------------------------------------------------------------------


def me(request: web.Request) -> Session:
    session: Session = request["session"]
    return session


def require_admin(request: web.Request) -> Session:
    session = me(request)
    if not request.app[CTX].is_admin(session):
        raise HttpProblem(403, "Only admins may add or forget documents.")
    return session


def rate_limit(limiter: RateLimiter, key: str, what: str) -> None:
    wait = limiter.check(key)
    if wait:
        raise HttpProblem(429, f"Too many {what}; try again in {max(1, round(wait))}s.",
                          retry_after=wait)


def view_of(request: web.Request) -> pages.View:
    ctx = request.app[CTX]
    session = me(request)
    return pages.View(session=session, admin=ctx.is_admin(session),
                      collections=ctx.options.collections, needs_password=bool(ctx.options.password),
                      admin_token=bool(ctx.options.admin_token))


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def folio_problem(exc: Exception) -> HttpProblem:
    message = user_message(exc, context="web")
    if isinstance(exc, PermissionDeniedError):
        return HttpProblem(403, message)
    if isinstance(exc, NotFoundError):
        return HttpProblem(404, message)
    if isinstance(exc, QueueFullError):
        return HttpProblem(429, message, retry_after=30)
    if isinstance(exc, FolioError):
        return HttpProblem(409, message)
    return HttpProblem(500, message)


