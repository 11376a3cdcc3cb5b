"""Access levels of custom fields (stored now; enforced by the access-control work)."""

from __future__ import annotations

from cfv.domain.fields import SubjectType

#: Subjects governed by account-level roles; the others belong to a project.
ACCOUNT_SUBJECTS = frozenset({SubjectType.ESTIMATE, SubjectType.WORKSPACE_GROUP, SubjectType.USER})


def default_access(subject_type: SubjectType) -> tuple[str, str]:
    """The (write_access, read_access) a new field of ``subject_type`` gets unless told otherwise."""
    if subject_type in ACCOUNT_SUBJECTS:
        return "account_admin", "account_admin"
    return "project_admin", "project_collaboration"
