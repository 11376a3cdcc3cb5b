"""Write every wire model's JSON Schema to ``schemas/json`` (run: ``python -m cfv_schemas.export [DIR]``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from cfv_schemas import admin, commands, events, kantata, outcomes, plane

MODELS: dict[str, type[BaseModel]] = {
    "command-envelope": commands.CommandEnvelope,
    "change-event": events.ChangeEvent,
    "operation-outcome": outcomes.Outcome,
    "kantata-write-values": kantata.WriteValuesIn,
    "kantata-custom-field-create": kantata.CustomFieldCreate,
    "kantata-custom-field-update": kantata.CustomFieldUpdate,
    "kantata-custom-field": kantata.CustomFieldOut,
    "kantata-custom-field-value": kantata.CustomFieldValueOut,
    "kantata-errors": kantata.ErrorsOut,
    "kantata-operation": kantata.OperationOut,
    "kantata-choice-create": kantata.ChoiceCreate,
    "kantata-choice-update": kantata.ChoiceUpdate,
    "kantata-choice": kantata.CustomFieldChoiceOut,
    "kantata-update-values": kantata.UpdateValuesIn,
    "kantata-set-create": kantata.SetCreate,
    "kantata-set-update": kantata.SetUpdate,
    "kantata-set": kantata.CustomFieldSetOut,
    "plane-project-create": plane.ProjectIn,
    "plane-project-update": plane.ProjectPatch,
    "plane-project": plane.ProjectOut,
    "plane-property-create": plane.PropertyIn,
    "plane-property-update": plane.PropertyPatch,
    "plane-property": plane.PropertyOut,
    "plane-option-create": plane.OptionIn,
    "plane-option-update": plane.OptionPatch,
    "plane-option": plane.OptionOut,
    "plane-write-value": plane.ValueIn,
    "plane-value": plane.ValueOut,
    "kantata-subject-projects": kantata.SubjectProjectsIn,
    "admin-user-create": admin.UserCreate,
    "admin-user-update": admin.UserUpdate,
    "admin-membership": admin.MembershipPut,
    "admin-key-create": admin.KeyCreate,
    "admin-key-update": admin.KeyUpdate,
}

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "json"


def rendered() -> dict[str, str]:
    """File name to JSON Schema text, for every exported model."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in MODELS.items()
    }


def main(argv: list[str]) -> None:
    """Write the files into the directory named by ``argv`` (default: ``schemas/json``)."""
    target = Path(argv[0]) if argv else DEFAULT_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (target / name).write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
