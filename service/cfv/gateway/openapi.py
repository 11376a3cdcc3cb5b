"""The API's description: an OpenAPI 3.1 document built from the app's own routes and the pydantic wire models
(``cfv_schemas``), served at ``GET /api/v1/openapi.json``, and a browsable page at ``GET /docs`` (Swagger UI,
its assets served from the ``swagger-ui-py`` package: no CDN, it works offline).

Every route of the app is described: its summary is its handler's docstring, its request body and answer the
models named in :data:`BODIES` and :data:`ANSWERS`. A test fails when a route is missing or undescribed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import swagger_ui
from aiohttp import web
from cfv_schemas import admin as admin_wire
from cfv_schemas import events as events_wire
from cfv_schemas import kantata as kantata_wire
from cfv_schemas import plane as plane_wire
from cfv_schemas import webhooks as webhooks_wire
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cfv.gateway import admin, events, health, kantata, kantata_choices, kantata_sets, kantata_values, plane, subjects
from cfv.gateway import webhooks as webhooks_api
from cfv.gateway.limits import OPENAPI_PATH

SPEC_PATH = OPENAPI_PATH
DOCS_PATH = "/docs"
_STATIC = Path(swagger_ui.__file__).parent / "static"
_REF = "#/components/schemas/{model}"

Handler = Callable[..., Any]
Schema = dict[str, Any]

#: The request body each handler reads.
BODIES: Mapping[Handler, type[BaseModel]] = {
    kantata.write_values: kantata_wire.WriteValuesIn,
    kantata_values.update_value: kantata_wire.ValueUpdateIn,
    kantata_values.update_values: kantata_wire.UpdateValuesIn,
    kantata.create_field: kantata_wire.CustomFieldCreate,
    kantata.update_field: kantata_wire.CustomFieldUpdate,
    kantata_choices.create_choice: kantata_wire.ChoiceCreate,
    kantata_choices.update_choice: kantata_wire.ChoiceUpdate,
    kantata_sets.create_set: kantata_wire.SetCreate,
    kantata_sets.update_set: kantata_wire.SetUpdate,
    subjects.register_subjects: kantata_wire.SubjectProjectsIn,
    admin.create_user: admin_wire.UserCreate,
    admin.update_user: admin_wire.UserUpdate,
    admin.put_membership: admin_wire.MembershipPut,
    admin.create_key: admin_wire.KeyCreate,
    admin.update_key: admin_wire.KeyUpdate,
    plane.create_project: plane_wire.ProjectIn,
    plane.update_project: plane_wire.ProjectPatch,
    plane.create_property: plane_wire.PropertyIn,
    plane.update_property: plane_wire.PropertyPatch,
    plane.create_option: plane_wire.OptionIn,
    plane.update_option: plane_wire.OptionPatch,
    plane.write_value: plane_wire.ValueIn,
    plane.update_value: plane_wire.ValueIn,
    webhooks_api.create_webhook: webhooks_wire.WebhookCreate,
    webhooks_api.update_webhook: webhooks_wire.WebhookUpdate,
}


def _listing(key: str, model: type[BaseModel]) -> Schema:
    """A Kantata answer: ``count``, ``meta``, ``results`` (which key holds each object) and the objects by id."""
    return {"type": "object", "required": ["count", "results", key], "properties": {
        "count": {"type": "integer"}, "meta": {"$ref": _REF.format(model="Meta")},
        "results": {"type": "array", "items": {"$ref": _REF.format(model="ResultRef")}},
        key: {"type": "object", "additionalProperties": {"$ref": _REF.format(model=model.__name__)}}}}


def _ref(model: type[BaseModel]) -> Schema:
    return {"$ref": _REF.format(model=model.__name__)}


def _list_of(model: type[BaseModel]) -> Schema:
    return {"type": "array", "items": _ref(model)}


_OBJECT: Schema = {"type": "object"}
_PROBE: Schema = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string"}, "checks": {"type": "object", "additionalProperties": {"type": "string"}}}}
_ACCEPTED: Schema = {"type": "object", "properties": {"operation": {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "status": {"const": "pending"}, "href": {"type": "string"}}}}}
_VALUES = _listing("custom_field_values", kantata_wire.CustomFieldValueOut)
_FIELDS = _listing("custom_fields", kantata_wire.CustomFieldOut)
_CHOICES = _listing("custom_field_choices", kantata_wire.CustomFieldChoiceOut)
_SETS = _listing("custom_field_sets", kantata_wire.CustomFieldSetOut)
_USERS = _listing("users", admin_wire.UserOut)
_KEYS = _listing("api_keys", admin_wire.KeyOut)
_MEMBERSHIPS = _listing("memberships", admin_wire.MembershipOut)
_WEBHOOKS = _listing(webhooks_api.WEBHOOKS, webhooks_wire.WebhookOut)
_DELIVERIES = _listing(webhooks_api.DELIVERIES, webhooks_wire.DeliveryOut)
_PLANE_PAGE = {"type": "object", "properties": {"count": {"type": "integer"}, "total_results": {"type": "integer"},
                                                "results": {"type": "array"}}}

#: What each handler answers when it succeeds: its status and body (None: no body).
ANSWERS: Mapping[Handler, tuple[int, Schema | None]] = {
    kantata_values.list_values: (200, _VALUES),
    kantata_values.value_history: (200, _VALUES),
    kantata_values.get_value: (200, _VALUES),
    kantata_values.update_value: (200, _VALUES),
    kantata_values.update_values: (200, _VALUES),
    kantata_values.delete_value: (204, None),
    kantata_values.delete_values: (204, None),
    kantata.write_values: (200, _VALUES),
    kantata.get_operation: (200, _ref(kantata_wire.OperationOut)),
    kantata.create_field: (201, _FIELDS),
    kantata.list_fields: (200, _FIELDS),
    kantata.get_field: (200, _FIELDS),
    kantata.update_field: (200, _FIELDS),
    kantata.delete_field: (204, None),
    kantata_choices.list_choices: (200, _CHOICES),
    kantata_choices.create_choice: (201, _CHOICES),
    kantata_choices.get_choice: (200, _CHOICES),
    kantata_choices.update_choice: (200, _CHOICES),
    kantata_choices.remove_choice: (204, None),
    kantata_sets.list_sets: (200, _SETS),
    kantata_sets.create_set: (201, _SETS),
    kantata_sets.get_set: (200, _SETS),
    kantata_sets.update_set: (200, _SETS),
    kantata_sets.delete_set: (204, None),
    subjects.register_subjects: (200, _OBJECT),
    admin.list_users: (200, _USERS),
    admin.create_user: (201, _USERS),
    admin.get_user: (200, _USERS),
    admin.update_user: (200, _USERS),
    admin.deactivate_user: (204, None),
    admin.list_memberships: (200, _MEMBERSHIPS),
    admin.put_membership: (200, _MEMBERSHIPS),
    admin.delete_membership: (204, None),
    admin.create_key: (201, _KEYS),
    admin.list_keys: (200, _KEYS),
    admin.get_key: (200, _KEYS),
    admin.update_key: (200, _KEYS),
    admin.revoke_key: (204, None),
    plane.create_project: (201, _ref(plane_wire.ProjectOut)),
    plane.list_projects: (200, _PLANE_PAGE),
    plane.get_project: (200, _ref(plane_wire.ProjectOut)),
    plane.update_project: (200, _ref(plane_wire.ProjectOut)),
    plane.delete_project: (204, None),
    plane.create_property: (201, _ref(plane_wire.PropertyOut)),
    plane.list_properties: (200, _list_of(plane_wire.PropertyOut)),
    plane.get_property: (200, _ref(plane_wire.PropertyOut)),
    plane.update_property: (200, _ref(plane_wire.PropertyOut)),
    plane.delete_property: (204, None),
    plane.create_option: (201, _ref(plane_wire.OptionOut)),
    plane.list_options: (200, _list_of(plane_wire.OptionOut)),
    plane.get_option: (200, _ref(plane_wire.OptionOut)),
    plane.update_option: (200, _ref(plane_wire.OptionOut)),
    plane.delete_option: (204, None),
    plane.write_value: (201, {"oneOf": [_ref(plane_wire.ValueOut), _list_of(plane_wire.ValueOut)]}),
    plane.update_value: (200, {"oneOf": [_ref(plane_wire.ValueOut), _list_of(plane_wire.ValueOut)]}),
    plane.delete_value: (204, None),
    plane.get_value: (200, {"oneOf": [_ref(plane_wire.ValueOut), _list_of(plane_wire.ValueOut)]}),
    plane.list_work_item_values: (200, _list_of(plane_wire.ValueOut)),
    health.livez: (200, _PROBE),
    health.readyz: (200, _PROBE),
    events.list_events: (200, _ref(events_wire.EventsPage)),
    webhooks_api.create_webhook: (201, _WEBHOOKS),
    webhooks_api.list_webhooks: (200, _WEBHOOKS),
    webhooks_api.get_webhook: (200, _WEBHOOKS),
    webhooks_api.update_webhook: (200, _WEBHOOKS),
    webhooks_api.delete_webhook: (204, None),
    webhooks_api.list_deliveries: (200, _DELIVERIES),
    webhooks_api.retry_delivery: (202, _DELIVERIES),
}

#: Query parameters (name: description) of the handlers that take some.
QUERIES: Mapping[Handler, Mapping[str, str]] = {
    kantata_values.list_values: {
        "subject_type": "required: the subjects' type", "with_subject_id": "comma-separated subject ids",
        "with_custom_field_id": "comma-separated field ids", "updated_after": "ISO 8601 time",
        "updated_before": "ISO 8601 time", "page": "page number (from 1)", "per_page": "20 by default, at most 200",
        "order": "updated_at|created_at|id, then :asc or :desc", "include": "custom_field,selected_choices,setter,"
        "subject", "as_of": "the meta.as_of of the first page, to read every page as of then"},
    kantata_values.value_history: {"subject_type": "required", "subject_id": "required",
                                   "custom_field_id": "required"},
    kantata_values.get_value: {"include": "custom_field,selected_choices,setter,subject"},
    kantata_values.delete_values: {"ids": "comma-separated value ids (at most 100)"},
    events.list_events: {name: str(field.description or "") for name, field in
                         events_wire.EventsQuery.model_fields.items()},
    webhooks_api.list_webhooks: {"page": "page number (from 1)", "per_page": "20 by default, at most 200"},
    webhooks_api.list_deliveries: {"page": "page number (from 1)", "per_page": "20 by default, at most 200"},
}

_FACES = {kantata.__name__: "Kantata face", kantata_values.__name__: "Kantata face",
          kantata_choices.__name__: "Kantata face", kantata_sets.__name__: "Kantata face",
          subjects.__name__: "Kantata face", plane.__name__: "Plane face", admin.__name__: "Administration",
          events.__name__: "Change events", health.__name__: "Probes", webhooks_api.__name__: "Webhooks"}
_PARAM = re.compile(r"{(\w+)}")
_ERRORS = {400: "the request is malformed or invalid", 401: "no key, or a key refused",
           403: "the key may not do this", 404: "unknown (or another workspace's)",
           409: "a conflict", 412: "the value changed since it was read (If-Match)",
           413: "the body is too large", 422: "invalid values (Kantata face)", 429: "rate limited",
           503: "a dependency is unreachable; nothing was applied"}


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes."""
    models = {model for model in BODIES.values()} | _answer_models()
    _, definitions = models_json_schema([(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
                                        ref_template=_REF)
    schemas: dict[str, Any] = definitions.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        if path in (SPEC_PATH, DOCS_PATH) or path.startswith(DOCS_PATH + "/"):
            continue
        operation = _operation(route.handler, path)
        if operation["operationId"] in used:  # one handler at two paths (/healthz, /livez's alias)
            operation["operationId"] += "." + re.sub(r"\W+", "_", path).strip("_")
        used.add(operation["operationId"])
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "cfv: custom field values", "version": version("cfv"), "description": (
            "Both faces (Kantata OX style under /api/v1/custom_field*, Plane style under /api/v1/workspaces/) "
            "and the administration API over one core. Writes go through RabbitMQ to the workers; change events "
            "are CloudEvents on the cfv.events exchange and readable at /api/v1/events.")},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiKey": []}, {"bearer": []}],
    }


def _answer_models() -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = {kantata_wire.Meta, kantata_wire.ResultRef, kantata_wire.ErrorsOut,
                                   kantata_wire.CustomFieldValueOut, kantata_wire.CustomFieldOut,
                                   kantata_wire.CustomFieldChoiceOut, kantata_wire.CustomFieldSetOut,
                                   admin_wire.UserOut, admin_wire.KeyOut, admin_wire.MembershipOut}
    for _, schema in ANSWERS.values():
        found.update(_models_in(schema))
    return found


def _models_in(schema: Any) -> set[type[BaseModel]]:
    names = set(re.findall(r'"#/components/schemas/(\w+)"', orjson.dumps(schema).decode()))
    known = {m.__name__: m for module in (kantata_wire, plane_wire, events_wire, admin_wire, webhooks_wire)
             for m in vars(module).values() if inspect.isclass(m) and issubclass(m, BaseModel)}
    return {known[name] for name in names if name in known}


def _operation(handler: Handler, path: str) -> dict[str, Any]:
    doc = inspect.getdoc(handler) or ""
    summary, _, description = doc.partition("\n")
    status, answer = ANSWERS.get(handler, (200, None))
    operation: dict[str, Any] = {
        "operationId": f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}",
        "summary": summary.strip(), "tags": [_FACES.get(handler.__module__, "Other")],
        "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                       for name in _PARAM.findall(path)],
        "responses": {str(status): {"description": "done", **(
            {"content": {"application/json": {"schema": answer}}} if answer is not None else {})}},
    }
    if description.strip():
        operation["description"] = description.strip()
    for name, text in QUERIES.get(handler, {}).items():
        operation["parameters"].append({"name": name, "in": "query", "required": False, "description": text,
                                        "schema": {"type": "string"}})
    body = BODIES.get(handler)
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if path.startswith("/api/"):
        errors = _ref(kantata_wire.ErrorsOut) if not path.startswith("/api/v1/workspaces/") else _OBJECT
        operation["responses"].update({str(code): {"description": text, "content": {
            "application/json": {"schema": errors}}} for code, text in _ERRORS.items()})
        if answer is not None and status in (200, 201) and handler in _ASYNC_WRITES:
            operation["responses"]["202"] = {"description": "accepted, still being applied (or Prefer: "
                                             "respond-async): poll the operation", "content": {
                                                 "application/json": {"schema": _ACCEPTED}}}
    else:
        operation["security"] = []
        operation["responses"] = {str(status): operation["responses"][str(status)],
                                  "503": {"description": "not ready", "content": {
                                      "application/json": {"schema": _PROBE}}}} if handler is health.readyz \
            else operation["responses"]
    return operation


_ASYNC_WRITES = frozenset({kantata.write_values, kantata_values.update_value, kantata_values.update_values,
                           subjects.register_subjects, plane.write_value, plane.update_value})


_RENDERED = web.AppKey("openapi_document", list)  # the document's bytes, made at the first request


async def serve_spec(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API (no key needed)."""
    rendered: list[bytes] = request.app[_RENDERED]
    if not rendered:  # the routes do not change once the app runs: rendered once
        rendered.append(orjson.dumps(document(request.app)))
    return web.Response(body=rendered[0], content_type="application/json")


async def serve_docs(_: web.Request) -> web.Response:
    """The API's browsable reference (Swagger UI, served from its package: it works offline)."""
    return web.Response(text=_PAGE, content_type="text/html")


_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>cfv API</title>
  <link rel="icon" type="image/png" href="{DOCS_PATH}/static/favicon-32x32.png">
  <link rel="stylesheet" href="{DOCS_PATH}/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{DOCS_PATH}/static/swagger-ui-bundle.js"></script>
  <script src="{DOCS_PATH}/static/docs.js"></script>
</body>
</html>
"""

_INIT = f"""window.ui = SwaggerUIBundle({{url: "{SPEC_PATH}", dom_id: "#swagger-ui", deepLinking: true}});
"""


async def serve_init(_: web.Request) -> web.Response:
    """The page's script: Swagger UI pointed at the document (a file, not inline, so a strict CSP allows it)."""
    return web.Response(text=_INIT, content_type="application/javascript")


def install(app: web.Application) -> None:
    """Serve the document, the page and the page's assets."""
    app[_RENDERED] = []
    app.router.add_get(SPEC_PATH, serve_spec)
    app.router.add_get(DOCS_PATH, serve_docs)
    app.router.add_get(f"{DOCS_PATH}/static/docs.js", serve_init)
    app.router.add_static(f"{DOCS_PATH}/static", _STATIC)
