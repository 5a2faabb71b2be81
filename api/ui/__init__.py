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

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from api.problems import problem_response

UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"
SHELL = STATIC_DIR / "index.html"
# The browser-ready build of each pinned npm package (see package.json).
VENDOR = {
    "uplot": UI_DIR / "node_modules" / "uplot" / "dist",
    "yaml": UI_DIR / "node_modules" / "yaml" / "browser" / "dist",
    "swagger-ui": UI_DIR / "node_modules" / "swagger-ui-dist",
}
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
    "/ui/sweeps/{sweep_id}",
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def redirect_to_dashboard() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def app_shell() -> Response:
    if not SHELL.is_file():  # an install without the dashboard's files (e.g. a wheel)
        return problem_response(404, "Not found", "The dashboard's files are not installed.")
    return FileResponse(SHELL, media_type="text/html", headers=SHELL_HEADERS)


for _path in SHELL_PATHS:
    router.add_api_route(_path, app_shell, methods=["GET"], include_in_schema=False)


@router.get("/docs")
def api_docs() -> HTMLResponse:
    """Swagger UI for the OpenAPI document (its Authorize button takes an API key)."""
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
    target = (root / file_path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        detail = (
            f"{package}/{file_path} is not installed: run `make install` (npm ci in api/ui)."
            if not root.is_dir()
            else f"No file {file_path!r} in {package}."
        )
        return problem_response(404, "Not found", detail)
    return FileResponse(target, headers={"Cache-Control": "no-cache"})


def mount_dashboard(app: FastAPI) -> None:
    """`/` redirects to `/ui/`; the shell, the app's modules and the vendored libraries."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="ui-static")
