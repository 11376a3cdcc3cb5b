"""Value validation: turn what a client sent into the canonical stored form of a field's type, or say why not.

Canonical forms (what is stored and echoed back):

======== ==================================================
string   ``"text"`` (url, email and file likewise)
date     ``"YYYY-MM-DD"``
datetime ISO 8601 as given, normalised (``datetime.isoformat``); a date alone stays ``"YYYY-MM-DD"``
number   an int or a finite float
currency ``[amount, "ISO 4217 code"]``
boolean  ``true`` / ``false``
single   ``[choice_id]``
multi    ``[choice_id, ...]``: first-seen order, duplicates collapsed (a write may name choices by UUID)
relation ``[id]`` or ``[id, ...]``: ints, or UUID strings for work items and on work-item fields
======== ==================================================

On top of its type, a value must not be blank if its field is required (``false`` and ``0`` are values), and
must keep its field's validation rules (:mod:`cfv.domain.rules`).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pycountry
from email_validator import EmailNotValidError, validate_email

from cfv.domain.fields import INTEGER_ID_SUBJECTS, FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.rules import RuleViolation, check_rules

JSON = Any
MAX_STRING_LENGTH = 10_000
MAX_ITEMS = 100

_CURRENCY_CODES = frozenset(c.alpha_3 for c in pycountry.currencies)
_URL = re.compile(r"https?://[^\s/?#@]+(:\d{1,5})?([/?#]\S*)?", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class InvalidValue(ValueError):
    """A value that does not fit its field; the message is meant for the client."""


def canonical_subject_id(subject_type: SubjectType, raw: JSON) -> str:
    """Return the canonical text of a subject id: a positive integer, or a UUID for work items."""
    if subject_type in INTEGER_ID_SUBJECTS:
        if isinstance(raw, bool):
            raise InvalidValue(f"{subject_type} ids are positive integers")
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:  # 2**63 has 19 digits
            raw = int(raw)
        if not isinstance(raw, int) or raw <= 0 or raw >= 2**63:
            raise InvalidValue(f"{subject_type} ids are positive integers")
        return str(raw)
    return _uuid(raw, f"{subject_type} ids are UUIDs")


def render_subject_id(subject_type: SubjectType, stored: str) -> int | str:
    """Return a stored subject id in its wire form: an int for Kantata subjects, a string otherwise."""
    return int(stored) if subject_type in INTEGER_ID_SUBJECTS else stored


@dataclass(frozen=True, slots=True)
class SetEdit:
    """Choices to add to and remove from a multi choice set, applied to the set current when it is applied."""

    add: tuple[int, ...]
    remove: tuple[int, ...]


def validate_value(definition: FieldDefinition, raw: JSON) -> JSON:
    """Return ``raw`` in the canonical form of the field's type, or raise :class:`InvalidValue`.

    A multi choice field also takes ``{"add": [...], "remove": [...]}``, returned as a :class:`SetEdit`.
    """
    if raw is None:
        raise InvalidValue("a value is required; delete the value to clear it")
    if isinstance(raw, dict) and definition.value_type is ValueType.MULTI:
        return _set_edit(definition, raw)
    value = _VALIDATORS[definition.value_type](definition, raw)
    _check_whole(definition, value)
    return value


def apply_edit(definition: FieldDefinition, edit: SetEdit, current: list[JSON] | None) -> list[JSON]:
    """The set ``edit`` makes of ``current`` (None: no value yet): removals, then additions at the end."""
    result = [choice for choice in current or [] if choice not in edit.remove]
    result += [choice for choice in edit.add if choice not in result]
    if not result:
        raise InvalidValue("the edit would leave no choice; delete the value to clear it")
    if len(result) > MAX_ITEMS:
        raise InvalidValue(f"must list at most {MAX_ITEMS} choices")
    _check_whole(definition, result)
    return result


def _check_whole(definition: FieldDefinition, value: JSON) -> None:
    if definition.required and isinstance(value, str) and not value.strip():
        raise InvalidValue("is required: a blank value is refused")
    if definition.rules is not None:
        try:
            check_rules(definition.rules, definition.value_type, value)
        except RuleViolation as error:
            raise InvalidValue(str(error)) from None


def _set_edit(definition: FieldDefinition, raw: dict[str, JSON]) -> SetEdit:
    if not raw or set(raw) - {"add", "remove"}:
        raise InvalidValue('an edit of the set is {"add": [choices], "remove": [choices]}')
    add = _resolve_choices(definition, raw.get("add", []), active_only=True)
    remove = _resolve_choices(definition, raw.get("remove", []), active_only=False)
    both = [str(choice) for choice in add if choice in remove]
    if both:
        raise InvalidValue(f"cannot both add and remove {', '.join(both)}")
    return SetEdit(tuple(add), tuple(remove))


def _resolve_choices(definition: FieldDefinition, raw: JSON, *, active_only: bool) -> list[int]:
    if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
        raise InvalidValue(f"add and remove are lists of at most {MAX_ITEMS} choices")
    resolved: list[int] = []
    unknown: list[str] = []
    for item in (_choice(choice) for choice in raw):
        choice_id = definition.choice_uuids.get(item) if isinstance(item, str) else item
        if choice_id is None or (active_only and choice_id not in definition.choice_ids):
            unknown.append(str(item))
        else:
            resolved.append(choice_id)
    if unknown:
        raise InvalidValue(f"not a choice of this field: {', '.join(unknown)}")
    return list(dict.fromkeys(resolved))


def _text(_: FieldDefinition, raw: JSON) -> str:
    if not isinstance(raw, str):
        raise InvalidValue("must be a string")
    if len(raw) > MAX_STRING_LENGTH:
        raise InvalidValue(f"must be at most {MAX_STRING_LENGTH} characters")
    if "\x00" in raw:  # Postgres cannot store it in jsonb: it would fail the whole transaction
        raise InvalidValue("must not contain NUL characters")
    return raw


def _file(definition: FieldDefinition, raw: JSON) -> str:
    text = _text(definition, raw)
    if not text.strip():
        raise InvalidValue("must name a file")
    return text


def _url(definition: FieldDefinition, raw: JSON) -> str:
    text = _text(definition, raw)
    if not _URL.fullmatch(text):
        raise InvalidValue("must be an http or https URL")
    return text


def _email(definition: FieldDefinition, raw: JSON) -> str:
    text = _text(definition, raw)
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise InvalidValue(f"must be an email address: {error}") from None


def _date(_: FieldDefinition, raw: JSON) -> str:
    if not isinstance(raw, str) or not _DATE.fullmatch(raw):
        raise InvalidValue("must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        raise InvalidValue("must be a real calendar date") from None


def _datetime(definition: FieldDefinition, raw: JSON) -> str:
    if not isinstance(raw, str) or not _DATE.fullmatch(raw[:10]):
        raise InvalidValue("must be an ISO 8601 date and time")
    if len(raw) == 10:
        return _date(definition, raw)
    try:
        return datetime.fromisoformat(raw).isoformat()
    except ValueError:
        raise InvalidValue("must be an ISO 8601 date and time") from None


def _number(_: FieldDefinition, raw: JSON) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidValue("must be a number")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise InvalidValue("must be a finite number")
    return raw


def _currency(definition: FieldDefinition, raw: JSON) -> list[JSON]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise InvalidValue('must be [amount, "currency code"], e.g. [998, "USD"]')
    amount, code = raw
    try:
        amount = _number(definition, amount)
    except InvalidValue:
        raise InvalidValue("the amount must be a number") from None
    if not isinstance(code, str) or code not in _CURRENCY_CODES:
        raise InvalidValue(f"{code!r} is not an ISO 4217 currency code")
    return [amount, code]


def _boolean(_: FieldDefinition, raw: JSON) -> bool:
    if not isinstance(raw, bool):
        raise InvalidValue("must be true or false")
    return raw


def _items(raw: JSON, parse: Callable[[JSON], JSON], what: str) -> list[JSON]:
    """A non-empty list of ids (one bare id is taken as a list of one), duplicates collapsed."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise InvalidValue(f"must list at least one {what}; delete the value to clear it")
    if len(items) > MAX_ITEMS:
        raise InvalidValue(f"must list at most {MAX_ITEMS} {what}s")
    return list(dict.fromkeys(parse(item) for item in items))


def _choice(raw: JSON) -> int | str:
    """A choice as named: its integer id, or its UUID (canonical text)."""
    if isinstance(raw, str):
        return _uuid(raw, "choices are given by their integer ids or UUIDs")
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidValue("choices are given by their integer ids or UUIDs")
    return raw


def _choices(definition: FieldDefinition, raw: JSON) -> list[JSON]:
    named = _items(raw, _choice, "choice")
    chosen: list[JSON] = _resolve_choices(definition, named, active_only=True)  # an id and its UUID are one
    if definition.value_type is ValueType.SINGLE and len(chosen) != 1:
        raise InvalidValue("a single choice field takes exactly one choice")
    return chosen


def _relation(definition: FieldDefinition, raw: JSON) -> list[JSON]:
    if definition.subject_type is SubjectType.WORK_ITEM and definition.relation_target is RelationTarget.USER:
        # Around work items (Plane's world) every id is a UUID, users' too.
        targets = _items(raw, lambda item: _uuid(item, "users are given by their UUIDs"), "user")
    elif definition.relation_target is RelationTarget.WORK_ITEM:
        targets = _items(raw, lambda item: _uuid(item, "work items are given by their UUIDs"), "work item")
    else:
        targets = _items(raw, _user_id, "user")
    if not definition.relation_multi and len(targets) != 1:
        raise InvalidValue("this relation takes exactly one target")
    return targets


def _user_id(raw: JSON) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw < 2**63:
        raise InvalidValue("users are given by their positive integer ids")
    return raw


def _uuid(raw: JSON, message: str) -> str:
    if not isinstance(raw, str):
        raise InvalidValue(message)
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidValue(message) from None


_VALIDATORS: dict[ValueType, Callable[[FieldDefinition, JSON], JSON]] = {
    ValueType.STRING: _text,
    ValueType.URL: _url,
    ValueType.EMAIL: _email,
    ValueType.FILE: _file,
    ValueType.DATE: _date,
    ValueType.DATETIME: _datetime,
    ValueType.NUMBER: _number,
    ValueType.CURRENCY: _currency,
    ValueType.BOOLEAN: _boolean,
    ValueType.SINGLE: _choices,
    ValueType.MULTI: _choices,
    ValueType.RELATION: _relation,
}
