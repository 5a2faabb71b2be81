"""The dashboard's files as the API serves them: `/` → /ui/, the app shell on every
client-side route (no user data in it), the pinned libraries from api/ui/node_modules,
nothing outside them; and the Bearer scheme that gives /docs its Authorize button."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.problems import PROBLEM_JSON
from api.ui import VENDOR

SHELL_ROUTES = ["/ui/", "/ui", "/ui/jobs/abc", "/ui/compare?jobs=a,b", "/ui/new", "/ui/datasets"]


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"


@pytest.mark.parametrize("path", SHELL_ROUTES)
def test_every_client_route_is_the_same_shell_with_a_strict_csp(
    client: TestClient, path: str
) -> None:
    client.headers.pop("Authorization")  # the shell needs no key: it holds no user data
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/static/js/main.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "http" not in r.text.replace("http-equiv", "")  # nothing from another origin


def test_modules_and_pinned_libraries_are_served(client: TestClient) -> None:
    if not VENDOR["uplot"].is_dir():
        pytest.skip("api/ui/node_modules is not installed (`make ui`)")
    served = ["/ui/static/js/main.js", "/ui/vendor/uplot/uPlot.esm.js", "/ui/vendor/yaml/index.js",
              "/ui/vendor/codemirror/codemirror.js"]  # fmt: skip
    for path in served:
        r = client.get(path)
        assert r.status_code == 200, path
        assert "javascript" in r.headers["content-type"], path


@pytest.mark.parametrize(
    "path",
    [
        "/ui/vendor/yaml/../../package.json",
        "/ui/vendor/yaml/%2e%2e/%2e%2e/package.json",
        "/ui/vendor/yaml/..%2f..%2fpackage.json",
        "/ui/vendor/left-pad/index.js",
        "/ui/static/../__init__.py",
        "/ui/static/nope.js",
    ],
)
def test_nothing_outside_the_served_folders(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, (path, r.text[:200])
    assert r.headers["content-type"].startswith(PROBLEM_JSON)


def test_openapi_declares_the_bearer_scheme_and_a_missing_key_stays_a_problem(
    client: TestClient,
) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <api key>`",
    }
    assert doc["paths"]["/v1/jobs"]["get"]["security"] == [{"ApiKey": []}]
    assert not any(p == "/" or p.startswith("/ui") for p in doc["paths"])
    client.headers.pop("Authorization")
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        r = client.get("/v1/jobs", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM_JSON)
        assert r.headers["www-authenticate"] == "Bearer"


def test_api_docs_load_swagger_ui_from_this_server(client: TestClient) -> None:
    """/docs works offline: Swagger UI's script and style come from the pinned package."""
    if not VENDOR["swagger-ui"].is_dir():
        pytest.skip("api/ui/node_modules is not installed (`make ui`)")
    client.headers.pop("Authorization")
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "cdn." not in page.text and "https://" not in page.text, page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert f'"/ui/vendor/swagger-ui/{asset}"' in page.text, asset
        assert client.get(f"/ui/vendor/swagger-ui/{asset}").status_code == 200, asset
    assert client.get("/redoc").status_code == 404  # a CDN-only page: off
