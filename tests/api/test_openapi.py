"""The OpenAPI document lists every route the app serves, and the docs page renders it."""

from __future__ import annotations


def test_openapi_lists_every_v1_route(app, client):
    spec = client.get("/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method))
    assert served and served <= documented
    assert "bearerAuth" in spec["components"]["securitySchemes"]


def test_every_operation_has_a_summary_and_problem_errors(client):
    spec = client.get("/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op.get("summary"), f"{method} {path} has no summary"
    assert "type" in spec["components"]["schemas"]["Problem"]["properties"]


def test_the_docs_page_renders_every_path(client):
    spec = client.get("/openapi.json").get_json()
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for path in spec["paths"]:
        assert path in html
