"""Values through the Plane face: every property type written and read back, refusals that store nothing,
replace semantics, required properties, validation rules, options' and properties' state, PATCH and DELETE,
the listing of a work item's values, and external references."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from support import Stack, Workspace, add_users, create_workspace
from support.plane import WORK_ITEM, Plane, a_uuid, new_project

OTHER_WORK_ITEM = "9a0e4f6c-2b1d-4c8e-a7f3-5d6b8c9e0a12"
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
U3 = "33333333-3333-4333-8333-333333333333"


@pytest.fixture
async def workspace(db: asyncpg.Connection[Any]) -> Workspace:
    """'acme' with a key, and users U1, U2 and U3: the USER relations below name them, and a user relation names
    users of its workspace (issue 13, bug 2)."""
    created = await create_workspace(db, "acme")
    await add_users(db, created.id, uuids=[U1, U2, U3])
    return created
UNKNOWN = "44444444-4444-4444-8444-444444444444"  # never an option's id

VALUE_KEYS = {"id", "property_id", "issue_id", "value", "value_type", "external_id", "external_source",
              "created_at", "updated_at"}

#: The properties under test, by a short name: each Plane type, and OPTION / RELATION single and multi.
KINDS: dict[str, dict[str, Any]] = {
    "TEXT": {"property_type": "TEXT"},
    "URL": {"property_type": "URL"},
    "EMAIL": {"property_type": "EMAIL"},
    "FILE": {"property_type": "FILE"},
    "DATETIME": {"property_type": "DATETIME"},
    "DECIMAL": {"property_type": "DECIMAL"},
    "BOOLEAN": {"property_type": "BOOLEAN"},
    "OPTION": {"property_type": "OPTION"},
    "OPTION-multi": {"property_type": "OPTION", "is_multi": True},
    "USER": {"property_type": "RELATION", "relation_type": "USER"},
    "USER-multi": {"property_type": "RELATION", "relation_type": "USER", "is_multi": True},
    "ISSUE": {"property_type": "RELATION", "relation_type": "ISSUE"},
    "ISSUE-multi": {"property_type": "RELATION", "relation_type": "ISSUE", "is_multi": True},
}
OPTION_NAMES = ("red", "green", "blue")


@dataclass(frozen=True)
class Opt:
    """An option of the property under test, by name; it becomes the option's UUID once created."""

    name: str


RED, GREEN, BLUE = Opt("red"), Opt("green"), Opt("blue")


def resolve(value: Any, options: dict[str, str]) -> Any:
    """``value`` with every :class:`Opt` replaced by its option's UUID."""
    if isinstance(value, Opt):
        return options[value.name]
    if isinstance(value, list):
        return [resolve(item, options) for item in value]
    return value


@dataclass
class Subject:
    """A property under test (with options red, green, blue if it is an OPTION), in its own project."""

    plane: Plane
    prop: dict[str, Any]
    options: dict[str, str]

    @property
    def multi(self) -> bool:
        return bool(self.prop["is_multi"])

    def resolve(self, value: Any) -> Any:
        return resolve(value, self.options)

    async def write(self, value: Any, method: str = "POST", work_item: str = WORK_ITEM,
                    **extra: Any) -> tuple[int, Any]:
        status, body, _ = await self.plane.write(self.prop, self.resolve(value), work_item, method, **extra)
        return status, body

    async def read(self, work_item: str = WORK_ITEM) -> tuple[int, Any]:
        status, body, _ = await self.plane.request("GET", self.plane.values_path(work_item, self.prop["id"]))
        return status, body

    async def delete(self, work_item: str = WORK_ITEM) -> tuple[int, Any]:
        status, body, _ = await self.plane.request("DELETE", self.plane.values_path(work_item, self.prop["id"]))
        return status, body


async def subject(stack: Stack, workspace: Workspace, kind: str, **spec: Any) -> Subject:
    """A new project holding one property of ``kind`` (and ``spec``)."""
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(**KINDS[kind], **spec)
    options: dict[str, str] = {}
    if prop["property_type"] == "OPTION":
        for name in OPTION_NAMES:
            options[name] = (await plane.create_option(prop, name))["id"]
    return Subject(plane, prop, options)


def assert_value_object(obj: Any, prop: dict[str, Any], work_item: str = WORK_ITEM) -> None:
    """One value object, in Plane's shape, of ``prop`` on ``work_item``."""
    assert isinstance(obj, dict) and set(obj) == VALUE_KEYS, obj
    uuid.UUID(obj["id"])
    assert obj["property_id"] == prop["id"], obj
    assert obj["issue_id"] == work_item, obj
    assert obj["value_type"] == prop["property_type"], obj
    datetime.fromisoformat(obj["created_at"])
    datetime.fromisoformat(obj["updated_at"])


def objects_of(prop: dict[str, Any], body: Any, work_item: str = WORK_ITEM) -> list[dict[str, Any]]:
    """The value objects of an answer (a list for a multi property, else one object), each checked."""
    if prop["is_multi"]:
        assert isinstance(body, list), body
        objects = body
    else:
        assert isinstance(body, dict), body
        objects = [body]
    for obj in objects:
        assert_value_object(obj, prop, work_item)
    return objects


def ids_of(prop: dict[str, Any], body: Any) -> set[str]:
    """The value ids of an answer."""
    return {obj["id"] for obj in objects_of(prop, body)}


def same(got: Any, expected: Any) -> bool:
    """Equal, and a boolean only where a boolean is expected (``0 == False`` in Python)."""
    return got == expected and isinstance(got, bool) == isinstance(expected, bool)


def assert_holds(prop: dict[str, Any], body: Any, expected: Any) -> None:
    """The answer holds ``expected``: the value, or for a multi property exactly this set, no duplicates."""
    objects = objects_of(prop, body)
    if prop["is_multi"]:
        items = expected if isinstance(expected, list) else [expected]
        got = [obj["value"] for obj in objects]
        assert len(got) == len(set(got)) and set(got) == set(items), (got, items)
        assert len({obj["id"] for obj in objects}) == len(objects), objects
    else:
        assert same(body["value"], expected), (body["value"], expected)


def assert_plane_error(status: int, body: Any, expected_status: int = 400) -> None:
    """An error in Plane's 400 shape: an object mapping field names to lists of messages."""
    assert status == expected_status, body
    assert isinstance(body, dict) and body, body
    for messages in body.values():
        assert isinstance(messages, list) and messages, body
        assert all(isinstance(m, str) and m for m in messages), body


def assert_refused(answer: tuple[int, Any]) -> None:
    """400, naming ``value``."""
    status, body = answer
    assert_plane_error(status, body)
    assert "value" in body, body


async def assert_no_value(s: Subject, work_item: str = WORK_ITEM) -> None:
    """Nothing is stored: 404 (a multi property may answer its empty list instead)."""
    status, body = await s.read(work_item)
    if s.multi and status == 200:
        assert body == [], body
    else:
        assert status == 404, body


# --- every type: valid writes -------------------------------------------------------------------------

VALID = [
    ("TEXT", "hello, world", "hello, world"),
    ("TEXT", "ünïcödé ✓ 日本語\nsecond line", "ünïcödé ✓ 日本語\nsecond line"),
    ("URL", "https://example.com/a/b?c=1#d", "https://example.com/a/b?c=1#d"),
    ("URL", "http://localhost:8080/x", "http://localhost:8080/x"),
    ("EMAIL", "ann.lee@example.com", "ann.lee@example.com"),
    ("FILE", "reports/2024 summary.pdf", "reports/2024 summary.pdf"),
    ("FILE", "https://cdn.example.com/f/1.png", "https://cdn.example.com/f/1.png"),
    ("DATETIME", "2024-02-29", "2024-02-29"),
    ("DATETIME", "2024-05-01 10:30:45", "2024-05-01 10:30:45"),
    ("DATETIME", "2024-05-01 00:00:00", "2024-05-01 00:00:00"),
    ("DATETIME", "1999-12-31 23:59:59", "1999-12-31 23:59:59"),
    ("DECIMAL", 42, 42),
    ("DECIMAL", -3.25, -3.25),
    ("DECIMAL", 0, 0),
    ("DECIMAL", 123456789.125, 123456789.125),
    ("BOOLEAN", True, True),
    ("BOOLEAN", False, False),
    ("OPTION", GREEN, GREEN),
    ("OPTION-multi", [BLUE, RED, BLUE], [BLUE, RED]),
    ("OPTION-multi", [RED, GREEN, BLUE], [RED, GREEN, BLUE]),
    ("OPTION-multi", GREEN, [GREEN]),
    ("USER", U1, U1),
    ("USER-multi", [U1, U2, U1], [U1, U2]),
    ("USER-multi", U3, [U3]),
    ("ISSUE", U2, U2),
    ("ISSUE-multi", [U2, U3], [U2, U3]),
    ("ISSUE-multi", U1, [U1]),
]


@pytest.mark.parametrize(("kind", "sent", "expected"),
                         [pytest.param(*case, id=f"{case[0]}:{case[1]!r}") for case in VALID])
async def test_valid_write_is_answered_and_read_back(stack: Stack, workspace: Workspace, kind: str, sent: Any,
                                                    expected: Any) -> None:
    s = await subject(stack, workspace, kind)
    status, body = await s.write(sent)
    assert status == 201, body
    assert_holds(s.prop, body, s.resolve(expected))
    assert (await s.read()) == (200, body)


# --- every type: invalid writes -----------------------------------------------------------------------

INVALID = [
    ("TEXT", 12), ("TEXT", True), ("TEXT", None), ("TEXT", ["a"]), ("TEXT", {"text": "a"}),
    ("URL", "not a url"), ("URL", "example.com/page"), ("URL", "ftp://example.com/file"), ("URL", "https://"),
    ("URL", "javascript:alert(1)"), ("URL", 5),
    ("EMAIL", "ann at example.com"), ("EMAIL", "ann@"), ("EMAIL", "@example.com"), ("EMAIL", "ann@@example.com"),
    ("EMAIL", 5),
    ("FILE", 12), ("FILE", None), ("FILE", ["a.pdf"]),
    ("DATETIME", "2024-02-30"), ("DATETIME", "2023-02-29"), ("DATETIME", "2024-13-01"),
    ("DATETIME", "01/05/2024"), ("DATETIME", "2024-05-01 25:00:00"), ("DATETIME", "2024-05-01 10:61:00"),
    ("DATETIME", "tomorrow"), ("DATETIME", ""), ("DATETIME", 20240501),
    ("DECIMAL", "13"), ("DECIMAL", "1.5"), ("DECIMAL", True), ("DECIMAL", False), ("DECIMAL", None),
    ("DECIMAL", [1]), ("DECIMAL", "NaN"),
    ("BOOLEAN", "true"), ("BOOLEAN", "false"), ("BOOLEAN", 1), ("BOOLEAN", 0), ("BOOLEAN", "yes"),
    ("BOOLEAN", None),
    ("OPTION", "red"), ("OPTION", UNKNOWN), ("OPTION", [RED, BLUE]), ("OPTION", True), ("OPTION", None),
    ("OPTION-multi", []), ("OPTION-multi", "not-a-uuid"), ("OPTION-multi", [RED, "not-a-uuid"]),
    ("OPTION-multi", [RED, UNKNOWN]), ("OPTION-multi", None),
    ("USER", "ann"), ("USER", 7), ("USER", [U1, U2]), ("USER", None),
    ("USER-multi", []), ("USER-multi", [U1, "ann"]), ("USER-multi", [U1, 7]),
    ("ISSUE", "WEB-12"), ("ISSUE", 12), ("ISSUE", [U1, U2]),
    ("ISSUE-multi", []), ("ISSUE-multi", ["WEB-1"]),
]

#: A valid value of each kind, stored first to show that a refused write leaves it untouched.
KEPT: dict[str, Any] = {
    "TEXT": "kept", "URL": "https://kept.example.com/", "EMAIL": "kept@example.com", "FILE": "kept.txt",
    "DATETIME": "2020-01-01 08:00:00", "DECIMAL": 7, "BOOLEAN": True, "OPTION": RED,
    "OPTION-multi": [RED, GREEN], "USER": U1, "USER-multi": [U1, U2], "ISSUE": U1, "ISSUE-multi": [U1],
}


@pytest.mark.parametrize(("kind", "sent"),
                         [pytest.param(*case, id=f"{case[0]}:{case[1]!r}") for case in INVALID])
async def test_invalid_write_is_refused_and_stores_nothing(stack: Stack, workspace: Workspace, kind: str,
                                                           sent: Any) -> None:
    s = await subject(stack, workspace, kind)
    assert_refused(await s.write(sent))
    await assert_no_value(s)
    status, kept = await s.write(KEPT[kind])
    assert status == 201, kept
    assert_refused(await s.write(sent))
    assert_refused(await s.write(sent, method="PATCH"))
    assert (await s.read()) == (200, kept)


async def test_option_is_named_by_its_uuid_not_its_internal_id(stack: Stack, workspace: Workspace,
                                                               db: asyncpg.Connection[Any]) -> None:
    s = await subject(stack, workspace, "OPTION")
    internal = await db.fetchval("SELECT id FROM custom_field_choices WHERE uuid = $1",
                                 uuid.UUID(s.options["red"]))
    assert isinstance(internal, int)
    assert_refused(await s.write(internal))
    await assert_no_value(s)


# --- replace semantics --------------------------------------------------------------------------------

REPLACE_SINGLE = [
    ("TEXT", "first", "second"), ("URL", "https://a.example.com", "https://b.example.com"),
    ("EMAIL", "a@example.com", "b@example.com"), ("FILE", "a.txt", "b.txt"),
    ("DATETIME", "2024-01-01", "2024-01-01 09:15:00"), ("DATETIME", "2024-01-01 09:15:00", "2024-01-02"),
    ("DECIMAL", 1, 2.5), ("BOOLEAN", True, False), ("OPTION", RED, BLUE), ("USER", U1, U2), ("ISSUE", U2, U3),
]


@pytest.mark.parametrize(("kind", "first", "second"),
                         [pytest.param(*case, id=f"{case[0]}:{case[1]!r}->{case[2]!r}") for case in REPLACE_SINGLE])
async def test_post_replaces_a_single_value(stack: Stack, workspace: Workspace, kind: str, first: Any,
                                            second: Any) -> None:
    s = await subject(stack, workspace, kind)
    status, created = await s.write(first)
    assert status == 201, created
    assert_holds(s.prop, created, s.resolve(first))
    status, replaced = await s.write(second)
    assert status == 200, replaced
    assert_holds(s.prop, replaced, s.resolve(second))
    assert replaced["id"] != created["id"]
    status, again = await s.write(second)  # the same value again: still a new write, with a new id
    assert status == 200, again
    assert_holds(s.prop, again, s.resolve(second))
    assert again["id"] not in {created["id"], replaced["id"]}
    assert (await s.read()) == (200, again)


REPLACE_MULTI = [
    ("OPTION-multi", [RED, GREEN], [BLUE]),
    ("OPTION-multi", [RED, GREEN], [GREEN, BLUE]),
    ("OPTION-multi", [RED, GREEN, BLUE], GREEN),
    ("OPTION-multi", [RED], [RED]),
    ("USER-multi", [U1, U2], [U2, U3]),
    ("USER-multi", [U1, U2, U3], [U3]),
    ("ISSUE-multi", [U1], [U1, U2]),
]


@pytest.mark.parametrize(("kind", "first", "second"),
                         [pytest.param(*case, id=f"{case[0]}:{case[1]!r}->{case[2]!r}") for case in REPLACE_MULTI])
async def test_post_replaces_the_whole_set_of_a_multi_value(stack: Stack, workspace: Workspace, kind: str,
                                                            first: Any, second: Any) -> None:
    s = await subject(stack, workspace, kind)
    status, created = await s.write(first)
    assert status == 201, created
    assert_holds(s.prop, created, s.resolve(first))
    status, replaced = await s.write(second)
    assert status == 200, replaced
    assert_holds(s.prop, replaced, s.resolve(second))
    assert not ids_of(s.prop, replaced) & ids_of(s.prop, created)
    assert (await s.read()) == (200, replaced)
    status, listed, _ = await s.plane.request("GET", s.plane.all_values_path(WORK_ITEM))
    assert status == 200 and listed == replaced


# --- required -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value"), [("BOOLEAN", False), ("DECIMAL", 0), ("DECIMAL", 0.0), ("TEXT", "0")])
async def test_required_property_takes_false_and_zero(stack: Stack, workspace: Workspace, kind: str,
                                                      value: Any) -> None:
    s = await subject(stack, workspace, kind, is_required=True)
    assert s.prop["is_required"] is True
    status, body = await s.write(value)
    assert status == 201, body
    assert same(body["value"], value), body
    assert (await s.read()) == (200, body)
    status, patched = await s.write(value, method="PATCH")
    assert status == 200, patched
    assert same(patched["value"], value) and patched["id"] != body["id"], patched


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
async def test_required_text_refuses_a_blank_string(stack: Stack, workspace: Workspace, blank: str) -> None:
    s = await subject(stack, workspace, "TEXT", is_required=True)
    assert_refused(await s.write(blank))
    await assert_no_value(s)
    status, kept = await s.write("filled")
    assert status == 201, kept
    assert_refused(await s.write(blank))
    assert_refused(await s.write(blank, method="PATCH"))
    assert (await s.read()) == (200, kept)
    # The same blank is a value of a property that is not required.
    optional = await s.plane.create_property(property_type="TEXT", display_name="Optional")
    status, body, _ = await s.plane.write(optional, blank)
    assert status == 201, body
    assert body["value"] == blank


# --- validation rules ---------------------------------------------------------------------------------

WINDOW = {"min_date": "2024-01-01", "max_date": "2024-12-31"}
RULES = [
    ("DECIMAL", {"min": 1, "max": 10}, 1, True),
    ("DECIMAL", {"min": 1, "max": 10}, 0.999, False),
    ("DECIMAL", {"min": 1, "max": 10}, 10, True),
    ("DECIMAL", {"min": 1, "max": 10}, 10.001, False),
    ("DECIMAL", {"min": -2.5}, -2.5, True),
    ("DECIMAL", {"min": -2.5}, -2.51, False),
    ("DECIMAL", {"max": 0}, 0, True),
    ("DECIMAL", {"max": 0}, 0.01, False),
    ("TEXT", {"min_length": 2, "max_length": 5}, "ab", True),
    ("TEXT", {"min_length": 2, "max_length": 5}, "a", False),
    ("TEXT", {"min_length": 2, "max_length": 5}, "abcde", True),
    ("TEXT", {"min_length": 2, "max_length": 5}, "abcdef", False),
    ("TEXT", {"regex": r"[A-Z]{3}-\d+"}, "ABC-12", True),
    ("TEXT", {"regex": r"[A-Z]{3}-\d+"}, "ABC-12x", False),
    ("TEXT", {"regex": r"[A-Z]{3}-\d+"}, "xABC-12", False),
    ("TEXT", {"regex": r"[A-Z]{3}-\d+"}, "abc-12", False),
    ("DATETIME", WINDOW, "2024-01-01", True),
    ("DATETIME", WINDOW, "2023-12-31", False),
    ("DATETIME", WINDOW, "2024-12-31", True),
    ("DATETIME", WINDOW, "2025-01-01", False),
    ("DATETIME", WINDOW, "2024-01-01 00:00:00", True),
    ("DATETIME", WINDOW, "2023-12-31 23:59:59", False),
    ("DATETIME", WINDOW, "2024-12-31 23:59:59", True),
    ("DATETIME", WINDOW, "2025-01-01 00:00:00", False),
    ("OPTION-multi", {"max_count": 2}, [RED, GREEN], True),
    ("OPTION-multi", {"max_count": 2}, [RED, GREEN, BLUE], False),
    ("OPTION-multi", {"max_count": 2}, [RED, GREEN, RED], True),  # duplicates collapse before counting
    ("USER-multi", {"max_count": 1}, U1, True),
    ("USER-multi", {"max_count": 1}, [U1, U2], False),
    ("ISSUE-multi", {"max_count": 2}, [U1, U2], True),
    ("ISSUE-multi", {"max_count": 2}, [U1, U2, U3], False),
]


@pytest.mark.parametrize(
    ("kind", "rules", "sent", "allowed"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}:{case[2]!r}:{'ok' if case[3] else 'refused'}")
     for case in RULES])
async def test_validation_rule_at_its_boundary(stack: Stack, workspace: Workspace, kind: str,
                                               rules: dict[str, Any], sent: Any, allowed: bool) -> None:
    s = await subject(stack, workspace, kind, validation_rules=rules)
    assert s.prop["validation_rules"] == rules
    answer = await s.write(sent)
    if allowed:
        status, body = answer
        assert status == 201, body
        assert_holds(s.prop, body, list(dict.fromkeys(s.resolve(sent))) if isinstance(sent, list) else sent)
        assert (await s.read()) == (200, body)
    else:
        assert_refused(answer)
        await assert_no_value(s)


async def test_rules_apply_to_patch_and_rules_set_later_apply_to_the_next_writes(stack: Stack,
                                                                                 workspace: Workspace) -> None:
    s = await subject(stack, workspace, "TEXT", validation_rules={"max_length": 3})
    status, kept = await s.write("abc")
    assert status == 201, kept
    assert_refused(await s.write("abcd", method="PATCH"))
    assert (await s.read()) == (200, kept)
    status, changed, _ = await s.plane.request("PATCH", s.plane.property_path(s.prop["id"]),
                                               {"validation_rules": {"max_length": 2}})
    assert status == 200 and changed["validation_rules"] == {"max_length": 2}, changed
    assert_refused(await s.write("abc"))
    assert_refused(await s.write("abc", method="PATCH"))
    assert (await s.read()) == (200, kept)
    status, body = await s.write("ab")
    assert status == 200 and body["value"] == "ab", body


# --- options that cannot be chosen --------------------------------------------------------------------


async def unusable_option(s: Subject, how: str) -> str:
    """An option ``s`` must refuse; one that was usable until it changed is shown to be accepted first."""
    plane, prop = s.plane, s.prop
    if how == "created-inactive":
        option = await plane.create_option(prop, "purple", is_active=False)
        assert option["is_active"] is False
        return str(option["id"])
    if how == "other-property":
        other = await plane.create_property(**KINDS["OPTION"], display_name="Other")
        return str((await plane.create_option(other, "red"))["id"])  # same name, another property
    option = await plane.create_option(prop, "purple")
    status, body = await s.write([option["id"]] if s.multi else option["id"])
    assert status == 201, body  # usable so far
    path = f"{plane.property_path(prop['id'])}options/{option['id']}/"
    if how == "deactivated":
        status, changed, _ = await plane.request("PATCH", path, {"is_active": False})
        assert status == 200 and changed["is_active"] is False, changed
    else:
        assert how == "deleted"
        status, held, _ = await plane.request("DELETE", path)
        assert status == 409, held  # a value holds it
        status, body = await s.write([s.options["red"]] if s.multi else s.options["red"])
        assert status == 200, body
        status, deleted, _ = await plane.request("DELETE", path)
        assert status == 204, deleted
    return str(option["id"])


@pytest.mark.parametrize("how", ["created-inactive", "deactivated", "deleted", "other-property"])
@pytest.mark.parametrize("kind", ["OPTION", "OPTION-multi"])
async def test_unusable_option_is_refused(stack: Stack, workspace: Workspace, kind: str, how: str) -> None:
    s = await subject(stack, workspace, kind)
    bad = await unusable_option(s, how)
    status, kept = await s.write([RED] if s.multi else RED)
    assert status in (200, 201), kept
    sent = [s.options["green"], bad] if s.multi else bad
    assert_refused(await s.write(sent))
    assert_refused(await s.write(sent, method="PATCH"))
    assert (await s.read()) == (200, kept)


async def test_unusable_option_is_refused_when_nothing_is_stored(stack: Stack, workspace: Workspace) -> None:
    s = await subject(stack, workspace, "OPTION-multi")
    inactive = await unusable_option(s, "created-inactive")
    foreign = await unusable_option(s, "other-property")
    for sent in ([inactive], [s.options["red"], inactive], foreign, [s.options["red"], foreign]):
        assert_refused(await s.write(sent))
        await assert_no_value(s)


# --- inactive properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["TEXT", "DECIMAL", "OPTION-multi"])
async def test_property_created_inactive_refuses_writes(stack: Stack, workspace: Workspace, kind: str) -> None:
    s = await subject(stack, workspace, kind, is_active=False)
    assert s.prop["is_active"] is False
    assert_refused(await s.write(KEPT[kind]))
    await assert_no_value(s)


@pytest.mark.parametrize(("kind", "before", "after"),
                         [("TEXT", "a", "b"), ("BOOLEAN", True, False), ("OPTION-multi", [RED], [GREEN]),
                          ("USER", U1, U2)])
async def test_deactivated_property_refuses_writes_and_keeps_its_value(stack: Stack, workspace: Workspace,
                                                                       kind: str, before: Any, after: Any) -> None:
    s = await subject(stack, workspace, kind)
    status, kept = await s.write(before)
    assert status == 201, kept
    status, changed, _ = await s.plane.request("PATCH", s.plane.property_path(s.prop["id"]), {"is_active": False})
    assert status == 200 and changed["is_active"] is False, changed
    assert_refused(await s.write(after))
    assert_refused(await s.write(after, method="PATCH"))
    assert (await s.read()) == (200, kept)


# --- PATCH and DELETE ---------------------------------------------------------------------------------

PATCHES = [
    ("TEXT", "a", "b"), ("DECIMAL", 1, 2.5), ("DATETIME", "2024-01-01", "2024-02-02 12:00:00"),
    ("BOOLEAN", False, True), ("OPTION", RED, GREEN), ("OPTION-multi", [RED, GREEN], [BLUE]),
    ("USER", U1, U2), ("ISSUE-multi", [U1], [U2, U3]),
]


@pytest.mark.parametrize(("kind", "before", "after"),
                         [pytest.param(*case, id=f"{case[0]}:{case[1]!r}->{case[2]!r}") for case in PATCHES])
async def test_patch_replaces_only_an_existing_value(stack: Stack, workspace: Workspace, kind: str, before: Any,
                                                     after: Any) -> None:
    s = await subject(stack, workspace, kind)
    status, body = await s.write(after, method="PATCH")
    assert status == 404, body
    await assert_no_value(s)
    status, created = await s.write(before)
    assert status == 201, created
    status, patched = await s.write(after, method="PATCH")
    assert status == 200, patched
    assert_holds(s.prop, patched, s.resolve(after))
    assert not ids_of(s.prop, patched) & ids_of(s.prop, created)
    assert (await s.read()) == (200, patched)


@pytest.mark.parametrize(("kind", "value"),
                         [("TEXT", "x"), ("DECIMAL", 0), ("BOOLEAN", False), ("OPTION-multi", [RED, BLUE]),
                          ("USER-multi", [U1])])
async def test_delete_removes_the_value(stack: Stack, workspace: Workspace, kind: str, value: Any) -> None:
    s = await subject(stack, workspace, kind)
    status, body = await s.delete()
    assert status == 404, body
    status, created = await s.write(value)
    assert status == 201, created
    status, body = await s.delete()
    assert status == 204 and body is None, body
    await assert_no_value(s)
    status, body = await s.delete()
    assert status == 404, body
    status, body = await s.write(value, method="PATCH")
    assert status == 404, body
    await assert_no_value(s)
    status, again = await s.write(value)
    assert status == 201, again  # created anew, not a replacement
    assert_holds(s.prop, again, s.resolve(value))


@pytest.mark.parametrize(("kind", "value", "other"),
                         [("TEXT", "keep", "kept"), ("BOOLEAN", False, True), ("DECIMAL", 0, 1),
                          ("OPTION-multi", [RED], [GREEN])])
async def test_required_value_cannot_be_deleted(stack: Stack, workspace: Workspace, kind: str, value: Any,
                                                other: Any) -> None:
    s = await subject(stack, workspace, kind, is_required=True)
    status, created = await s.write(value)
    assert status == 201, created
    status, body = await s.delete()
    assert_plane_error(status, body)
    assert (await s.read()) == (200, created)
    status, patched = await s.write(other, method="PATCH")
    assert status == 200, patched
    assert_holds(s.prop, patched, s.resolve(other))


# --- the listing of a work item's values --------------------------------------------------------------


async def test_listing_of_a_work_item_flattens_multi_values(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    text = await plane.create_property(property_type="TEXT", display_name="Summary")
    number = await plane.create_property(property_type="DECIMAL", display_name="Estimate")
    flag = await plane.create_property(property_type="BOOLEAN", display_name="Blocked")
    when = await plane.create_property(property_type="DATETIME", display_name="Due")
    tags = await plane.create_property(property_type="OPTION", is_multi=True, display_name="Tags")
    people = await plane.create_property(property_type="RELATION", relation_type="USER", is_multi=True,
                                         display_name="Watchers")
    unset = await plane.create_property(property_type="TEXT", display_name="Unset")
    a, b, c = [(await plane.create_option(tags, name))["id"] for name in ("a", "b", "c")]
    props = {p["id"]: p for p in (text, number, flag, when, tags, people, unset)}

    written = [(text, "hello", {"external_id": "J-1", "external_source": "jira"}), (number, 2.5, {}),
               (flag, False, {}), (when, "2024-05-01 10:30:00", {}), (tags, [a, b], {}), (people, [U1, U2], {})]
    answers: dict[str, Any] = {}
    for prop, value, extra in written:
        status, body, _ = await plane.write(prop, value, **extra)
        assert status == 201, body
        answers[prop["id"]] = body
    status, other_item, _ = await plane.write(text, "another work item", OTHER_WORK_ITEM)
    assert status == 201, other_item

    status, listed, _ = await plane.request("GET", plane.all_values_path(WORK_ITEM))
    assert status == 200 and isinstance(listed, list), listed
    for obj in listed:
        assert_value_object(obj, props[obj["property_id"]])
    pairs = sorted((obj["property_id"], repr(obj["value"])) for obj in listed)
    expected = sorted([(text["id"], repr("hello")), (number["id"], repr(2.5)), (flag["id"], repr(False)),
                       (when["id"], repr("2024-05-01 10:30:00")), (tags["id"], repr(a)), (tags["id"], repr(b)),
                       (people["id"], repr(U1)), (people["id"], repr(U2))])
    assert pairs == expected
    written_objects = [o for body in answers.values() for o in (body if isinstance(body, list) else [body])]
    assert sorted(listed, key=lambda o: o["id"]) == sorted(written_objects, key=lambda o: o["id"])
    assert len({obj["id"] for obj in listed}) == len(listed) == 8

    status, listed_other, _ = await plane.request("GET", plane.all_values_path(OTHER_WORK_ITEM))
    assert status == 200 and listed_other == [other_item], listed_other
    status, listed_none, _ = await plane.request("GET", plane.all_values_path(a_uuid()))
    assert status == 200 and listed_none == [], listed_none

    # Replacing a multi value and deleting another leave only what is current.
    status, body, _ = await plane.write(tags, [c])
    assert status == 200, body
    status, _, _ = await plane.request("DELETE", plane.values_path(WORK_ITEM, text["id"]))
    assert status == 204
    status, listed, _ = await plane.request("GET", plane.all_values_path(WORK_ITEM))
    assert status == 200, listed
    assert sorted(obj["value"] for obj in listed if obj["property_id"] == tags["id"]) == [c]
    assert not [obj for obj in listed if obj["property_id"] == text["id"]]
    assert len(listed) == 6


# --- external references ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "later"),
                         [("TEXT", "x", "y"), ("DATETIME", "2024-05-01", "2024-05-02"),
                          ("OPTION-multi", [RED, GREEN], [BLUE]), ("USER", U1, U2)])
async def test_external_reference_is_echoed(stack: Stack, workspace: Workspace, kind: str, value: Any,
                                            later: Any) -> None:
    s = await subject(stack, workspace, kind)
    status, plain = await s.write(value)
    assert status == 201, plain
    assert all(o["external_id"] is None and o["external_source"] is None for o in objects_of(s.prop, plain))

    status, body = await s.write(value, external_id="JIRA-42", external_source="jira")
    assert status == 200, body
    assert all(o["external_id"] == "JIRA-42" and o["external_source"] == "jira" for o in objects_of(s.prop, body))
    assert (await s.read()) == (200, body)
    status, listed, _ = await s.plane.request("GET", s.plane.all_values_path(WORK_ITEM))
    assert status == 200 and listed == (body if s.multi else [body]), listed

    status, patched = await s.write(later, method="PATCH", external_id="LIN-7", external_source="linear")
    assert status == 200, patched
    assert all(o["external_id"] == "LIN-7" and o["external_source"] == "linear"
               for o in objects_of(s.prop, patched))
    assert_holds(s.prop, patched, s.resolve(later))
    assert (await s.read()) == (200, patched)
