"""The worker's access checks: who signed each command, and may they do what it asks (issue: roles and access).

The worker is the authority. Keys, roles, memberships and subject registrations are read inside the
transaction that applies the batch (:func:`cfv.store.batches.load`), under the workspace lock that key and role
changes also take, so a key revoked or a role lowered before a batch starts cannot slip through it. The rules
themselves are the pure ones of :mod:`cfv.domain.access`; this module only holds them together for a batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from cfv_schemas.commands import Command, RegisterSubjects, WriteValues

from cfv.domain.access import Action, Grants, administers, allowed, canonical_project, refusal, subject_project
from cfv.domain.fields import FieldDefinition, SubjectType
from cfv.domain.values import InvalidValue, canonical_subject_id
from cfv.domain.writes import ErrorType, ItemError, ValidWrite
from cfv.store.batches import SignerRow

_Subject = tuple[int, str, str]  # workspace id, subject type, subject id


@dataclass(frozen=True, slots=True)
class Signer:
    """The key a command acts as, and what its user holds."""

    key_id: int
    user_id: int
    grants: Grants

    @property
    def actor(self) -> str:
        """The setter recorded on values and events."""
        return f"key:{self.key_id}"


class BatchAccess:
    """Keys, grants and subject registrations for one batch, read in its transaction."""

    def __init__(self, signers: dict[bytes, tuple[int, Signer, bool]], registered: dict[_Subject, str]) -> None:
        self._signers = signers
        self._registered = registered
        self._placed: dict[_Subject, str] = {}  # to store at the end of the batch: the last placement of each

    @classmethod
    def of(cls, signers: Sequence[SignerRow], memberships: Sequence[tuple[int, str, str]],
           registered: dict[_Subject, str]) -> BatchAccess:
        """The checks over what the batch's transaction read: its signing keys, their users' memberships (user,
        project, permission) and the subjects' projects."""
        projects: dict[int, dict[str, str]] = {}
        for user_id, project, permission in memberships:
            projects.setdefault(user_id, {})[project] = permission
        return cls({r.public_key: (r.workspace_id, Signer(r.key_id, r.user_id, Grants(
            r.account_role, projects.get(r.user_id, {}))), r.valid) for r in signers}, dict(registered))

    def authenticate(self, command: Command, public_key: bytes) -> Signer | ItemError:
        """The signer of ``command``, or why it may not act in the command's workspace."""
        found = self._signers.get(public_key)
        if found is None:
            return ItemError(ErrorType.UNAUTHENTICATED, "the message is signed by no known API key", "credentials")
        workspace_id, signer, valid = found
        if workspace_id != command.workspace_id:  # another tenant's key: its workspace does not exist for it
            return ItemError(ErrorType.UNAUTHENTICATED,
                             f"the signing key does not belong to workspace {command.workspace_id}", "credentials")
        if not valid:
            return ItemError(ErrorType.UNAUTHENTICATED, "the signing API key is revoked or expired", "credentials")
        return signer

    def of_workspace(self, public_key: bytes, workspace_id: int) -> bool:
        """Whether ``public_key`` is (or was: revoked, expired) a key of ``workspace_id``."""
        found = self._signers.get(public_key)
        return found is not None and found[0] == workspace_id

    def write_errors(self, signer: Signer, workspace_id: int, writes: Sequence[ValidWrite]) -> list[ItemError]:
        """The writes (and value deletes) ``signer`` may not make: each field's ``write_access`` decides."""
        errors = []
        for write in writes:
            definition, key = write.definition, write.key
            project = subject_project(key.subject_type, key.subject_id, definition.project,
                                      self._registered.get((workspace_id, key.subject_type.value, key.subject_id)))
            if not allowed(signer.grants, definition.write_access, key.subject_type, project):
                errors.append(ItemError(ErrorType.FORBIDDEN, refusal(Action.WRITE, definition.write_access,
                                                                     key.subject_type, key.subject_id, project),
                                        "custom_field_id", write.index, definition.id))
        return errors

    def can_read(self, signer: Signer, workspace_id: int, write: ValidWrite) -> bool:
        """Whether ``signer`` may read the value ``write`` leaves (its answer shows it only then)."""
        definition, key = write.definition, write.key
        project = subject_project(key.subject_type, key.subject_id, definition.project,
                                  self._registered.get((workspace_id, key.subject_type.value, key.subject_id)))
        return allowed(signer.grants, definition.read_access, key.subject_type, project)

    @staticmethod
    def project_deletion_error(signer: Signer, project: object) -> ItemError | None:
        """Deleting a project (its properties and their values) takes an account administrator."""
        if signer.grants.is_admin:
            return None
        return ItemError(ErrorType.FORBIDDEN, f"only account administrators may delete a project ({project})",
                         "project_id")

    @staticmethod
    def field_deletion_error(signer: Signer, definition: FieldDefinition) -> ItemError | None:
        """Deleting a field (and its values) takes an account administrator, or a project administrator of a
        work-item property's project."""
        if administers(signer.grants, definition.project):
            return None
        return ItemError(ErrorType.FORBIDDEN, "only account administrators (or, for a work-item property, its "
                         "project's administrators) may delete a field", "custom_field_id", None, definition.id)

    def register(self, signer: Signer, command: RegisterSubjects) -> list[ItemError]:
        """Place the command's subjects, all or nothing; later commands of the batch see the placements."""
        errors: list[ItemError] = []
        placed: list[tuple[_Subject, str]] = []
        for index, placement in enumerate(command.subjects):
            subject_type = SubjectType(placement.subject_type)
            try:
                subject_id = canonical_subject_id(subject_type, placement.subject_id)
            except InvalidValue as error:
                errors.append(ItemError(ErrorType.VALIDATION, str(error), "subject_id", index))
                continue
            try:
                target = canonical_project(placement.project)
            except InvalidValue as error:
                errors.append(ItemError(ErrorType.VALIDATION, str(error), "project", index))
                continue
            subject = (command.workspace_id, subject_type.value, subject_id)
            before = self._registered.get(subject)
            for project in {target, before} - {None}:
                if not administers(signer.grants, project):
                    errors.append(ItemError(ErrorType.FORBIDDEN, f"placing {subject_type.value} {subject_id} in "
                                            f"a project takes project_admin on project {project}", "project", index))
            placed.append((subject, target))
        if errors:
            return errors
        for subject, project in placed:
            self._registered[subject] = project
            self._placed[subject] = project
        return []

    @property
    def registrations(self) -> list[tuple[int, str, str, str]]:
        """The placements the batch made, one per subject (its last): the rows to store."""
        return [(*subject, project) for subject, project in self._placed.items()]


def subjects_of(commands: Sequence[Command]) -> list[_Subject]:
    """The Stories and Resources the commands touch (registrations decide their project)."""
    found = []
    for command in commands:
        if isinstance(command, WriteValues):
            items = [(i.subject_type, i.subject_id) for i in command.items]
        elif isinstance(command, RegisterSubjects):
            items = [(s.subject_type, s.subject_id) for s in command.subjects]
        else:
            continue
        for subject_type, subject_id in items:
            if subject_type in ("Story", "Resource"):
                with contextlib.suppress(InvalidValue):
                    found.append((command.workspace_id, subject_type,
                                  canonical_subject_id(SubjectType(subject_type), subject_id)))
    return found
