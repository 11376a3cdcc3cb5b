"""Helpers the tests share (fixtures stay in ``tests/conftest.py``): the services, a running stack, the pipeline's
processes and streams, a TCP proxy that cuts connections, and each face's request helpers."""

from support.services import AMQP_HOST, PG_ADMIN, RABBIT_API, _with_db, add_vhost, captured_logs, free_port, wait_for
from support.stack import EventCollector, Stack, Workspace, add_users, collecting, create_workspace, running_stack

__all__ = ["AMQP_HOST", "PG_ADMIN", "RABBIT_API", "EventCollector", "Stack", "Workspace", "_with_db", "add_users",
           "add_vhost", "captured_logs", "collecting", "create_workspace", "free_port", "running_stack", "wait_for"]
