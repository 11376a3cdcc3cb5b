"""RabbitMQ permissions for an integration: its commands in, its own workspace's events out, nothing else.

Commands need no broker-level tenancy (each message is signed with an API key, and a key acts only in its own
workspace), but change events do: ``cfv.events`` carries every workspace's events, routed by
``{slug}.{subject_type}.{field}.{change}``. RabbitMQ's topic authorisation limits the routing keys a user may
bind with, so an integration's user can only ever receive its own workspace's events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cfv.broker.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE


@dataclass(frozen=True, slots=True)
class IntegrationPermissions:
    """The permissions of one integration's RabbitMQ user in cfv's virtual host (regular expressions)."""

    configure: str  # the queues it may declare and delete: its own, named "<user>.<anything>"
    write: str  # where it may publish or bind to: cfv.commands, and its own queues
    read: str  # what it may consume or bind from: cfv.events, and its own queues
    events_read: str  # topic permission on cfv.events: the routing keys it may bind with

    def rabbitmqctl(self, user: str, vhost: str) -> list[list[str]]:
        """The ``rabbitmqctl`` commands that grant these permissions (after ``add_user``)."""
        return [["rabbitmqctl", "set_permissions", "-p", vhost, user, self.configure, self.write, self.read],
                ["rabbitmqctl", "set_topic_permissions", "-p", vhost, user, EVENTS_EXCHANGE, "^$",
                 self.events_read]]


def integration_permissions(user: str, workspace_slug: str) -> IntegrationPermissions:
    """What RabbitMQ user ``user`` may do as an integration of workspace ``workspace_slug``."""
    own = re.escape(user) + r"\..+"
    return IntegrationPermissions(
        configure=f"^{own}$",
        write=f"^({re.escape(COMMANDS_EXCHANGE)}|{own})$",
        read=f"^({re.escape(EVENTS_EXCHANGE)}|{own})$",
        events_read=f"^{re.escape(workspace_slug)}\\.",
    )
