"""The console's shared machinery: its app state (templates, sessions, the results/s sampler),
who is looking (`viewer`), rendering a page, and the security headers of every `/ui/` answer.

Templates are Jinja2 with autoescaping on for every template: monitored text (plugin output,
host and service names, labels) is attacker-controlled, and it only ever reaches the page as
escaped text. Pages carry no inline script or style, so the Content-Security-Policy can forbid
both: even markup that slipped through could not run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from alertd.errors import AlertdError, InputError
from alertd.http.keys import CLOCK, LIVE, METRICS
from alertd.ui import fmt
from alertd.ui.session import COOKIE, LIFETIME, Session, Sessions, csrf_ok, token_allows

HERE = Path(__file__).parent
STATIC = HERE / "static"
# Same-origin only, nothing inline: scripts, styles, images and fetches from this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# The header console.js sends to ask for a page's live part only (auto-refresh).
FRAGMENT_HEADER = "X-Console-Fragment"


class RateSampler:
    """Results per second over about the last minute, from a growing total sampled per view."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()

    def rate(self, total: float) -> float | None:
        now = self._clock()
        self._samples.append((now, total))
        while len(self._samples) > 2 and self._samples[1][0] < now - 60:
            self._samples.popleft()
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return None if t1 - t0 < 1 else max(0.0, (v1 - v0) / (t1 - t0))


@dataclass(slots=True)
class Console:
    templates: jinja2.Environment
    sessions: Sessions = field(default_factory=Sessions)
    results_rate: RateSampler = field(default_factory=RateSampler)


CONSOLE = web.AppKey("console", Console)


def install(app: web.Application) -> None:
    """Give `app` the console's state (its routes are in `alertd.app`; its headers are set by
    the request middleware, which `alertd.app` hands `headers`)."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: nothing monitored goes out raw
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(ago=fmt.ago, span=fmt.span, when=fmt.when)
    app[CONSOLE] = Console(templates)


def headers(request: web.Request, response: web.StreamResponse) -> None:
    """The console's headers on every answer under /ui (pages, files, errors, redirects).

    Called by the request middleware, not from aiohttp's `on_response_prepare`: a signal costs
    every answer a few coroutines, the ingest ones included, for a check that is nearly always
    false."""
    if request.path.startswith("/ui"):
        response.headers.update(SECURITY_HEADERS)
        if not request.path.startswith("/ui/static/"):
            response.headers["Cache-Control"] = "no-store"  # pages show incident data


@dataclass(frozen=True, slots=True)
class Viewer:
    session: Session
    can_act: bool  # a token that may operate, and the console not read-only
    fresh: bool  # the session was just made: its cookie goes with this answer


def viewer(request: web.Request) -> Viewer:
    """Who is looking; redirects to the sign-in page when tokens are configured and the
    request carries no valid session. 404 when the console is switched off."""
    live, now = request.app[LIVE], request.app[CLOCK].now()
    if not live.config.ui.enabled:
        raise web.HTTPNotFound()
    sessions = request.app[CONSOLE].sessions
    session = sessions.find(request.cookies.get(COOKIE), live, now)
    fresh = False
    if session is None:
        if not live.auth_disabled:
            target = request.path_qs if request.method == "GET" else "/ui/"
            raise web.HTTPSeeOther(f"/ui/login?{_next(target)}")
        session, fresh = sessions.open(None, now), True
    can_act = not live.config.ui.read_only and token_allows(live, session.token, "operate")
    return Viewer(session, can_act, fresh)


def _next(target: str) -> str:
    return urlencode({"next": target})


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE, session.id, path="/ui/", httponly=True, samesite="Strict",
        secure=request.secure, max_age=int(LIFETIME.total_seconds()),
    )  # fmt: skip


def render(
    request: web.Request,
    who: Viewer | None,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    live = request.app[LIVE]
    page = request.app[CONSOLE].templates.get_template(template).render(
        **context,
        viewer=who,
        csrf=who.session.csrf if who else "",
        signed_in=bool(who and who.session.token),
        read_only=live.config.ui.read_only,
        refresh=int(live.config.ui.refresh.total_seconds()),
        path=request.path,
    )
    response = web.Response(text=page, content_type="text/html", status=status)
    if who is not None and who.fresh:
        set_cookie(request, response, who.session)
    return response


def same_origin(request: web.Request) -> None:
    """Refuse a POST that another site's page made (SameSite=Strict is the first fence; this
    checks the Origin the browser states, or its Referer when Origin is absent)."""
    stated = request.headers.get("Origin") or request.headers.get("Referer") or ""
    if urlsplit(stated).netloc != request.host:
        raise CrossOrigin()


class CrossOrigin(InputError):
    """A POST from another origin (or one that did not say where it came from)."""

    http_status = 403

    def __init__(self) -> None:
        super().__init__("cross-origin request refused")


async def actor(request: web.Request) -> tuple[Viewer, Mapping[str, str]]:
    """For an action: the viewer, refused unless allowed to act, and the checked form."""
    who = viewer(request)
    same_origin(request)
    if request.app[LIVE].config.ui.read_only:
        raise Forbidden("this console is read-only ([ui] read_only = true)")
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_ok(who.session, fields.get("csrf", "")):
        raise Forbidden("the form is stale or not ours (CSRF token mismatch): reload the page")
    if not who.can_act:
        raise Forbidden("this token may not act")
    return who, fields


class Forbidden(InputError):
    http_status = 403


Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Page) -> Page:
    """A console route: its errors become an HTML page, not the API's JSON."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AlertdError as exc:
            status = exc.http_status
            details = [
                f"{d.field}: {d.message}" if d.field else d.message
                for d in (exc.details if isinstance(exc, InputError) else [])
            ]
            context = {"status": status, "message": exc.public_message(), "details": details}
            return render(request, None, "error.html", context, status=status)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def now_of(request: web.Request) -> datetime:
    return request.app[CLOCK].now()


def results_total(request: web.Request) -> float:
    """Results accepted so far (all sources), read from the metrics registry."""
    registry = request.app[METRICS].registry
    total = 0.0
    # A restricted registry collects only this family, not the per-scrape incident gauges.
    for family in registry.restricted_registry(["alertd_results_received_total"]).collect():
        total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total
