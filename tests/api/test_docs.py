"""/docs and /redoc load nothing from a CDN (issue 15).

They run on the dashboard's origin, where the browser keeps the API key: a script from
cdn.jsdelivr.net there could read it. The pages must name only this origin's assets, and
those assets must be served.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

_SRC = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def test_docs_pages_load_only_their_own_assets(anon_client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = anon_client.get(page)
        assert response.status_code == 200, page
        urls = _SRC.findall(response.text)
        assert urls, page
        for url in urls:
            assert url.startswith("/"), (page, url)
            assert not url.startswith("//"), (page, url)
            asset = anon_client.get(url)
            assert asset.status_code == 200, (page, url)
            assert len(asset.content) > 0
        assert "https://" not in response.text.split("<body", 1)[0], page
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "https:" not in csp


def test_swagger_ui_is_version_5_for_openapi_3_1(anon_client: TestClient) -> None:
    """FastAPI's schema is OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    assert anon_client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = anon_client.get("/docs/assets/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', bundle)
    assert anon_client.get("/docs/oauth2-redirect").status_code == 200
