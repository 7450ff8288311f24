"""The front door: ``/`` says what this is and links to sign-in, the guide and the API
reference; ``/guide/<page>`` serves the project's own docs/ as pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_root_is_a_page_that_says_what_this_is_and_where_to_go(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "royalty and referral reward engine" in page
    for href in ('href="/dashboard/login"', 'href="/docs"', 'href="/openapi.json"'):
        assert href in page
    listed = re.findall(r'href="/guide/([a-z-]+)"', page)
    assert sorted(listed) == sorted(p.stem for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("name", sorted(p.stem for p in DOCS.glob("*.md")))
def test_every_doc_is_a_guide_page_with_its_links_kept_inside_the_guide(client, name):
    response = client.get(f"/guide/{name}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    title = re.search(r"^#\s+(.+)$", (DOCS / f"{name}.md").read_text(), re.M).group(1)
    assert f"<h1>{title.replace('&', '&amp;')}</h1>" in page.replace("&#x27;", "'")
    assert not re.search(r'href="[a-z-]+\.md', page)  # a link between docs points at a page


def test_the_guide_renders_tables_in_a_box_that_scrolls_on_a_phone(client):
    page = client.get("/guide/architecture").get_data(as_text=True)
    assert '<div class="table-wrap"><table>' in page


@pytest.mark.parametrize("path", ["/guide/nope", "/guide/..%2Fpyproject", "/guide/README"])
def test_an_unknown_guide_page_is_a_human_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "The guide has no page called" in response.get_data(as_text=True)
