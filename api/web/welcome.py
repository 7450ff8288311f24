"""The site's front door: ``/`` says what this is and where to go (sign in, the guide,
the API reference), and ``/guide/<page>`` serves the project's own ``docs/`` as pages, so
a newcomer reads them in the running engine rather than hunting for files.

The guide is rendered from the markdown files in ``docs/`` next to the packages (a
checkout or an editable install); links between them (``payouts.md``) become links
between guide pages. Raw HTML in them is escaped, as in the API reference."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from flask import render_template
from markdown_it import MarkdownIt
from markupsafe import Markup

from api.web.join import public
from royalties.errors import NotFound

DOCS = Path(__file__).resolve().parents[2] / "docs"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_LINK = re.compile(r'href="([a-z][a-z0-9-]{0,40})\.md(#[^"]*)?"')
_TITLE = re.compile(r"^#\s+(.+)$", re.M)
_md = MarkdownIt("commonmark", {"html": False}).enable("table")  # the docs have tables


@cache
def guide_pages() -> tuple[tuple[str, str], ...]:
    """(name, title) of every page of the guide, in file-name order."""
    if not DOCS.is_dir():
        return ()
    pages = []
    for path in sorted(DOCS.glob("*.md")):
        if _NAME.match(path.stem):
            found = _TITLE.search(path.read_text(encoding="utf-8"))
            pages.append((path.stem, found.group(1).strip() if found else path.stem))
    return tuple(pages)


@cache
def _rendered(name: str) -> Markup:
    html = _md.render((DOCS / f"{name}.md").read_text(encoding="utf-8"))
    html = _LINK.sub(lambda m: f'href="/guide/{m.group(1)}{m.group(2) or ""}"', html)
    html = html.replace("<table>", '<div class="table-wrap"><table>').replace(
        "</table>", "</table></div>"
    )
    return Markup(html)  # noqa: S704 - markdown with raw HTML off: escaped


@public.get("/")
def welcome() -> Any:
    return render_template("web/welcome.html", pages=guide_pages())


@public.get("/guide/")
def guide_index() -> Any:
    return render_template("web/welcome.html", pages=guide_pages(), only_guide=True)


@public.get("/guide/<path:name>")  # any path: an unknown one gets the human 404
def guide(name: str) -> Any:
    titles = dict(guide_pages())
    if name not in titles:
        raise NotFound(f"The guide has no page called {name!r}.")
    return render_template(
        "web/guide.html", title=titles[name], body=_rendered(name), pages=guide_pages(), name=name
    )
