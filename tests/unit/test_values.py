"""Value validation: every value type's canonical form, what it refuses, and subject ids."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cfv.domain.fields import (
    INTEGER_ID_SUBJECTS,
    FieldDefinition,
    RelationTarget,
    SubjectType,
    ValueType,
)
from cfv.domain.rules import ValueRules, parse_rules
from cfv.domain.values import (
    MAX_ITEMS,
    MAX_STRING_LENGTH,
    InvalidValue,
    SetEdit,
    apply_edit,
    canonical_subject_id,
    render_subject_id,
    validate_value,
)

CHOICES = frozenset({1, 2, 3, 40})
UUID_LOWER = "12345678-9abc-4def-8123-456789abcdef"
UUID_UPPER = UUID_LOWER.upper()
UUID_BARE = UUID_LOWER.replace("-", "")
UUID_OTHER = "00000000-0000-4000-8000-000000000001"


# Choices 1, 2 and 40 by UUID; 5 is a choice that is no longer active (not in CHOICES).
CHOICE_1 = "a0000000-0000-4000-8000-000000000001"
CHOICE_2 = "a0000000-0000-4000-8000-000000000002"
CHOICE_40 = "a0000000-0000-4000-8000-000000000040"
CHOICE_INACTIVE = "a0000000-0000-4000-8000-000000000005"
CHOICE_UUIDS = {CHOICE_1: 1, CHOICE_2: 2, CHOICE_40: 40, CHOICE_INACTIVE: 5}


def field(
    value_type: ValueType,
    *,
    choice_ids: frozenset[int] = CHOICES,
    relation_target: RelationTarget | None = None,
    relation_multi: bool = False,
    subject_type: SubjectType = SubjectType.STORY,
    required: bool = False,
    rules: dict[str, Any] | None = None,
) -> FieldDefinition:
    is_choice = value_type in (ValueType.SINGLE, ValueType.MULTI)
    is_multi = value_type is ValueType.MULTI or relation_multi
    return FieldDefinition(
        id=7,
        workspace_id=1,
        name="Field",
        subject_type=subject_type,
        value_type=value_type,
        choice_ids=choice_ids if is_choice else frozenset(),
        relation_target=relation_target,
        relation_multi=relation_multi,
        required=required,
        choice_uuids=CHOICE_UUIDS if is_choice else {},
        rules=None if rules is None else parse_rules(value_type, is_multi, rules),
    )


USER_SINGLE = field(ValueType.RELATION, relation_target=RelationTarget.USER)
USER_MULTI = field(ValueType.RELATION, relation_target=RelationTarget.USER, relation_multi=True)
WORK_ITEM_SINGLE = field(ValueType.RELATION, relation_target=RelationTarget.WORK_ITEM)
WORK_ITEM_MULTI = field(ValueType.RELATION, relation_target=RelationTarget.WORK_ITEM, relation_multi=True)
# On work items (Plane's world) users are named by UUIDs too.
WI_USER_SINGLE = field(ValueType.RELATION, relation_target=RelationTarget.USER, subject_type=SubjectType.WORK_ITEM)
WI_USER_MULTI = field(ValueType.RELATION, relation_target=RelationTarget.USER, relation_multi=True,
                      subject_type=SubjectType.WORK_ITEM)
WI_WORK_ITEM_SINGLE = field(ValueType.RELATION, relation_target=RelationTarget.WORK_ITEM,
                            subject_type=SubjectType.WORK_ITEM)


def definition_for(value_type: ValueType) -> FieldDefinition:
    return USER_SINGLE if value_type is ValueType.RELATION else field(value_type)


# (definition, raw, canonical)
VALID: list[tuple[FieldDefinition, Any, Any]] = [
    # string
    (field(ValueType.STRING), "hello", "hello"),
    (field(ValueType.STRING), "", ""),
    (field(ValueType.STRING), "  spaced  ", "  spaced  "),
    (field(ValueType.STRING), "héllo wörld ✓", "héllo wörld ✓"),
    (field(ValueType.STRING), "x" * MAX_STRING_LENGTH, "x" * MAX_STRING_LENGTH),
    # url
    (field(ValueType.URL), "http://example.com", "http://example.com"),
    (field(ValueType.URL), "https://example.com", "https://example.com"),
    (field(ValueType.URL), "https://example.com/a/b?q=1&r=2#frag", "https://example.com/a/b?q=1&r=2#frag"),
    (field(ValueType.URL), "https://example.com:8443/x", "https://example.com:8443/x"),
    (field(ValueType.URL), "HTTPS://EXAMPLE.COM/Path", "HTTPS://EXAMPLE.COM/Path"),
    # email: the domain is lowercased, the local part kept as given
    (field(ValueType.EMAIL), "alice@example.com", "alice@example.com"),
    (field(ValueType.EMAIL), "Alice@EXAMPLE.COM", "Alice@example.com"),
    (field(ValueType.EMAIL), "bob.smith+tag@Mail.Example.ORG", "bob.smith+tag@mail.example.org"),
    # file
    (field(ValueType.FILE), "report.pdf", "report.pdf"),
    (field(ValueType.FILE), " report final.pdf ", " report final.pdf "),
    # date
    (field(ValueType.DATE), "2014-02-25", "2014-02-25"),
    (field(ValueType.DATE), "2016-02-29", "2016-02-29"),
    (field(ValueType.DATE), "0001-01-01", "0001-01-01"),
    (field(ValueType.DATE), "9999-12-31", "9999-12-31"),
    # datetime (Python 3.11 fromisoformat: Z, offsets, naive, space separator, fractions)
    (field(ValueType.DATETIME), "2014-02-25T10:00:00Z", "2014-02-25T10:00:00+00:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00+02:00", "2014-02-25T10:00:00+02:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00-05:30", "2014-02-25T10:00:00-05:30"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00", "2014-02-25T10:00:00"),
    (field(ValueType.DATETIME), "2014-02-25 10:00", "2014-02-25T10:00:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00.5Z", "2014-02-25T10:00:00.500000+00:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00.123456+00:00", "2014-02-25T10:00:00.123456+00:00"),
    (field(ValueType.DATETIME), "2024-01-02 10:30:00", "2024-01-02T10:30:00"),
    # datetime: a date alone stays a date
    (field(ValueType.DATETIME), "2024-01-02", "2024-01-02"),
    (field(ValueType.DATETIME), "2024-02-29", "2024-02-29"),
    # number
    (field(ValueType.NUMBER), 13, 13),
    (field(ValueType.NUMBER), 0, 0),
    (field(ValueType.NUMBER), -5, -5),
    (field(ValueType.NUMBER), 13.5, 13.5),
    (field(ValueType.NUMBER), -0.25, -0.25),
    (field(ValueType.NUMBER), 1e300, 1e300),
    (field(ValueType.NUMBER), 2**63, 2**63),
    # currency
    (field(ValueType.CURRENCY), [998, "USD"], [998, "USD"]),
    (field(ValueType.CURRENCY), [13.5, "EUR"], [13.5, "EUR"]),
    (field(ValueType.CURRENCY), [0, "JPY"], [0, "JPY"]),
    (field(ValueType.CURRENCY), [-20, "GBP"], [-20, "GBP"]),
    # boolean
    (field(ValueType.BOOLEAN), True, True),
    (field(ValueType.BOOLEAN), False, False),
    # single
    (field(ValueType.SINGLE), [2], [2]),
    (field(ValueType.SINGLE), 2, [2]),
    (field(ValueType.SINGLE), [40], [40]),
    # single by UUID: stored as the integer id, whatever the UUID's spelling
    (field(ValueType.SINGLE), CHOICE_2, [2]),
    (field(ValueType.SINGLE), [CHOICE_40], [40]),
    (field(ValueType.SINGLE), [CHOICE_2.upper()], [2]),
    (field(ValueType.SINGLE), [CHOICE_2.replace("-", "")], [2]),
    (field(ValueType.SINGLE), [CHOICE_2, CHOICE_2.upper()], [2]),
    # an id and its own UUID are one choice
    (field(ValueType.SINGLE), [2, CHOICE_2], [2]),
    # multi: replace-set, first-seen order, duplicates collapsed
    (field(ValueType.MULTI), [3, 1, 3, 2, 1], [3, 1, 2]),
    (field(ValueType.MULTI), [40, 1], [40, 1]),
    (field(ValueType.MULTI), [2], [2]),
    (field(ValueType.MULTI), 2, [2]),
    (field(ValueType.MULTI, choice_ids=frozenset(range(1, 201))), list(range(1, 101)), list(range(1, 101))),
    # multi by UUID, or ids and UUIDs mixed: integer ids, first-seen order, an id and its UUID collapsed
    (field(ValueType.MULTI), [CHOICE_40, CHOICE_1], [40, 1]),
    (field(ValueType.MULTI), CHOICE_1, [1]),
    (field(ValueType.MULTI), [2, CHOICE_40, 3], [2, 40, 3]),
    (field(ValueType.MULTI), [CHOICE_1, 2, 1, CHOICE_2.upper(), 40], [1, 2, 40]),
    # relation to users
    (USER_SINGLE, 7, [7]),
    (USER_SINGLE, [7], [7]),
    (USER_MULTI, [7, 8, 7, 9, 8], [7, 8, 9]),
    (USER_MULTI, 7, [7]),
    (USER_MULTI, list(range(1, 101)), list(range(1, 101))),
    # relation to work items: UUIDs canonicalised to lowercase hyphenated
    (WORK_ITEM_SINGLE, UUID_LOWER, [UUID_LOWER]),
    (WORK_ITEM_SINGLE, [UUID_UPPER], [UUID_LOWER]),
    (WORK_ITEM_SINGLE, [UUID_BARE], [UUID_LOWER]),
    (WORK_ITEM_SINGLE, ["{" + UUID_UPPER + "}"], [UUID_LOWER]),
    (WORK_ITEM_MULTI, [UUID_UPPER, UUID_OTHER, UUID_LOWER, UUID_BARE], [UUID_LOWER, UUID_OTHER]),
    # relation to users on work items: UUIDs, not ints
    (WI_USER_SINGLE, UUID_UPPER, [UUID_LOWER]),
    (WI_USER_SINGLE, [UUID_BARE], [UUID_LOWER]),
    (WI_USER_MULTI, [UUID_LOWER, UUID_OTHER, UUID_UPPER], [UUID_LOWER, UUID_OTHER]),
    (WI_WORK_ITEM_SINGLE, [UUID_OTHER], [UUID_OTHER]),
]


# (definition, raw, part of the message)
INVALID: list[tuple[FieldDefinition, Any, str]] = [
    # string
    (field(ValueType.STRING), 5, "must be a string"),
    (field(ValueType.STRING), True, "must be a string"),
    (field(ValueType.STRING), ["a"], "must be a string"),
    (field(ValueType.STRING), {"text": "a"}, "must be a string"),
    (field(ValueType.STRING), "x" * (MAX_STRING_LENGTH + 1), "at most 10000 characters"),
    (field(ValueType.STRING), "a\x00b", "NUL"),
    (field(ValueType.FILE), "report\x00.pdf", "NUL"),
    # url
    (field(ValueType.URL), "ftp://example.com/file", "http or https URL"),
    (field(ValueType.URL), "example.com", "http or https URL"),
    (field(ValueType.URL), "//example.com", "http or https URL"),
    (field(ValueType.URL), "mailto:alice@example.com", "http or https URL"),
    (field(ValueType.URL), "http://", "http or https URL"),
    (field(ValueType.URL), "http://exa mple.com", "http or https URL"),
    (field(ValueType.URL), "http://example.com/a b", "http or https URL"),
    (field(ValueType.URL), " http://example.com", "http or https URL"),
    (field(ValueType.URL), "http://example.com\tx", "http or https URL"),
    (field(ValueType.URL), "", "http or https URL"),
    (field(ValueType.URL), 5, "must be a string"),
    (field(ValueType.URL), "https://example.com/" + "a" * MAX_STRING_LENGTH, "at most 10000 characters"),
    # email
    (field(ValueType.EMAIL), "nope", "must be an email address"),
    (field(ValueType.EMAIL), "a@b", "must be an email address"),
    (field(ValueType.EMAIL), "a@@example.com", "must be an email address"),
    (field(ValueType.EMAIL), "a b@example.com", "must be an email address"),
    (field(ValueType.EMAIL), "@example.com", "must be an email address"),
    (field(ValueType.EMAIL), "", "must be an email address"),
    (field(ValueType.EMAIL), 5, "must be a string"),
    # file
    (field(ValueType.FILE), "", "must name a file"),
    (field(ValueType.FILE), "   ", "must name a file"),
    (field(ValueType.FILE), "\t\n", "must name a file"),
    (field(ValueType.FILE), 5, "must be a string"),
    (field(ValueType.FILE), "f" * (MAX_STRING_LENGTH + 1), "at most 10000 characters"),
    # date
    (field(ValueType.DATE), "2014-02-30", "real calendar date"),
    (field(ValueType.DATE), "2015-02-29", "real calendar date"),
    (field(ValueType.DATE), "2014-13-01", "real calendar date"),
    (field(ValueType.DATE), "2014-00-10", "real calendar date"),
    (field(ValueType.DATE), "2014-2-5", "YYYY-MM-DD"),
    (field(ValueType.DATE), "2014-02-25T10:00:00", "YYYY-MM-DD"),
    (field(ValueType.DATE), "2014-02-25T10:00:00Z", "YYYY-MM-DD"),
    (field(ValueType.DATE), "20140225", "YYYY-MM-DD"),
    (field(ValueType.DATE), "25/02/2014", "YYYY-MM-DD"),
    (field(ValueType.DATE), " 2014-02-25", "YYYY-MM-DD"),
    (field(ValueType.DATE), "", "YYYY-MM-DD"),
    (field(ValueType.DATE), 20140225, "YYYY-MM-DD"),
    (field(ValueType.DATE), ["2014-02-25"], "YYYY-MM-DD"),
    # Refused (the message is the less apt "real calendar date" for these two).
    (field(ValueType.DATE), "2014-02-25\n", "date"),
    (field(ValueType.DATE), "\u0662\u0660\u0661\u0664-\u0660\u0662-\u0662\u0665", "date"),
    # datetime
    (field(ValueType.DATETIME), "garbage", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25Tnoon", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25T25:00:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25T10:61:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-30T10:00:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-2-5T10:00:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00+25:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "25/02/2014 10:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), 1393322400, "ISO 8601 date and time"),
    (field(ValueType.DATETIME), True, "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2024-02-30", "real calendar date"),
    (field(ValueType.DATETIME), "2023-02-29", "real calendar date"),
    (field(ValueType.DATETIME), "2024-1-02", "ISO 8601 date and time"),
    # number
    (field(ValueType.NUMBER), True, "must be a number"),
    (field(ValueType.NUMBER), False, "must be a number"),
    (field(ValueType.NUMBER), "13", "must be a number"),
    (field(ValueType.NUMBER), [13], "must be a number"),
    (field(ValueType.NUMBER), {"n": 13}, "must be a number"),
    (field(ValueType.NUMBER), float("nan"), "finite"),
    (field(ValueType.NUMBER), float("inf"), "finite"),
    (field(ValueType.NUMBER), float("-inf"), "finite"),
    # currency
    (field(ValueType.CURRENCY), ["998", "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [True, "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [float("nan"), "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [float("inf"), "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [998, "XXX1"], "'XXX1' is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, "usd"], "'usd' is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, "ABC"], "'ABC' is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, ""], "is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, 840], "840 is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, None], "None is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), ["USD", 998], "amount must be a number"),
    (field(ValueType.CURRENCY), [998], '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), [998, "USD", "EUR"], '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), [], '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), 998, '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), "998 USD", '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), {"amount": 998, "currency": "USD"}, '[amount, "currency code"]'),
    # boolean
    (field(ValueType.BOOLEAN), 0, "true or false"),
    (field(ValueType.BOOLEAN), 1, "true or false"),
    (field(ValueType.BOOLEAN), "true", "true or false"),
    (field(ValueType.BOOLEAN), "false", "true or false"),
    (field(ValueType.BOOLEAN), [True], "true or false"),
    # single
    (field(ValueType.SINGLE), [1, 2], "exactly one choice"),
    (field(ValueType.SINGLE), [9], "not a choice of this field: 9"),
    (field(ValueType.SINGLE), 9, "not a choice of this field: 9"),
    (field(ValueType.SINGLE), [], "at least one choice"),
    (field(ValueType.SINGLE), True, "integer ids"),
    (field(ValueType.SINGLE), [True], "integer ids"),
    (field(ValueType.SINGLE), ["2"], "integer ids"),
    (field(ValueType.SINGLE), [2.0], "integer ids"),
    (field(ValueType.SINGLE), [None], "integer ids"),
    (field(ValueType.SINGLE), "2", "integer ids"),
    (field(ValueType.SINGLE), "not-a-uuid", "integer ids or UUIDs"),
    (field(ValueType.SINGLE), CHOICE_1 + "0", "integer ids or UUIDs"),
    (field(ValueType.SINGLE), UUID_OTHER, f"not a choice of this field: {UUID_OTHER}"),
    (field(ValueType.SINGLE), [CHOICE_INACTIVE], f"not a choice of this field: {CHOICE_INACTIVE}"),
    (field(ValueType.SINGLE), [5], "not a choice of this field: 5"),  # the inactive choice by id
    (field(ValueType.SINGLE), [CHOICE_1, CHOICE_2], "exactly one choice"),
    (field(ValueType.SINGLE, choice_ids=frozenset({2})), [CHOICE_1], f"not a choice of this field: {CHOICE_1}"),
    # multi
    (field(ValueType.MULTI), [], "at least one choice"),
    (field(ValueType.MULTI), [1, 9], "not a choice of this field: 9"),
    (field(ValueType.MULTI), [8, 1, 9], "not a choice of this field: 8, 9"),
    (field(ValueType.MULTI), [1, True], "integer ids"),
    (field(ValueType.MULTI), [1, "2"], "integer ids"),
    (field(ValueType.MULTI), [CHOICE_1, CHOICE_INACTIVE, 9], f"not a choice of this field: {CHOICE_INACTIVE}, 9"),
    (field(ValueType.MULTI), [UUID_UPPER], f"not a choice of this field: {UUID_LOWER}"),
    (field(ValueType.MULTI, choice_ids=frozenset(range(1, 201))), list(range(1, 102)), "at most 100 choices"),
    # relation to users
    (USER_SINGLE, [7, 8], "exactly one target"),
    (USER_SINGLE, [], "at least one user"),
    (USER_SINGLE, 0, "positive integer ids"),
    (USER_SINGLE, -1, "positive integer ids"),
    (USER_SINGLE, True, "positive integer ids"),
    (USER_SINGLE, "7", "positive integer ids"),
    (USER_SINGLE, 7.0, "positive integer ids"),
    (USER_SINGLE, UUID_LOWER, "positive integer ids"),
    (USER_MULTI, [], "at least one user"),
    (USER_MULTI, [7, 0], "positive integer ids"),
    (USER_MULTI, [7, False], "positive integer ids"),
    (USER_MULTI, list(range(1, 102)), "at most 100 users"),
    # relation to work items
    (WORK_ITEM_SINGLE, "not-a-uuid", "work items are given by their UUIDs"),
    (WORK_ITEM_SINGLE, 7, "work items are given by their UUIDs"),
    (WORK_ITEM_SINGLE, [7], "work items are given by their UUIDs"),
    (WORK_ITEM_SINGLE, [UUID_LOWER, UUID_OTHER], "exactly one target"),
    (WORK_ITEM_SINGLE, [], "at least one work item"),
    (WORK_ITEM_MULTI, [UUID_LOWER, "nope"], "work items are given by their UUIDs"),
    (WORK_ITEM_MULTI, [], "at least one work item"),
    # relation to users on work items
    (WI_USER_SINGLE, 7, "users are given by their UUIDs"),
    (WI_USER_SINGLE, [7], "users are given by their UUIDs"),
    (WI_USER_SINGLE, "7", "users are given by their UUIDs"),
    (WI_USER_SINGLE, [UUID_LOWER, UUID_OTHER], "exactly one target"),
    (WI_USER_SINGLE, [], "at least one user"),
    (WI_USER_MULTI, [UUID_LOWER, 7], "users are given by their UUIDs"),
]


def _case_id(case: tuple[FieldDefinition, Any, Any]) -> str:
    definition, raw, _ = case
    kind = str(definition.value_type)
    if definition.relation_target is not None:
        kind += f"-{definition.relation_target}-{'multi' if definition.relation_multi else 'single'}"
    text = repr(raw)
    return f"{kind}:{text if len(text) <= 40 else text[:37] + '...'}"


@pytest.mark.parametrize("case", VALID, ids=[_case_id(c) for c in VALID])
def test_valid_value_has_its_canonical_form(case: tuple[FieldDefinition, Any, Any]) -> None:
    definition, raw, canonical = case
    result = validate_value(definition, raw)
    assert result == canonical
    assert type(result) is type(canonical)
    if isinstance(canonical, list):
        assert [type(item) for item in result] == [type(item) for item in canonical]


@pytest.mark.parametrize("case", INVALID, ids=[_case_id(c) for c in INVALID])
def test_invalid_value_is_refused(case: tuple[FieldDefinition, Any, str]) -> None:
    definition, raw, message = case
    with pytest.raises(InvalidValue, match=re.escape(message)):
        validate_value(definition, raw)


def test_every_value_type_has_valid_and_invalid_cases() -> None:
    assert {d.value_type for d, _, _ in VALID} == set(ValueType)
    assert {d.value_type for d, _, _ in INVALID} == set(ValueType)


@pytest.mark.parametrize("definition", [
    *(definition_for(t) for t in ValueType if t is not ValueType.RELATION),
    USER_SINGLE, USER_MULTI, WORK_ITEM_SINGLE, WORK_ITEM_MULTI,
], ids=lambda d: f"{d.value_type}-{d.relation_target}-{d.relation_multi}")
def test_none_is_refused_for_every_type(definition: FieldDefinition) -> None:
    with pytest.raises(InvalidValue, match="a value is required; delete the value to clear it"):
        validate_value(definition, None)


def test_url_with_trailing_newline_is_refused() -> None:
    # Whitespace is refused everywhere else in a URL; a trailing newline must be too, not stored as given.
    with pytest.raises(InvalidValue, match="http or https URL"):
        validate_value(field(ValueType.URL), "https://example.com/path\n")


def test_string_length_limit_is_exact() -> None:
    assert validate_value(field(ValueType.STRING), "é" * MAX_STRING_LENGTH) == "é" * MAX_STRING_LENGTH
    with pytest.raises(InvalidValue):
        validate_value(field(ValueType.STRING), "é" * (MAX_STRING_LENGTH + 1))


def test_multi_is_a_fresh_list_not_the_input() -> None:
    raw = [1, 2]
    result = validate_value(field(ValueType.MULTI), raw)
    assert result == [1, 2]
    assert result is not raw


def test_multi_limit_counts_items_as_sent() -> None:
    # Exactly MAX_ITEMS items is fine; the limit applies to the list sent.
    assert validate_value(field(ValueType.MULTI), [1] * MAX_ITEMS) == [1]


def test_single_unknown_choice_names_only_the_unknown_id() -> None:
    with pytest.raises(InvalidValue) as raised:
        validate_value(field(ValueType.SINGLE), [12345])
    assert str(raised.value) == "not a choice of this field: 12345"


def test_choice_field_with_no_choices_refuses_everything() -> None:
    with pytest.raises(InvalidValue, match="not a choice of this field: 1"):
        validate_value(field(ValueType.MULTI, choice_ids=frozenset()), [1])


# required fields: no blank values (but false and 0 are values)

REQUIRED_VALID: list[tuple[FieldDefinition, Any, Any]] = [
    (field(ValueType.STRING, required=True), "x", "x"),
    (field(ValueType.STRING, required=True), "  x  ", "  x  "),
    (field(ValueType.FILE, required=True), "a.pdf", "a.pdf"),
    (field(ValueType.BOOLEAN, required=True), False, False),
    (field(ValueType.BOOLEAN, required=True), True, True),
    (field(ValueType.NUMBER, required=True), 0, 0),
    (field(ValueType.NUMBER, required=True), 0.0, 0.0),
    (field(ValueType.CURRENCY, required=True), [0, "USD"], [0, "USD"]),
    (field(ValueType.DATE, required=True), "2024-01-02", "2024-01-02"),
    (field(ValueType.DATETIME, required=True), "2024-01-02", "2024-01-02"),
    (field(ValueType.SINGLE, required=True), [1], [1]),
    (field(ValueType.MULTI, required=True), [CHOICE_1], [1]),
]


@pytest.mark.parametrize("case", REQUIRED_VALID, ids=[_case_id(c) for c in REQUIRED_VALID])
def test_required_field_keeps_values_that_are_not_blank(case: tuple[FieldDefinition, Any, Any]) -> None:
    definition, raw, canonical = case
    result = validate_value(definition, raw)
    assert result == canonical
    assert type(result) is type(canonical)


@pytest.mark.parametrize("raw", ["", " ", "\t\n", "\u00a0\u2003"], ids=repr)
def test_required_string_refuses_blank(raw: str) -> None:
    with pytest.raises(InvalidValue, match=r"^is required: a blank value is refused$"):
        validate_value(field(ValueType.STRING, required=True), raw)
    assert validate_value(field(ValueType.STRING), raw) == raw  # fine when not required


@pytest.mark.parametrize("raw", ["", "   "], ids=repr)
@pytest.mark.parametrize("value_type", [ValueType.URL, ValueType.EMAIL, ValueType.FILE])
def test_required_textual_fields_refuse_blank(value_type: ValueType, raw: str) -> None:
    with pytest.raises(InvalidValue):
        validate_value(field(value_type, required=True), raw)


@pytest.mark.parametrize("value_type", sorted(ValueType))
def test_none_is_refused_for_required_fields_too(value_type: ValueType) -> None:
    definition = field(value_type, required=True,
                       relation_target=RelationTarget.USER if value_type is ValueType.RELATION else None)
    with pytest.raises(InvalidValue, match="a value is required; delete the value to clear it"):
        validate_value(definition, None)


# validation rules on writes

# (definition with rules, raw, canonical or None if refused, part of the message if refused)
RULED: list[tuple[FieldDefinition, Any, Any, str]] = [
    (field(ValueType.NUMBER, rules={"min": 0, "max": 10}), 10, 10, ""),
    (field(ValueType.NUMBER, rules={"min": 0, "max": 10}), 0, 0, ""),
    (field(ValueType.NUMBER, rules={"min": 0, "max": 10}), 11, None, "must be at most 10"),
    (field(ValueType.NUMBER, rules={"min": 0, "max": 10}), -0.5, None, "must be at least 0"),
    (field(ValueType.CURRENCY, rules={"max": 100}), [100, "USD"], [100, "USD"], ""),
    (field(ValueType.CURRENCY, rules={"max": 100}), [100.5, "USD"], None, "must be at most 100"),
    (field(ValueType.STRING, rules={"min_length": 2, "max_length": 3}), "abc", "abc", ""),
    (field(ValueType.STRING, rules={"min_length": 2, "max_length": 3}), "a", None, "at least 2 characters long"),
    (field(ValueType.STRING, rules={"min_length": 2, "max_length": 3}), "abcd", None, "at most 3 characters long"),
    (field(ValueType.STRING, rules={"regex": r"[A-Z]{3}-\d+"}), "ABC-12", "ABC-12", ""),
    (field(ValueType.STRING, rules={"regex": r"[A-Z]{3}-\d+"}), "xABC-12", None,
     r"must match the pattern [A-Z]{3}-\d+"),
    # the rule sees the canonical value: the email's domain lowercased
    (field(ValueType.EMAIL, rules={"regex": r".*@example\.com"}), "Bob@EXAMPLE.COM", "Bob@example.com", ""),
    (field(ValueType.URL, rules={"max_length": 18}), "https://example.com", None, "at most 18 characters"),
    (field(ValueType.DATE, rules={"min_date": "2024-01-01"}), "2024-01-01", "2024-01-01", ""),
    (field(ValueType.DATE, rules={"min_date": "2024-01-01"}), "2023-12-31", None, "on or after 2024-01-01"),
    (field(ValueType.DATETIME, rules={"max_date": "2024-12-31"}), "2024-12-31 23:59", "2024-12-31T23:59:00", ""),
    (field(ValueType.DATETIME, rules={"max_date": "2024-12-31"}), "2024-12-31", "2024-12-31", ""),
    (field(ValueType.DATETIME, rules={"max_date": "2024-12-31"}), "2025-01-01", None, "on or before 2024-12-31"),
    (field(ValueType.DATETIME, rules={"max_date": "2024-12-31"}), "2025-01-01T00:00:00+05:00", None,
     "on or before 2024-12-31"),
    # max_count counts the canonical set, after duplicates (and an id with its UUID) collapse
    (field(ValueType.MULTI, rules={"max_count": 2}), [1, 2, 1, 2], [1, 2], ""),
    (field(ValueType.MULTI, rules={"max_count": 2}), [1, CHOICE_1, 40], [1, 40], ""),
    (field(ValueType.MULTI, rules={"max_count": 2}), [1, 2, 40], None, "must list at most 2 items"),
    (field(ValueType.RELATION, relation_target=RelationTarget.USER, relation_multi=True, rules={"max_count": 1}),
     [7, 7], [7], ""),
    (field(ValueType.RELATION, relation_target=RelationTarget.USER, relation_multi=True, rules={"max_count": 1}),
     [7, 8], None, "must list at most 1 items"),
]


@pytest.mark.parametrize("case", RULED, ids=[_case_id(c[:3]) + ("" if c[2] is not None else ":refused") for c in RULED])
def test_field_rules_apply_to_writes(case: tuple[FieldDefinition, Any, Any, str]) -> None:
    definition, raw, canonical, message = case
    if canonical is not None:
        assert validate_value(definition, raw) == canonical
        return
    with pytest.raises(InvalidValue, match=re.escape(message)) as raised:
        validate_value(definition, raw)
    assert type(raised.value) is InvalidValue  # the rule's violation is the client's InvalidValue


def test_type_is_checked_before_rules() -> None:
    with pytest.raises(InvalidValue, match=r"^must be a number$"):
        validate_value(field(ValueType.NUMBER, rules={"min": 0}), "5")


def test_pattern_timeout_is_an_invalid_value() -> None:
    with pytest.raises(InvalidValue, match="could not be checked against the pattern"):
        validate_value(field(ValueType.STRING, rules={"regex": "(a|aa)+b"}), "a" * 60)


def test_required_and_rules_together() -> None:
    definition = field(ValueType.STRING, required=True, rules={"max_length": 3})
    assert validate_value(definition, "abc") == "abc"
    with pytest.raises(InvalidValue, match="is required"):
        validate_value(definition, "  ")
    with pytest.raises(InvalidValue, match="at most 3 characters"):
        validate_value(definition, "abcd")


def test_choices_by_uuid_store_integer_ids() -> None:
    result = validate_value(field(ValueType.MULTI), [CHOICE_40.upper(), 2, CHOICE_1])
    assert result == [40, 2, 1]
    assert all(type(item) is int for item in result)


def test_users_stay_integers_off_work_items() -> None:
    for subject_type in INTEGER_ID_SUBJECTS:
        definition = field(ValueType.RELATION, relation_target=RelationTarget.USER, subject_type=subject_type)
        assert validate_value(definition, 7) == [7]
        with pytest.raises(InvalidValue, match="positive integer ids"):
            validate_value(definition, UUID_LOWER)


# canonical_subject_id / render_subject_id

INTEGER_SUBJECTS = sorted(INTEGER_ID_SUBJECTS)


def test_only_work_items_are_identified_by_uuid() -> None:
    assert set(SubjectType) - INTEGER_ID_SUBJECTS == {SubjectType.WORK_ITEM}


@pytest.mark.parametrize("subject_type", INTEGER_SUBJECTS)
@pytest.mark.parametrize(("raw", "canonical"), [
    (42, "42"),
    ("42", "42"),
    (1, "1"),
    ("1", "1"),
    ("007", "7"),
    (2**63 - 1, str(2**63 - 1)),
    (str(2**63 - 1), str(2**63 - 1)),
])
def test_integer_subject_id_is_canonical_text(subject_type: SubjectType, raw: Any, canonical: str) -> None:
    assert canonical_subject_id(subject_type, raw) == canonical


@pytest.mark.parametrize("subject_type", INTEGER_SUBJECTS)
@pytest.mark.parametrize("raw", [
    0, -1, "0", "-1", "+1", True, False, "abc", "", " 42", "42 ", "4.0", 4.0, 2**63, str(2**63), None,
    [42], "\u0664\u0662",  # Arabic-Indic digits: isdigit() but not ASCII
    UUID_LOWER,
], ids=repr)
def test_bad_integer_subject_id_is_refused(subject_type: SubjectType, raw: Any) -> None:
    with pytest.raises(InvalidValue, match=f"^{subject_type} ids are positive integers$"):
        canonical_subject_id(subject_type, raw)


@pytest.mark.parametrize("digits", [4300, 4301, 10_000])
def test_overlong_digit_string_subject_id_is_refused_as_invalid(digits: int) -> None:
    # A digit string long enough to trip Python's int-from-str limit must still be an InvalidValue
    # (a client error), not a bare ValueError that escapes validation.
    with pytest.raises(InvalidValue, match="Story ids are positive integers"):
        canonical_subject_id(SubjectType.STORY, "9" * digits)


@pytest.mark.parametrize(("raw", "canonical"), [
    (UUID_LOWER, UUID_LOWER),
    (UUID_UPPER, UUID_LOWER),
    (UUID_BARE, UUID_LOWER),
    ("urn:uuid:" + UUID_LOWER, UUID_LOWER),
])
def test_work_item_subject_id_is_canonical_uuid(raw: str, canonical: str) -> None:
    assert canonical_subject_id(SubjectType.WORK_ITEM, raw) == canonical


@pytest.mark.parametrize("raw", [42, "42", 0, True, None, "not-a-uuid", UUID_LOWER + "0", [UUID_LOWER]], ids=repr)
def test_bad_work_item_subject_id_is_refused(raw: Any) -> None:
    with pytest.raises(InvalidValue, match=r"^WorkItem ids are UUIDs$"):
        canonical_subject_id(SubjectType.WORK_ITEM, raw)


@pytest.mark.parametrize("subject_type", INTEGER_SUBJECTS)
@pytest.mark.parametrize("raw", [42, "42", "0042", 2**63 - 1])
def test_integer_subject_id_round_trips_to_int(subject_type: SubjectType, raw: Any) -> None:
    stored = canonical_subject_id(subject_type, raw)
    rendered = render_subject_id(subject_type, stored)
    assert type(rendered) is int
    assert rendered == int(raw)
    assert canonical_subject_id(subject_type, rendered) == stored


@pytest.mark.parametrize("raw", [UUID_LOWER, UUID_UPPER, UUID_BARE])
def test_work_item_subject_id_round_trips_to_string(raw: str) -> None:
    stored = canonical_subject_id(SubjectType.WORK_ITEM, raw)
    rendered = render_subject_id(SubjectType.WORK_ITEM, stored)
    assert rendered == UUID_LOWER
    assert type(rendered) is str
    assert canonical_subject_id(SubjectType.WORK_ITEM, rendered) == stored


# edits of a multi choice set: {"add": [...], "remove": [...]}

MULTI = field(ValueType.MULTI)
WIDE_MULTI = field(ValueType.MULTI, choice_ids=frozenset(range(1, 201)))


def edit(add: tuple[int, ...] = (), remove: tuple[int, ...] = ()) -> SetEdit:
    return SetEdit(add, remove)


# (raw, the edit it is)
EDITS: list[tuple[Any, SetEdit]] = [
    ({"add": [2]}, edit(add=(2,))),
    ({"remove": [2]}, edit(remove=(2,))),
    ({"add": [3, 1], "remove": [2]}, edit(add=(3, 1), remove=(2,))),
    ({"add": [], "remove": []}, edit()),
    ({"add": []}, edit()),
    # by UUID, any spelling, or ids and UUIDs mixed: integer ids, first-seen order
    ({"add": [CHOICE_40, 1]}, edit(add=(40, 1))),
    ({"add": [CHOICE_2.upper()], "remove": [CHOICE_1.replace("-", "")]}, edit(add=(2,), remove=(1,))),
    ({"remove": [CHOICE_40, 3]}, edit(remove=(40, 3))),
    # duplicates collapse, an id and its own UUID are one choice
    ({"add": [3, 1, 3, CHOICE_1]}, edit(add=(3, 1))),
    ({"remove": [2, CHOICE_2, CHOICE_2.upper(), 2]}, edit(remove=(2,))),
    # remove may name a choice that is no longer active (by id or UUID); add may not
    ({"remove": [5]}, edit(remove=(5,))),
    ({"remove": [CHOICE_INACTIVE]}, edit(remove=(5,))),
    ({"add": [1], "remove": [CHOICE_INACTIVE]}, edit(add=(1,), remove=(5,))),
]


# (raw, part of the message)
BAD_EDITS: list[tuple[Any, str]] = [
    # the shape
    ({}, 'an edit of the set is {"add": [choices], "remove": [choices]}'),
    ({"add": [1], "replace": [2]}, 'an edit of the set is {"add": [choices], "remove": [choices]}'),
    ({"set": [1]}, 'an edit of the set is {"add": [choices], "remove": [choices]}'),
    ({"Add": [1]}, 'an edit of the set is {"add": [choices], "remove": [choices]}'),
    ({"add": 1}, "add and remove are lists of at most 100 choices"),
    ({"add": CHOICE_1}, "add and remove are lists of at most 100 choices"),
    ({"add": None}, "add and remove are lists of at most 100 choices"),
    ({"add": {"x": 1}}, "add and remove are lists of at most 100 choices"),
    ({"remove": 2}, "add and remove are lists of at most 100 choices"),
    ({"remove": None}, "add and remove are lists of at most 100 choices"),
    ({"add": [1], "remove": "2"}, "add and remove are lists of at most 100 choices"),
    # the choices' form
    ({"add": [True]}, "choices are given by their integer ids or UUIDs"),
    ({"add": ["2"]}, "choices are given by their integer ids or UUIDs"),
    ({"add": [2.0]}, "choices are given by their integer ids or UUIDs"),
    ({"add": [None]}, "choices are given by their integer ids or UUIDs"),
    ({"add": [[1]]}, "choices are given by their integer ids or UUIDs"),
    ({"remove": ["not-a-uuid"]}, "choices are given by their integer ids or UUIDs"),
    ({"remove": [False]}, "choices are given by their integer ids or UUIDs"),
    # add names active choices only
    ({"add": [9]}, "not a choice of this field: 9"),
    ({"add": [1, 8, 9]}, "not a choice of this field: 8, 9"),
    ({"add": [5]}, "not a choice of this field: 5"),
    ({"add": [CHOICE_INACTIVE]}, f"not a choice of this field: {CHOICE_INACTIVE}"),
    ({"add": [UUID_UPPER]}, f"not a choice of this field: {UUID_LOWER}"),
    # remove names known choices only
    ({"remove": [UUID_OTHER]}, f"not a choice of this field: {UUID_OTHER}"),
    ({"add": [1], "remove": [UUID_UPPER]}, f"not a choice of this field: {UUID_LOWER}"),
    # a choice on both sides, however it is named
    ({"add": [1], "remove": [1]}, "cannot both add and remove 1"),
    ({"add": [CHOICE_1], "remove": [1]}, "cannot both add and remove 1"),
    ({"add": [2], "remove": [CHOICE_2.upper()]}, "cannot both add and remove 2"),
    ({"add": [1, 2, 3], "remove": [3, 40, 1]}, "cannot both add and remove 1, 3"),
]


@pytest.mark.parametrize(("raw", "expected"), EDITS, ids=[repr(raw) for raw, _ in EDITS])
def test_a_dict_on_a_multi_field_is_an_edit_of_the_set(raw: Any, expected: SetEdit) -> None:
    result = validate_value(MULTI, raw)
    assert type(result) is SetEdit
    assert result == expected
    assert type(result.add) is tuple and type(result.remove) is tuple
    assert all(type(choice) is int for choice in result.add + result.remove)


@pytest.mark.parametrize(("raw", "message"), BAD_EDITS, ids=[repr(raw) for raw, _ in BAD_EDITS])
def test_a_bad_edit_of_the_set_is_refused(raw: Any, message: str) -> None:
    with pytest.raises(InvalidValue, match=re.escape(message)):
        validate_value(MULTI, raw)


def test_an_edit_names_every_unknown_choice_exactly() -> None:
    with pytest.raises(InvalidValue) as raised:
        validate_value(MULTI, {"add": [1, 9, CHOICE_INACTIVE]})
    assert str(raised.value) == f"not a choice of this field: 9, {CHOICE_INACTIVE}"


@pytest.mark.parametrize("side", ["add", "remove"])
def test_an_edit_takes_at_most_max_items_per_side_as_sent(side: str) -> None:
    choices = list(range(1, MAX_ITEMS + 1))
    assert getattr(validate_value(WIDE_MULTI, {side: choices}), side) == tuple(choices)
    with pytest.raises(InvalidValue, match="add and remove are lists of at most 100 choices"):
        validate_value(WIDE_MULTI, {side: [*choices, MAX_ITEMS + 1]})
    with pytest.raises(InvalidValue, match="add and remove are lists of at most 100 choices"):
        validate_value(WIDE_MULTI, {side: [1] * (MAX_ITEMS + 1)})  # counted as sent, before collapsing


def test_an_edit_is_not_checked_against_the_rules_until_applied() -> None:
    # How many choices the set ends with depends on the set it is applied to.
    definition = field(ValueType.MULTI, rules={"max_count": 1})
    assert validate_value(definition, {"add": [1, 2, 3]}) == edit(add=(1, 2, 3))
    with pytest.raises(InvalidValue, match="must list at most 1 items"):
        validate_value(definition, [1, 2, 3])  # whereas a whole set is checked at once


def test_an_edit_of_a_required_multi_field_is_an_edit_too() -> None:
    assert validate_value(field(ValueType.MULTI, required=True), {"remove": [1]}) == edit(remove=(1,))


# (definition, the refusal of its own type's validator)
DICT_ON_OTHER_TYPES: list[tuple[FieldDefinition, str]] = [
    (field(ValueType.STRING), "must be a string"),
    (field(ValueType.URL), "must be a string"),
    (field(ValueType.EMAIL), "must be a string"),
    (field(ValueType.FILE), "must be a string"),
    (field(ValueType.DATE), "YYYY-MM-DD"),
    (field(ValueType.DATETIME), "ISO 8601 date and time"),
    (field(ValueType.NUMBER), "must be a number"),
    (field(ValueType.CURRENCY), '[amount, "currency code"]'),
    (field(ValueType.BOOLEAN), "true or false"),
    (field(ValueType.SINGLE), "choices are given by their integer ids or UUIDs"),
    (USER_SINGLE, "positive integer ids"),
    (USER_MULTI, "positive integer ids"),
    (WORK_ITEM_MULTI, "work items are given by their UUIDs"),
    (WI_USER_MULTI, "users are given by their UUIDs"),
]


@pytest.mark.parametrize(("definition", "message"), DICT_ON_OTHER_TYPES,
                         ids=[_case_id((d, "edit", None)) for d, _ in DICT_ON_OTHER_TYPES])
@pytest.mark.parametrize("raw", [{"add": [1]}, {"remove": [1]}, {"add": [1], "remove": [2]}], ids=repr)
def test_a_dict_on_a_field_that_is_not_multi_choice_is_refused_by_its_type(
    definition: FieldDefinition, message: str, raw: Any
) -> None:
    with pytest.raises(InvalidValue, match=re.escape(message)):
        validate_value(definition, raw)


def test_every_type_but_multi_refuses_an_edit() -> None:
    assert {d.value_type for d, _ in DICT_ON_OTHER_TYPES} == set(ValueType) - {ValueType.MULTI}


# apply_edit: removals first, then additions appended in order, no duplicates

# (definition, edit, current, result)
APPLIED: list[tuple[FieldDefinition, SetEdit, list[Any] | None, list[Any]]] = [
    (MULTI, edit(add=(2,)), None, [2]),
    (MULTI, edit(add=(3, 1, 2)), None, [3, 1, 2]),
    (MULTI, edit(add=(2,)), [1], [1, 2]),
    (MULTI, edit(add=(40, 2)), [3, 1], [3, 1, 40, 2]),
    # what is there already stays where it is
    (MULTI, edit(add=(1,)), [3, 1], [3, 1]),
    (MULTI, edit(add=(2, 3, 40)), [3, 1], [3, 1, 2, 40]),
    (MULTI, edit(remove=(1,)), [3, 1, 2], [3, 2]),
    (MULTI, edit(remove=(3, 2)), [3, 1, 2], [1]),
    # removing what is not there changes nothing
    (MULTI, edit(remove=(40,)), [3, 1], [3, 1]),
    # removals first, then additions
    (MULTI, edit(add=(40,), remove=(1,)), [1, 2, 3], [2, 3, 40]),
    (MULTI, edit(add=(1, 2), remove=(3,)), [3], [1, 2]),
    # validation never makes such an edit, but applied on its own a choice removed and added moves to the end
    (MULTI, edit(add=(1,), remove=(1,)), [1, 2], [2, 1]),
    # an empty edit keeps the set
    (MULTI, edit(), [2, 1], [2, 1]),
    # a choice no longer active stays unless removed
    (MULTI, edit(add=(2,)), [5, 1], [5, 1, 2]),
    (MULTI, edit(add=(2,), remove=(5,)), [5, 1], [1, 2]),
    # the rules see the result: removals make room for additions
    (field(ValueType.MULTI, rules={"max_count": 2}), edit(add=(3,), remove=(1,)), [1, 2], [2, 3]),
    (field(ValueType.MULTI, rules={"max_count": 2}), edit(add=(1,)), [1, 2], [1, 2]),
    (field(ValueType.MULTI, rules={"max_count": 2}), edit(add=(1, 2)), None, [1, 2]),
    (field(ValueType.MULTI, required=True), edit(remove=(1,)), [1, 2], [2]),
]


# (definition, edit, current, part of the message)
BAD_APPLIED: list[tuple[FieldDefinition, SetEdit, list[Any] | None, str]] = [
    (MULTI, edit(remove=(1,)), [1], "the edit would leave no choice; delete the value to clear it"),
    (MULTI, edit(remove=(1, 2)), [2, 1], "the edit would leave no choice; delete the value to clear it"),
    (MULTI, edit(remove=(1,)), None, "the edit would leave no choice; delete the value to clear it"),
    (MULTI, edit(), None, "the edit would leave no choice; delete the value to clear it"),
    (MULTI, edit(), [], "the edit would leave no choice; delete the value to clear it"),
    (field(ValueType.MULTI, required=True), edit(remove=(1,)), [1],
     "the edit would leave no choice; delete the value to clear it"),
    (field(ValueType.MULTI, rules={"max_count": 2}), edit(add=(3,)), [1, 2], "must list at most 2 items"),
    (field(ValueType.MULTI, rules={"max_count": 2}), edit(add=(1, 2, 3)), None, "must list at most 2 items"),
    (field(ValueType.MULTI, rules={"max_count": 2}), edit(add=(40,), remove=(5,)), [1, 2],
     "must list at most 2 items"),
    # a ValueRules built directly is honoured too
    (FieldDefinition(7, 1, "Field", SubjectType.STORY, ValueType.MULTI, choice_ids=CHOICES,
                     rules=ValueRules(max_count=1)), edit(add=(2,)), [1], "must list at most 1 items"),
    (WIDE_MULTI, edit(add=(MAX_ITEMS + 1,)), list(range(1, MAX_ITEMS + 1)), "must list at most 100 choices"),
]


def _apply_id(case: tuple[FieldDefinition, SetEdit, Any, Any]) -> str:
    definition, applied, current, _ = case
    rules = "" if definition.rules is None else f"{definition.rules.as_json()}:"
    current_text = repr(current) if current is None or len(current) <= 5 else f"[{len(current)} choices]"
    return f"{rules}+{list(applied.add)}-{list(applied.remove)}:{current_text}"


@pytest.mark.parametrize("case", APPLIED, ids=[_apply_id(c) for c in APPLIED])
def test_an_edit_applied_to_a_set(case: tuple[FieldDefinition, SetEdit, list[Any] | None, list[Any]]) -> None:
    definition, applied, current, result = case
    snapshot = None if current is None else list(current)
    assert apply_edit(definition, applied, current) == result
    assert current == snapshot  # the current set is not changed in place


@pytest.mark.parametrize("case", BAD_APPLIED, ids=[_apply_id(c) for c in BAD_APPLIED])
def test_an_edit_that_does_not_fit_is_refused(case: tuple[FieldDefinition, SetEdit, list[Any] | None, str]) -> None:
    definition, applied, current, message = case
    with pytest.raises(InvalidValue, match=re.escape(message)) as raised:
        apply_edit(definition, applied, current)
    assert type(raised.value) is InvalidValue  # a rule's violation is the client's InvalidValue


def test_an_applied_edit_is_a_fresh_list_without_duplicates() -> None:
    current = [1, 2]
    result = apply_edit(MULTI, edit(add=(2, 3, 1, 40)), current)
    assert result == [1, 2, 3, 40]
    assert len(result) == len(set(result))
    assert result is not current
    assert current == [1, 2]


def test_a_validated_edit_applies_to_the_set_it_finds() -> None:
    # The whole path: what a client sends, by UUIDs and ids, applied to two different sets.
    validated = validate_value(MULTI, {"add": [CHOICE_40, 2], "remove": [CHOICE_1]})
    assert isinstance(validated, SetEdit)
    assert apply_edit(MULTI, validated, [1, 3]) == [3, 40, 2]
    assert apply_edit(MULTI, validated, [2, 1]) == [2, 40]
    assert apply_edit(MULTI, validated, None) == [40, 2]
