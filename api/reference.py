"""The API reference page (``/docs``), rendered on the server from the OpenAPI document.

- Complete as sent: plain HTML and ``docs.css``, readable with JavaScript off, no CDN,
  nothing inline, so the app's Content-Security-Policy holds as it is.
- Descriptions are markdown (docstrings use backticks, lists and paragraphs) and go
  through markdown-it-py with raw HTML off: a description renders, it cannot inject.
- ``$ref``s are resolved for display: a body's fields are listed with the operation,
  and a named schema links to its entry in the Schemas section at the end.
- The roles an operation allows come from the ``x-roles`` extension ``api.auth.require``
  adds next to ``security``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

METHODS = ("get", "post", "put", "patch", "delete")
LOCATIONS = {"path": "Path parameters", "query": "Query parameters", "header": "Headers"}
_REF = "#/components/"

_md = MarkdownIt("commonmark", {"html": False})


def markdown(text: str | None) -> Markup:
    """Block markdown (paragraphs, lists, code) as HTML; raw HTML in it is escaped."""
    return Markup(_md.render(text)) if text else Markup("")  # noqa: S704 - html=False


def markdown_inline(text: str | None) -> Markup:
    """One line of markdown (``code``, *emphasis*) without a wrapping paragraph."""
    return Markup(_md.renderInline(text)) if text else Markup("")  # noqa: S704 - html=False


def schema_anchor(name: str) -> str:
    return f"schema-{name}"


@dataclass
class Field:
    name: str
    type: Markup
    required: bool
    description: Markup
    constraints: list[Markup]


@dataclass
class Body:
    media_types: list[str]
    type: Markup
    fields: list[Field]
    required: bool = False


@dataclass
class Response:
    status: str
    reason: str
    description: Markup
    body: Body | None
    headers: list[Field]

    @property
    def kind(self) -> str:
        """``ok``, ``redirect``, ``error`` or ``default``: the badge's colour."""
        first = self.status[:1]
        return {"2": "ok", "3": "redirect", "4": "error", "5": "error"}.get(first, "default")


@dataclass
class Operation:
    method: str
    path: str
    anchor: str
    summary: Markup
    description: Markup
    tags: list[str]
    public: bool
    roles: list[str]
    parameters: dict[str, list[Field]]
    body: Body | None
    responses: list[Response]


@dataclass
class Tag:
    name: str
    description: Markup
    operations: list[Operation] = field(default_factory=list)


@dataclass
class Schema:
    name: str
    type: Markup
    description: Markup
    fields: list[Field]

    @property
    def anchor(self) -> str:
        return schema_anchor(self.name)


@dataclass
class Reference:
    title: str
    version: str
    description: Markup
    tags: list[Tag]
    schemas: list[Schema]

    @property
    def operations(self) -> list[Operation]:
        return [op for tag in self.tags for op in tag.operations]


class _Spec:
    """Resolves ``#/components/...`` references of one OpenAPI document."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.components: Mapping[str, Any] = spec.get("components") or {}

    def resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        """A ``$ref``'d object (responses, parameters) replaced by its target."""
        ref = node.get("$ref")
        if not ref or not ref.startswith(_REF):
            return node
        kind, name = ref[len(_REF) :].split("/", 1)
        return self.resolve(self.components.get(kind, {}).get(name, {}))

    def type_of(self, schema: Mapping[str, Any] | None) -> Markup:
        """A schema's type in a few words, a named schema as a link to its entry."""
        if not schema:
            return Markup("any")
        ref = schema.get("$ref")
        if ref and ref.startswith(_REF + "schemas/"):
            name = ref.rsplit("/", 1)[1]
            text = Markup('<a href="#{}"><code>{}</code></a>').format(schema_anchor(name), name)
        elif any(key in schema for key in ("anyOf", "oneOf", "allOf")):
            key = next(key for key in ("anyOf", "oneOf", "allOf") if key in schema)
            joiner = Markup(" and ") if key == "allOf" else Markup(" or ")
            text = joiner.join(self.type_of(part) for part in schema[key])
        elif schema.get("type") == "array":
            text = Markup("array of ") + self.type_of(schema.get("items"))
        elif schema.get("type") == "object" and isinstance(
            schema.get("additionalProperties"), dict
        ):
            extra = schema["additionalProperties"]
            text = Markup("object") if not extra else Markup("map of ") + self.type_of(extra)
        else:
            text = escape(schema.get("type") or "object")
            if schema.get("format"):
                text += Markup(" <small>({})</small>").format(schema["format"])
        if schema.get("nullable"):
            text += Markup(" or null")
        return text

    def fields(self, schema: Mapping[str, Any] | None) -> list[Field]:
        """The properties of an object schema (following a ``$ref``), in document order."""
        schema = self.schema(schema)
        required = set(schema.get("required") or ())
        return [
            self.field(name, prop, name in required)
            for name, prop in (schema.get("properties") or {}).items()
        ]

    def schema(self, schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
        while schema and "$ref" in schema:
            schema = self.components.get("schemas", {}).get(schema["$ref"].rsplit("/", 1)[1])
        return schema or {}

    def field(self, name: str, schema: Mapping[str, Any], required: bool) -> Field:
        return Field(
            name,
            self.type_of(schema),
            required,
            markdown_inline(schema.get("description")),
            constraints(schema),
        )

    def body(self, content: Mapping[str, Any] | None, *, required: bool = False) -> Body | None:
        if not content:
            return None
        media = list(content)
        schema = next((c.get("schema") for c in content.values() if c.get("schema")), None)
        return Body(media, self.type_of(schema), self.fields(schema), required)


def constraints(schema: Mapping[str, Any]) -> list[Markup]:
    """What a value must be beyond its type: lengths, bounds, a pattern, allowed values."""
    out: list[Markup] = []

    def code(value: Any) -> Markup:
        shown = "null" if value is None else str(value).lower() if value in (True, False) else value
        return Markup("<code>{}</code>").format(shown)

    def span(low: Any, high: Any, unit: str) -> None:
        if low is not None and high is not None:
            out.append(Markup("{} to {} {}").format(low, high, unit))
        elif low is not None:
            out.append(Markup("at least {} {}").format(low, unit))
        elif high is not None:
            out.append(Markup("at most {} {}").format(high, unit))

    span(schema.get("minLength"), schema.get("maxLength"), "characters")
    span(schema.get("minItems"), schema.get("maxItems"), "items")
    span(schema.get("minimum"), schema.get("maximum"), "")
    if schema.get("enum"):
        out.append(Markup("one of ") + Markup(", ").join(code(v) for v in schema["enum"]))
    if schema.get("pattern"):
        out.append(Markup("matches ") + code(schema["pattern"]))
    if "default" in schema:
        out.append(Markup("default ") + code(schema["default"]))
    if "example" in schema:
        out.append(Markup("e.g. ") + code(schema["example"]))
    if schema.get("readOnly"):
        out.append(Markup("read-only"))
    return [Markup(str(item).strip()) for item in out]  # noqa: S704 - built from Markup


def _reason(status: str) -> str:
    if status == "default":
        return "any other status"
    try:
        return HTTPStatus(int(status)).phrase
    except ValueError:
        return ""


def _status_order(status: str) -> tuple[int, int]:
    """Successes first, then the rest by code, ``default`` last."""
    if not status.isdigit():
        return (2, 0)
    return (0 if status.startswith(("2", "3")) else 1, int(status))


def _anchor(method: str, path: str) -> str:
    return f"{method}-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _operation(spec: _Spec, method: str, path: str, item: Mapping[str, Any]) -> Operation:
    op = item[method]
    parameters: dict[str, list[Field]] = {where: [] for where in LOCATIONS}
    seen = set()
    # The operation's own parameters override the path item's of the same name and place.
    for raw in [*(op.get("parameters") or []), *(item.get("parameters") or [])]:
        param = spec.resolve(raw)
        key = (param.get("in"), param.get("name"))
        if key in seen or param.get("in") not in parameters:
            continue
        seen.add(key)
        schema = dict(param.get("schema") or {})
        if param.get("description"):
            schema["description"] = param["description"]
        parameters[param["in"]].append(
            spec.field(param["name"], schema, bool(param.get("required")))
        )
    body = None
    if op.get("requestBody"):
        request = spec.resolve(op["requestBody"])
        body = spec.body(request.get("content"), required=bool(request.get("required")))
    responses = []
    for status, raw in sorted(op.get("responses", {}).items(), key=lambda kv: _status_order(kv[0])):
        answer = spec.resolve(raw)
        headers = [
            spec.field(
                name, {**(h.get("schema") or {}), "description": h.get("description")}, False
            )
            for name, h in (answer.get("headers") or {}).items()
        ]
        responses.append(
            Response(
                status,
                _reason(status),
                markdown_inline(answer.get("description")),
                spec.body(answer.get("content")),
                headers,
            )
        )
    security = op.get("security", spec.spec.get("security")) or []
    return Operation(
        method=method,
        path=path,
        anchor=_anchor(method, path),
        summary=markdown_inline(op.get("summary")),
        description=markdown(op.get("description")),
        tags=list(op.get("tags") or ["other"]),
        public=not any(security),
        roles=list(op.get("x-roles") or []),
        parameters={where: rows for where, rows in parameters.items() if rows},
        body=body,
        responses=responses,
    )


def _paths(spec: Mapping[str, Any]) -> Iterable[tuple[str, str, Mapping[str, Any]]]:
    for path, item in (spec.get("paths") or {}).items():
        for method in METHODS:
            if method in item:
                yield method, path, item


def build(document: Mapping[str, Any]) -> Reference:
    """The page's content from an OpenAPI 3 document (a dict, as ``/openapi.json``)."""
    spec = _Spec(document)
    tags = {
        t["name"]: Tag(t["name"], markdown_inline(t.get("description")))
        for t in document.get("tags") or []
    }
    for method, path, item in _paths(document):
        op = _operation(spec, method, path, item)
        for name in op.tags[:1]:  # each operation once, under its first tag
            tags.setdefault(name, Tag(name, Markup(""))).operations.append(op)
    schemas = [
        Schema(
            name,
            spec.type_of(schema),
            markdown_inline(schema.get("description")),
            spec.fields(schema),
        )
        for name, schema in (spec.components.get("schemas") or {}).items()
    ]
    info = document.get("info") or {}
    return Reference(
        title=str(info.get("title", "API")),
        version=str(info.get("version", "")),
        description=markdown(info.get("description")),
        tags=[tag for tag in tags.values() if tag.operations],
        schemas=schemas,
    )
