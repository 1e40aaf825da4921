"""The console's routes: one Jinja2 shell per page and the static files beside it.

Every answer carries a strict Content-Security-Policy (no inline script or style, nothing
from another origin but the OpenID issuer the sign-in talks to), ``Referrer-Policy:
no-referrer`` and ``X-Content-Type-Options: nosniff``; framing is refused. Nothing here
reads the database or a credential: the scripts call ``/v1`` with the signed-in key.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

import falcon
import jinja2

from flowker import __version__
from flowker.errors import NotFound

CONSOLE_PREFIX = "/ui"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# (route template, page name, title): the shell each client-side route starts from.
PAGES = (
    (CONSOLE_PREFIX, "workflows", "Workflows"),
    (CONSOLE_PREFIX + "/workflows/{item_id}", "workflow", "Workflow"),
    (CONSOLE_PREFIX + "/executions", "executions", "Executions"),
    (CONSOLE_PREFIX + "/executions/{item_id}", "execution", "Execution"),
    (CONSOLE_PREFIX + "/audit", "audit", "Audit"),
    (CONSOLE_PREFIX + "/executors", "executors", "Executors"),
    (CONSOLE_PREFIX + "/signin-callback", "callback", "Signing in"),
)
STATIC_ROUTE = CONSOLE_PREFIX + "/static/{name}"


def security_headers(settings) -> dict[str, str]:
    """The headers of every console answer; ``connect-src`` adds the OpenID issuer's
    origin only when the console signs people in with it."""
    connect = "'self'"
    if settings.oidc_issuer and settings.ui_oidc_client_id:
        parts = urlsplit(settings.oidc_issuer)
        connect += f" {parts.scheme}://{parts.netloc}"
    policy = "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def _package_dir(name: str):
    return resources.files("flowker.console").joinpath(name)


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` (flat): name -> (content, content type), read once."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in _package_dir("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


class Page:
    """One page's HTML shell; the scripts draw the rest from ``/v1``."""

    uses_database = False

    def __init__(self, template: jinja2.Template, page: str, title: str, settings, headers: dict[str, str]):
        self.template = template
        self.page = page
        self.title = title
        self.headers = headers
        self.oidc_issuer = (settings.oidc_issuer or "") if settings.ui_oidc_client_id else ""
        self.oidc_client_id = settings.ui_oidc_client_id or ""

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str = "") -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.set_headers(self.headers)
        resp.set_header("Cache-Control", "no-store")
        resp.text = self.template.render(
            page=self.page,
            title=self.title,
            item_id=item_id,
            oidc_issuer=self.oidc_issuer,
            oidc_client_id=self.oidc_client_id,
            version=__version__,
        )


class StaticFile:
    """``/ui/static/{name}``: only the files the package ships; anything else is 404."""

    uses_database = False

    def __init__(self, files: dict[str, tuple[bytes, str]], headers: dict[str, str]):
        self.files = files
        self.headers = headers

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        found = self.files.get(name)
        if found is None:
            raise NotFound(f"no console file named {name[:100]!r}")
        resp.set_headers(self.headers)
        resp.set_header("Cache-Control", "no-cache")
        resp.data, resp.content_type = found


def console_routes(settings) -> list[tuple[str, object]]:
    """(route template, resource) for every console page and its static files."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_package_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    shell = environment.get_template("shell.html")
    headers = security_headers(settings)
    routes: list[tuple[str, object]] = [
        (template, Page(shell, page, title, settings, headers)) for template, page, title in PAGES
    ]
    routes.append((STATIC_ROUTE, StaticFile(load_static(), headers)))
    return routes


def public_console_routes() -> frozenset[tuple[str, str]]:
    """(route template, METHOD) of the console: public, outside the API's roles table."""
    return frozenset((template, "GET") for template in [t for t, _, _ in PAGES] + [STATIC_ROUTE])
