"""The web dashboard: static files served under /ui/, no server-side rendering of user data.

Every page is the same app shell (``static/index.html``); its ES modules route on the
client and read the same ``/v1`` JSON as any other client, with the API key the user
typed (kept in the tab's ``sessionStorage``). The charting and YAML libraries are npm
packages pinned by ``api/ui/package-lock.json`` and installed by the Makefile
(``npm ci``) into ``api/ui/node_modules``, from where they are served under
``/ui/vendor/``: nothing is loaded from a CDN. The same goes for ``/docs``: FastAPI's
Swagger UI page would load its script and style from jsDelivr, so it is served here
with the pinned ``swagger-ui-dist`` instead (and ``/redoc``, a CDN-only page, is off).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from api.problems import problem_response
from api.ui.bundle import BUILT, FIX, PACKAGES

log = logging.getLogger("trainforge.ui")
UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"
SHELL = STATIC_DIR / "index.html"


def vendor_root(served: str) -> Path:
    """Where a pinned npm package's browser build (or a bundle of them) is: ``vendor/`` in
    a built wheel (copied by server/setup.py), else ``node_modules/`` or the bundle's
    ``dist/`` folder (``make ui``) in a checkout."""
    shipped = UI_DIR / "vendor" / served
    if shipped.is_dir():
        return shipped
    if served in BUILT:
        return UI_DIR / BUILT[served][0]
    npm, folder, _ = PACKAGES[served]
    return UI_DIR / "node_modules" / npm / folder


VENDOR = {served: vendor_root(served) for served in (*PACKAGES, *BUILT)}


def missing_vendor() -> list[str]:
    return [served for served, root in VENDOR.items() if not root.is_dir()]


MISSING_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Trainforge: dashboard not installed</title></head>
<body style="font-family: sans-serif; max-width: 46em; margin: 3em auto">
<h1>The dashboard's front-end files are not installed</h1>
<p>This server has no {missing} (the pinned libraries the dashboard runs on): {fix}.
Then reload this page. The API itself works: <code>/v1</code>, and <code>/openapi.json</code>.</p>
</body></html>"""


def missing_page() -> HTMLResponse:
    missing = ", ".join(missing_vendor())
    body = MISSING_PAGE.format(missing=html.escape(missing), fix=html.escape(FIX))
    return HTMLResponse(body, status_code=503, headers={"Cache-Control": "no-cache"})


# Scripts and styles only from this origin; the page talks to this API alone.
CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SHELL_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Client-side routes: each serves the shell, which reads its path.
SHELL_PATHS = (
    "/ui",
    "/ui/",
    "/ui/jobs/{job_id}",
    "/ui/compare",
    "/ui/new",
    "/ui/datasets",
    "/ui/sweeps",
    "/ui/sweeps/{sweep_id}",
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def redirect_to_dashboard() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def app_shell() -> Response:
    if not SHELL.is_file():  # an install without the dashboard's files (e.g. a wheel)
        return problem_response(404, "Not found", "The dashboard's files are not installed.")
    if missing_vendor():  # a checkout without `make ui`: a page that says so, not a blank one
        return missing_page()
    return FileResponse(SHELL, media_type="text/html", headers=SHELL_HEADERS)


for _path in SHELL_PATHS:
    router.add_api_route(_path, app_shell, methods=["GET"], include_in_schema=False)


@router.get("/docs")
def api_docs() -> HTMLResponse:
    """Swagger UI for the OpenAPI document (its Authorize button takes an API key)."""
    if "swagger-ui" in missing_vendor():
        return missing_page()
    vendor = "/ui/vendor/swagger-ui"
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Trainforge API",
        swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
        swagger_css_url=f"{vendor}/swagger-ui.css",
        swagger_favicon_url=f"{vendor}/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": False},
    )


@router.get("/ui/vendor/{package}/{file_path:path}")
def vendor_file(package: str, file_path: str) -> Response:
    """A file of a pinned npm package's browser build (``make install`` put it there)."""
    root = VENDOR.get(package)
    if root is None:
        return problem_response(404, "Not found", f"No front-end package {package!r}.")
    root = root.resolve()  # node_modules may be a link (a worktree sharing a checkout's)
    target = (root / file_path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        detail = (
            f"{package}/{file_path} is not installed: {FIX}."
            if not root.is_dir()
            else f"No file {file_path!r} in {package}."
        )
        return problem_response(404, "Not found", detail)
    return FileResponse(target, headers={"Cache-Control": "no-cache"})


def mount_dashboard(app: FastAPI) -> None:
    """`/` redirects to `/ui/`; the shell, the app's modules and the vendored libraries."""
    missing = missing_vendor()
    if missing:
        log.warning(
            "dashboard: %s not installed, /ui/ and /docs say so: %s", ", ".join(missing), FIX
        )
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="ui-static")
