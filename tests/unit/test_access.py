"""The pure access rules (cfv.domain.access): the whole matrix of account roles, project permissions, field
levels and subject types, the project a subject belongs to, the valid levels, the defaults and the refusals.

The SQL twin (``cfv_allowed``) is checked against these same rules in tests/integration/test_access_matrix.py.
"""

from __future__ import annotations

import itertools

import pytest
from cfv.domain.access import (
    ACCOUNT_ADMIN,
    ACCOUNT_ROLES,
    ACCOUNT_SUBJECTS,
    PROJECT_ADMIN,
    PROJECT_PERMISSIONS,
    Action,
    Grants,
    administers,
    allowed,
    default_access,
    refusal,
    subject_project,
    valid_levels,
)
from cfv.domain.fields import SubjectType

ACCOUNT_TYPES = (SubjectType.ESTIMATE, SubjectType.WORKSPACE_GROUP, SubjectType.USER)
PROJECT_TYPES = (SubjectType.WORKSPACE, SubjectType.STORY, SubjectType.RESOURCE, SubjectType.WORK_ITEM)
PROJECT_LEVELS = (*PROJECT_PERMISSIONS, ACCOUNT_ADMIN)
NON_ADMIN_ROLES = tuple(r for r in ACCOUNT_ROLES if r != ACCOUNT_ADMIN)
ALL_LEVELS = (*ACCOUNT_ROLES, *PROJECT_PERMISSIONS)
P1, P2 = "1001", "1002"


def account_rank(name: str) -> int:
    """The rank of an account role (1 = lowest), as the issue lists them."""
    return ACCOUNT_ROLES.index(name) + 1


def project_rank(name: str | None) -> int:
    """The rank of a project permission (0: no membership)."""
    return 0 if name is None else PROJECT_PERMISSIONS.index(name) + 1


# --- the ladders -------------------------------------------------------------------------------------------


def test_ladders_are_the_issue_s() -> None:
    assert ACCOUNT_ROLES == ("account_collaboration", "project_creator", "project_lead", "reports_viewer",
                             "reports_viewer_with_cost", "account_admin")
    assert PROJECT_PERMISSIONS == ("project_collaboration", "time_logging", "financial", "project_admin")
    assert ACCOUNT_ROLES[-1] == ACCOUNT_ADMIN and PROJECT_PERMISSIONS[-1] == PROJECT_ADMIN
    assert frozenset(ACCOUNT_TYPES) == ACCOUNT_SUBJECTS
    assert set(ACCOUNT_TYPES) | set(PROJECT_TYPES) == set(SubjectType)
    assert not set(ACCOUNT_ROLES) & set(PROJECT_PERMISSIONS)  # one table (access_levels) holds both


def test_grants_is_admin() -> None:
    assert Grants(ACCOUNT_ADMIN).is_admin
    for role in NON_ADMIN_ROLES:
        assert not Grants(role, {P1: PROJECT_ADMIN}).is_admin


# --- account subjects --------------------------------------------------------------------------------------


def test_account_subjects_follow_the_account_ladder() -> None:
    """Every role x every account level x every account subject: allowed iff the role ranks at least as high as
    the level (an account administrator, the top rank, always). Project memberships do not count."""
    mismatches = []
    for role, level, subject_type in itertools.product(ACCOUNT_ROLES, ACCOUNT_ROLES, ACCOUNT_TYPES):
        expected = role == ACCOUNT_ADMIN or account_rank(role) >= account_rank(level)
        for projects in ({}, {P1: PROJECT_ADMIN, P2: PROJECT_ADMIN}):
            for project in (None, P1):  # an account subject has no project, whatever a caller passes
                got = allowed(Grants(role, projects), level, subject_type, project)
                if got != expected:
                    mismatches.append((role, level, subject_type.value, projects, project, got))
    assert not mismatches, "\n".join(map(str, mismatches))


@pytest.mark.parametrize("subject_type", ACCOUNT_TYPES)
def test_account_subjects_refuse_project_levels_to_non_admins(subject_type: SubjectType) -> None:
    """A project permission names no rank on the account ladder (never stored: definitions are checked), so
    only administrators pass it."""
    for role, level in itertools.product(ACCOUNT_ROLES, (*PROJECT_PERMISSIONS, "bogus", "")):
        assert allowed(Grants(role, {P1: PROJECT_ADMIN}), level, subject_type, None) is (role == ACCOUNT_ADMIN)


# --- project subjects --------------------------------------------------------------------------------------


def project_expected(role: str, permission: str | None, level: str, registered: bool) -> bool:
    if role == ACCOUNT_ADMIN:
        return True
    if level == ACCOUNT_ADMIN or not registered:
        return False
    return project_rank(permission) >= project_rank(level)


def test_project_subjects_follow_the_project_ladder() -> None:
    """Every project permission (and none) x every project level (and account_admin) x every project subject
    type x every account role: allowed iff the permission on the subject's project ranks at least as high as
    the level; account_admin fields only for administrators; administrators always. The account role of a
    non-administrator does not matter, nor does a permission on another project."""
    mismatches = []
    for role, permission, level, subject_type in itertools.product(
            ACCOUNT_ROLES, (None, *PROJECT_PERMISSIONS), PROJECT_LEVELS, PROJECT_TYPES):
        own = {} if permission is None else {P1: permission}
        for others in ({}, {P2: PROJECT_ADMIN}):
            grants = Grants(role, {**others, **own})
            cases = (
                (P1, project_expected(role, permission, level, True)),
                (None, project_expected(role, permission, level, False)),  # unregistered: admins only
            )
            if permission is not None:  # the same permission, on a project the subject is not in
                cases += (("9999", project_expected(role, None, level, True)),)
            for project, expected in cases:
                got = allowed(grants, level, subject_type, project)
                if got != expected:
                    mismatches.append((role, permission, level, subject_type.value, others, project, got))
    assert not mismatches, "\n".join(map(str, mismatches))


@pytest.mark.parametrize("subject_type", PROJECT_TYPES)
def test_project_subjects_refuse_account_levels_to_non_admins(subject_type: SubjectType) -> None:
    """Account roles (but account_admin) name no rank on the project ladder: not a valid level of a project
    subject's field, and never reached by a non-administrator; unknown levels neither."""
    for role, level in itertools.product(ACCOUNT_ROLES, (*NON_ADMIN_ROLES, "bogus", "")):
        grants = Grants(role, {P1: PROJECT_ADMIN})
        assert allowed(grants, level, subject_type, P1) is (role == ACCOUNT_ADMIN), (role, level)


def test_admins_reach_everything() -> None:
    admin = Grants(ACCOUNT_ADMIN)
    for subject_type, level, project in itertools.product(SubjectType, (*ALL_LEVELS, "bogus"), (None, P1)):
        assert allowed(admin, level, subject_type, project), (subject_type, level, project)


def test_unregistered_project_subjects_are_for_admins_only() -> None:
    everything = {P1: PROJECT_ADMIN, P2: PROJECT_ADMIN}
    for role, subject_type, level in itertools.product(ACCOUNT_ROLES, PROJECT_TYPES, PROJECT_LEVELS):
        assert allowed(Grants(role, everything), level, subject_type, None) is (role == ACCOUNT_ADMIN)


# --- the project of a subject ------------------------------------------------------------------------------

WORK_ITEM = "5d7c9c1e-8a53-4a35-9b8f-0f3f2b4a7e10"
PLANE_PROJECT = "0f9b3c57-2f1e-4b8e-9a51-5d2b7c4e8a10"


@pytest.mark.parametrize(("subject_type", "subject_id", "field_project", "registered", "expected"), [
    # account subjects belong to no project, whatever is registered or the field says
    (SubjectType.ESTIMATE, "5", None, None, None),
    (SubjectType.ESTIMATE, "5", PLANE_PROJECT, P1, None),
    (SubjectType.WORKSPACE_GROUP, "5", None, P1, None),
    (SubjectType.USER, "5", PLANE_PROJECT, P1, None),
    # a Workspace subject is a project: its own id
    (SubjectType.WORKSPACE, "1001", None, None, "1001"),
    (SubjectType.WORKSPACE, "1001", PLANE_PROJECT, P2, "1001"),
    # Stories and Resources: where registered (the field's project does not place them)
    (SubjectType.STORY, "7", None, P1, P1),
    (SubjectType.STORY, "7", PLANE_PROJECT, P1, P1),
    (SubjectType.STORY, "7", None, None, None),
    (SubjectType.STORY, "7", PLANE_PROJECT, None, None),
    (SubjectType.RESOURCE, "8", None, P2, P2),
    (SubjectType.RESOURCE, "8", None, None, None),
    # a work item: its property's project (Plane), else as registered
    (SubjectType.WORK_ITEM, WORK_ITEM, PLANE_PROJECT, None, PLANE_PROJECT),
    (SubjectType.WORK_ITEM, WORK_ITEM, PLANE_PROJECT, P1, PLANE_PROJECT),
    (SubjectType.WORK_ITEM, WORK_ITEM, None, P1, P1),
    (SubjectType.WORK_ITEM, WORK_ITEM, None, None, None),
])
def test_subject_project(subject_type: SubjectType, subject_id: str, field_project: str | None,
                         registered: str | None, expected: str | None) -> None:
    assert subject_project(subject_type, subject_id, field_project, registered) == expected


# --- valid levels and defaults -----------------------------------------------------------------------------


def test_valid_levels() -> None:
    for subject_type in ACCOUNT_TYPES:
        assert valid_levels(subject_type) == ACCOUNT_ROLES
    for subject_type in PROJECT_TYPES:
        assert valid_levels(subject_type) == (*PROJECT_PERMISSIONS, ACCOUNT_ADMIN)
        assert not set(valid_levels(subject_type)) & set(NON_ADMIN_ROLES)


def test_default_access() -> None:
    for subject_type in ACCOUNT_TYPES:
        assert default_access(subject_type) == (ACCOUNT_ADMIN, ACCOUNT_ADMIN)
    for subject_type in PROJECT_TYPES:
        assert default_access(subject_type) == (PROJECT_ADMIN, "project_collaboration")
    for subject_type in SubjectType:  # the defaults are levels the field could have been given
        assert set(default_access(subject_type)) <= set(valid_levels(subject_type))


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("subject_type", [SubjectType.STORY, SubjectType.RESOURCE, SubjectType.WORK_ITEM])
@pytest.mark.parametrize("level", PROJECT_PERMISSIONS)
def test_refusal_of_an_unregistered_subject_says_to_register(action: Action, subject_type: SubjectType,
                                                             level: str) -> None:
    subject_id = WORK_ITEM if subject_type is SubjectType.WORK_ITEM else "7"
    message = refusal(action, level, subject_type, subject_id, None)
    assert f"{subject_type.value} {subject_id}" in message
    assert "not registered to a project" in message and "register it" in message
    assert f"only account administrators may {action.value}" in message


def test_refusal_names_the_level_and_where() -> None:
    message = refusal(Action.WRITE, "financial", SubjectType.STORY, "7", P1)
    assert message == f"this field's write_access requires financial on project {P1}"
    message = refusal(Action.READ, "time_logging", SubjectType.WORKSPACE, P1, P1)
    assert message == f"this field's read_access requires time_logging on project {P1}"
    message = refusal(Action.WRITE, "reports_viewer", SubjectType.ESTIMATE, "5", None)
    assert message == "this field's write_access requires reports_viewer on the account"
    assert "regist" not in message
    # an account_admin field of a project subject: the account decides, registered or not
    for project in (P1, None):
        message = refusal(Action.WRITE, ACCOUNT_ADMIN, SubjectType.STORY, "7", project)
        assert message == "this field's write_access requires account_admin on the account"


def test_administers_a_project_with_project_admin_or_as_account_admin() -> None:
    assert administers(Grants("account_admin"), None) and administers(Grants("account_admin"), "12")
    assert administers(Grants("account_collaboration", {"12": "project_admin"}), "12")
    assert not administers(Grants("account_collaboration", {"12": "project_admin"}), "13")
    assert not administers(Grants("reports_viewer_with_cost", {"12": "financial"}), "12")
    assert not administers(Grants("project_lead", {"12": "project_admin"}), None)
