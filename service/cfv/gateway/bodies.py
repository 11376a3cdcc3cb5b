"""Limits on request bodies, checked before a body is read as a wire model: how deep arrays and objects nest
(``CFV_MAX_JSON_DEPTH``) and how long a string may be (``CFV_MAX_STRING_LENGTH``). (Their size is aiohttp's
``client_max_size``, ``CFV_MAX_BODY_BYTES``.) Rate limits are :mod:`cfv.gateway.limits`."""

from __future__ import annotations

from typing import Any


class JsonLimitExceeded(ValueError):
    """A request body beyond ``CFV_MAX_JSON_DEPTH`` or ``CFV_MAX_STRING_LENGTH``."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def too_deep(max_depth: int, field: str | None = None) -> JsonLimitExceeded:
    """The error of a body nested deeper than ``max_depth``."""
    return JsonLimitExceeded(f"the body nests arrays and objects deeper than {max_depth} levels "
                             f"(CFV_MAX_JSON_DEPTH)", field)


def check_json_limits(data: Any, max_depth: int, max_string: int) -> None:
    """Raise :class:`JsonLimitExceeded` if ``data`` (parsed JSON) nests arrays and objects more than
    ``max_depth`` deep, or holds a string (a value or an object's key) of more than ``max_string`` characters.

    Depth counts containers: a scalar is 0 deep, ``[]`` and ``{}`` 1, ``{"a": [1]}`` 2. The error's field is
    the dotted path of the offending place (``custom_field_values.3.value``), as validation errors name
    fields. Iterative, so no depth of input exhausts Python's stack.
    """
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            if len(node) > max_string:
                raise _too_long(max_string, len(node), path)
        elif isinstance(node, dict):
            if depth + 1 > max_depth:
                raise too_deep(max_depth, _dotted(path))
            for key, value in node.items():
                if len(key) > max_string:
                    raise _too_long(max_string, len(key), path, key=True)
                stack.append((value, depth + 1, (*path, key)))
        elif isinstance(node, list):
            if depth + 1 > max_depth:
                raise too_deep(max_depth, _dotted(path))
            stack.extend((value, depth + 1, (*path, index)) for index, value in enumerate(node))


def _too_long(max_string: int, length: int, path: tuple[str | int, ...], *, key: bool = False) -> JsonLimitExceeded:
    what = "an object key" if key else "a string"
    return JsonLimitExceeded(f"{what} of {length} characters is longer than {max_string} (CFV_MAX_STRING_LENGTH)",
                             _dotted(path))


def _dotted(path: tuple[str | int, ...]) -> str | None:
    return ".".join(str(part) for part in path) or None
