"""Helpers shared by the Plane-face integration tests: paths, and creating projects, properties and options."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from support import Stack, Workspace


def projects_path(workspace: Workspace) -> str:
    """``…/projects/`` of ``workspace``."""
    return f"/api/v1/workspaces/{workspace.slug}/projects/"


@dataclass
class Plane:
    """A Plane client of one workspace and project, over a running stack."""

    stack: Stack
    workspace: Workspace
    project_id: str

    @property
    def project(self) -> str:
        """The project's path."""
        return f"{projects_path(self.workspace)}{self.project_id}/"

    def property_path(self, property_id: str) -> str:
        """A property's path."""
        return f"{self.project}work-item-properties/{property_id}/"

    def values_path(self, work_item: str, property_id: str) -> str:
        """The values path of one property of one work item."""
        return f"{self.project}work-items/{work_item}/work-item-properties/{property_id}/values/"

    def all_values_path(self, work_item: str) -> str:
        """The path listing every value of a work item."""
        return f"{self.project}work-items/{work_item}/work-item-properties/values/"

    async def request(self, method: str, path: str, json: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """Send a request as this workspace's key."""
        return await self.stack.request(method, path, self.workspace, json=json, headers=headers)

    async def create_property(self, **spec: Any) -> dict[str, Any]:
        """Define a property (``display_name`` defaults to its type); return it as answered."""
        spec.setdefault("display_name", spec["property_type"].title())
        status, body, _ = await self.request("POST", f"{self.project}work-item-properties/", spec)
        assert status == 201, body
        prop: dict[str, Any] = body
        return prop

    async def create_option(self, prop: dict[str, Any], name: str, **spec: Any) -> dict[str, Any]:
        """Add an option to an OPTION property; return it as answered."""
        status, body, _ = await self.request("POST", self.property_path(prop["id"]) + "options/",
                                             {"name": name, **spec})
        assert status == 201, body
        option: dict[str, Any] = body
        return option

    async def write(self, prop: dict[str, Any], value: Any, work_item: str | None = None,
                    method: str = "POST", **extra: Any) -> tuple[int, Any, dict[str, str]]:
        """Write (POST, or PATCH) a value of ``prop`` on ``work_item`` (a fixed one unless told)."""
        return await self.request(method, self.values_path(work_item or WORK_ITEM, prop["id"]),
                                  {"value": value, **extra})


WORK_ITEM = "5d7c9c1e-8a53-4a35-9b8f-0f3f2b4a7e10"


async def new_project(stack: Stack, workspace: Workspace, identifier: str = "WEB") -> Plane:
    """Create a project in ``workspace``; return a client of it."""
    status, body, _ = await stack.request("POST", projects_path(workspace), workspace,
                                          json={"name": f"Project {identifier}", "identifier": identifier})
    assert status == 201, body
    return Plane(stack, workspace, body["id"])


def a_uuid() -> str:
    """A fresh UUID, as text."""
    return str(uuid.uuid4())
