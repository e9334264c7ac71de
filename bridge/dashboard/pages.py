"""The page itself: index.html at /, and its script and style sheet, all shipped in the package."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

routes = web.RouteTableDef()

STATIC = Path(__file__).parent / "static"
STATIC_PREFIX = "/dashboard/static/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Nothing but this origin: no CDN, no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _asset(name: str) -> web.FileResponse:
    path = STATIC / name
    # Only files that ship in static/ itself: no subdirectories, no "..".
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path,
        headers={
            "Content-Type": _TYPES[path.suffix],
            "Cache-Control": "no-cache",
            **SECURITY_HEADERS,
        },
    )


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return _asset("index.html")


@routes.get(STATIC_PREFIX + "{name}")
async def asset(request: web.Request) -> web.FileResponse:
    return _asset(request.match_info["name"])
