"""The AsyncAPI 3.0 document of cfv's messaging (``schemas/asyncapi.yaml``; written by ``python -m
cfv_schemas.export``): the commands an integration publishes, the outcomes it may ask for, the change events it
may consume. Its payload schemas are the pydantic models' own; a test fails when the file drifts from them.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from cfv_schemas import commands, events, outcomes
from cfv_schemas.signing import KEY_HEADER, SIGNATURE_HEADER

_REF = "#/components/schemas/{model}"

SIGNING = f"""Every command message is signed with the API key the commands act as, so that any language can sign:

1. Derive the key pair from the API key: seed = SHA-256(b"cfv command signing v1\\x00" + UTF-8 bytes of the key);
   the private key is the Ed25519 key of that 32-byte seed (RFC 8032), the public key its 32-byte public half.
2. Sign the message body, byte for byte as published, with Ed25519.
3. Send two headers, each value base64url without padding: `{KEY_HEADER}` the public key, `{SIGNATURE_HEADER}`
   the signature.

cfv stores only public keys: the worker verifies the signature, then looks the public key up, which names the
API key (and its user) the commands act as, checked as an HTTP request with that key would be. A message without
a valid signature is dead-lettered and the operations it names (only ones nobody owns) are marked failed."""


#: The definition events' messages: name -> model.
_DEFINITION_MESSAGES = {"fieldEvent": events.FieldEvent, "choiceEvent": events.ChoiceEvent,
                        "setEvent": events.SetEvent, "projectEvent": events.ProjectEvent}
_DEFINITION_SUMMARIES = {
    "fieldEvent": ("cfv.{field|property}.{created|updated|deleted}.v1",
                   "A field, or a Plane property (a field of a project), created, updated or deleted"),
    "choiceEvent": ("cfv.{choice|option}.{created|updated|deleted}.v1",
                    "A choice, or a Plane option (a choice of a property), created, updated or deleted"),
    "setEvent": ("cfv.set.{created|updated|deleted}.v1", "A custom field set created, updated or deleted"),
    "projectEvent": ("cfv.project.{created|updated|deleted}.v1", "A Plane project created, updated or deleted"),
}


def document(version: str = "1") -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as a dict."""
    _, definitions = models_json_schema(
        [(commands.CommandEnvelope, "validation"), (events.ChangeEvent, "serialization"),
         *((model, "serialization") for model in _DEFINITION_MESSAGES.values()),
         (outcomes.Outcome, "serialization")], ref_template=_REF)
    schemas: dict[str, Any] = definitions.get("$defs", {})
    schemas["Outcomes"] = {"type": "array", "items": {"$ref": _REF.format(model="Outcome")},
                           "description": "the outcome of each command of the message, in order"}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "cfv messaging", "version": version, "description": (
            "Commands published to RabbitMQ by integrations (the gateways publish the same), the outcomes sent "
            "back on request, and the change events every committed change produces.\n\n" + SIGNING)},
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": {"host": "localhost:5672", "protocol": "amqp", "protocolVersion": "0-9-1",
                                 "description": "the broker cfv's processes use (CFV_AMQP_URL)"}},
        "channels": {
            "commands": {
                "address": "cfv.commands",
                "description": "Publish command messages here, persistent, with the workspace id (decimal) as "
                               "routing key: one workspace's commands form one ordered stream (a consistent-hash "
                               "exchange spreads workspaces over the shard queues cfv.commands.N).",
                "messages": {"commandMessage": {"$ref": "#/components/messages/commandMessage"}},
                "bindings": {"amqp": {"is": "routingKey", "exchange": {
                    "name": "cfv.commands", "type": "default", "durable": True, "autoDelete": False,
                    "vhost": "/"}, "bindingVersion": "0.3.0"}},
            },
            "replies": {
                "address": None,
                "description": "The message's reply_to: RabbitMQ's direct reply-to (amq.rabbitmq.reply-to) or a "
                               "queue of the publishing user (<user_id>.*). One message per command message, "
                               "with its correlation_id.",
                "messages": {"outcomes": {"$ref": "#/components/messages/outcomes"}},
            },
            "events": {
                "address": "cfv.events",
                "description": "Change events (CloudEvents 1.0, structured mode). Values: routing key "
                               "{workspace_slug}.{subject_type}.{custom_field_id}.{created|replaced|deleted} (four "
                               "words). Definitions (fields, choices, sets, projects, properties, options): "
                               "routing key {workspace_slug}.definition.{kind}.{id}.{created|updated|deleted} (five "
                               "words), type cfv.{kind}.{created|updated|deleted}.v1. Bind a queue of your own "
                               "({slug}.*.*.* for values only, {slug}.definition.# for definitions only); catch up "
                               "from GET /api/v1/events?after=POSITION.",
                "messages": {"changeEvent": {"$ref": "#/components/messages/changeEvent"},
                             **{name: {"$ref": f"#/components/messages/{name}"} for name in _DEFINITION_MESSAGES}},
                "bindings": {"amqp": {"is": "routingKey", "exchange": {
                    "name": "cfv.events", "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
                    "bindingVersion": "0.3.0"}},
            },
        },
        "operations": {
            "sendCommands": {
                "action": "send", "channel": {"$ref": "#/channels/commands"},
                "summary": "Write or delete values, delete fields or projects, place subjects (signed)",
                "messages": [{"$ref": "#/channels/commands/messages/commandMessage"}],
                "reply": {"channel": {"$ref": "#/channels/replies"},
                          "address": {"location": "$message.header#/reply_to",
                                      "description": "the AMQP reply_to property"},
                          "messages": [{"$ref": "#/channels/replies/messages/outcomes"}]},
            },
            "receiveEvents": {
                "action": "receive", "channel": {"$ref": "#/channels/events"},
                "summary": "Every committed change, at least once, in order per (subject, field); definitions' "
                           "in commit order",
                "messages": [{"$ref": "#/channels/events/messages/changeEvent"},
                             *({"$ref": f"#/channels/events/messages/{name}"} for name in _DEFINITION_MESSAGES)],
            },
        },
        "components": {
            "messages": {
                "commandMessage": {
                    "name": "CommandEnvelope", "title": "Command message", "contentType": "application/json",
                    "summary": "One to 100 commands, applied in order, each all or nothing",
                    "headers": {"type": "object", "required": [KEY_HEADER, SIGNATURE_HEADER], "properties": {
                        KEY_HEADER: {"type": "string", "description": "the signing public key, base64url"},
                        SIGNATURE_HEADER: {"type": "string", "description": "Ed25519 signature of the body, "
                                                                            "base64url"}}},
                    "correlationId": {"location": "$message.header#/correlation_id"},
                    "payload": {"$ref": _REF.format(model="CommandEnvelope")},
                    "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}},
                },
                "outcomes": {
                    "name": "Outcomes", "title": "Outcomes of a command message", "contentType": "application/json",
                    "correlationId": {"location": "$message.header#/correlation_id"},
                    "payload": {"$ref": _REF.format(model="Outcomes")},
                },
                "changeEvent": {
                    "name": "ChangeEvent", "title": "Change event", "contentType": events.CONTENT_TYPE,
                    "summary": "A value created, replaced or deleted",
                    "payload": {"$ref": _REF.format(model="ChangeEvent")},
                    "bindings": {"amqp": {"messageType": "cfv.value.{created|replaced|deleted}.v1",
                                          "bindingVersion": "0.3.0"}},
                },
                **{name: {"name": model.__name__, "title": summary, "contentType": events.CONTENT_TYPE,
                          "summary": summary, "payload": {"$ref": _REF.format(model=model.__name__)},
                          "bindings": {"amqp": {"messageType": message_type, "bindingVersion": "0.3.0"}}}
                   for name, model in _DEFINITION_MESSAGES.items()
                   for message_type, summary in [_DEFINITION_SUMMARIES[name]]},
            },
            "schemas": schemas,
        },
    }
