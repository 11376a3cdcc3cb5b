"""The AsyncAPI document of cfv's messaging (issue 11): generated from the pydantic models, kept current (a test
fails on drift), every reference resolving; and the signing scheme it writes out, followed step by step with
nothing of cfv's code, signs messages cfv accepts."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
import yaml
from cfv_schemas.asyncapi import SIGNING, document
from cfv_schemas.export import ASYNCAPI_FILE, rendered_asyncapi
from cfv_schemas.signing import BadSignature, verify_message
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def test_the_file_is_current() -> None:
    assert ASYNCAPI_FILE.read_text() == rendered_asyncapi(), "stale: run .venv/bin/python -m cfv_schemas.export"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + \
            [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_the_parts_are_there() -> None:
    spec = yaml.safe_load(ASYNCAPI_FILE.read_text())
    assert spec["asyncapi"] == "3.0.0"
    for ref in _refs(spec):
        assert ref.startswith("#/"), ref
        node: Any = spec
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
    assert set(spec["channels"]) == {"commands", "replies", "events"}
    assert spec["operations"]["sendCommands"]["reply"]["channel"] == {"$ref": "#/channels/replies"}
    schemas = spec["components"]["schemas"]
    assert {"CommandEnvelope", "ChangeEvent", "Outcome", "WriteValues", "ValueChange"} <= set(schemas)
    assert "position" in schemas["ChangeEvent"]["properties"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_signing_scheme_as_written_signs_messages_cfv_accepts() -> None:
    assert "SHA-256" in SIGNING and "Ed25519" in SIGNING and "base64url" in SIGNING
    api_key = "cfv_0123abcd_an-api-key-of-the-usual-shape"
    body = orjson.dumps({"v": 1, "commands": []})
    # The steps of the document, with no cfv code:
    seed = hashlib.sha256(b"cfv command signing v1\x00" + api_key.encode()).digest()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    headers = {"cfv-key": _b64(private.public_key().public_bytes_raw()), "cfv-signature": _b64(private.sign(body))}
    assert verify_message(body, headers) == private.public_key().public_bytes_raw()
    with pytest.raises(BadSignature):
        verify_message(body + b" ", headers)


def test_the_document_is_built_from_the_models() -> None:
    assert document()["components"]["schemas"]["CommandEnvelope"]["properties"]["commands"]["maxItems"] == 100
