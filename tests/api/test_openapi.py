"""The OpenAPI document lists every route the app serves, and the docs page renders it."""

from __future__ import annotations

import re


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
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)  # converters unnamed
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


def _operation(html: str, anchor: str) -> str:
    start = html.index(f'<article class="op" id="{anchor}"')
    return html[start : html.index("</article>", start)]


def _response(op: str, anchor: str, status: int) -> str:
    start = op.index(f'id="{anchor}-{status}"')
    return op[start : op.index("</li>", start)]


def test_the_docs_page_shows_a_purchases_header_bodies_statuses_roles_and_prose(client):
    html = client.get("/docs").get_data(as_text=True)
    op = _operation(html, "post-v1-purchases")
    headers = op[op.index("<h4>Headers</h4>") : op.index("<h4>Request body")]
    assert "<code>Idempotency-Key</code>" in headers and "required" in headers
    assert "1 to 255 characters" in headers
    body = op[op.index("<h4>Request body") : op.index("<h4>Responses</h4>")]
    for name in ("content_id", "amount", "currency", "buyer", "share_code"):
        assert f"<code>{name}</code>" in body, name
    assert 'href="#schema-BuyerIn"' in body and "integer amount in minor units" in body
    created = _response(op, "post-v1-purchases", 201)
    for name in ("id", "artist_share", "fee", "plan_version", "rewards", "created_at"):
        assert f"<code>{name}</code>" in created, name
    assert "<code>Idempotent-Replayed</code>" in created
    for status in (400, 401, 403, 409, 413, 415, 422, 429):
        problem = _response(op, "post-v1-purchases", status)
        assert 'href="#schema-Problem"' in problem, status
    assert "Idempotency-Key was used with another body" in op
    assert 'Roles: <span class="role">storefront</span>' in op
    # the docstring's markdown: backticks become code, the list a list, no raw markdown
    assert "<p><code>share_code</code> names the link the buyer came through" in op
    assert re.search(r"<ul>\s*<li>the rewards, at the rates of the plan in force", op)
    assert "`" not in op
    # and a rate limit's description names its setting as code
    assert "(<code>RATELIMIT_SALES</code>)" in _response(op, "post-v1-purchases", 429)


def test_the_docs_page_shows_path_parameters_the_webhook_signature_and_public_operations(
    client,
):
    html = client.get("/docs").get_data(as_text=True)
    refunds = _operation(html, "post-v1-purchases-purchase-id-refunds")
    assert "<h4>Path parameters</h4>" in refunds and "<code>purchase_id</code>" in refunds
    assert "<code>Idempotency-Key</code>" in refunds
    hook = _operation(html, "post-v1-webhooks-stripe")
    assert "<code>Stripe-Signature</code>" in hook and "no API key" in hook
    assert 'href="#schema-StripeEvent"' in hook
    rewards = _operation(html, "get-v1-fans-fan-id-rewards")
    query = rewards[rewards.index("<h4>Query parameters</h4>") :]
    assert "<code>limit</code>" in query and "<code>cursor</code>" in query
    signup = _operation(html, "post-v1-fans")
    assert "no API key" in signup and "<code>ref</code> names the sponsor" in signup
    # every named schema has its entry, so every link on the page lands somewhere
    anchors = set(re.findall(r'\sid="([^"]+)"', html))
    assert set(re.findall(r'href="#([^"]+)"', html)) <= anchors


def test_markdown_in_a_description_renders_but_raw_html_in_it_is_escaped():
    from api import reference

    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1", "description": "Hi <script>x()</script>"},
        "paths": {
            "/v1/things/{id}": {
                "parameters": [{"in": "path", "name": "id", "required": True}],
                "get": {
                    "summary": "A *thing* with `id`",
                    "description": "One.\n\n- two\n- <img src=x onerror=alert(1)>",
                    "responses": {"200": {"$ref": "#/components/responses/OK"}},
                },
            }
        },
        "components": {
            "responses": {
                "OK": {
                    "description": "fine",
                    "content": {"application/json": {"schema": {"type": "string"}}},
                }
            }
        },
    }
    ref = reference.build(doc)
    (op,) = ref.operations
    assert op.summary == "A <em>thing</em> with <code>id</code>"
    assert "<li>two</li>" in op.description and "<img" not in op.description
    assert "&lt;img src=x onerror=alert(1)&gt;" in op.description
    assert "<script>" not in ref.description
    assert [f.name for f in op.parameters["path"]] == ["id"]
    assert (op.responses[0].status, op.responses[0].description) == ("200", "fine")
    assert op.public and op.tags == ["other"]
