"""Turning validation failures into one-line messages that name the field at fault."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every invalid field: "field 'p': Input should be 0, 1 or 2; ..."."""
    return "; ".join(
        f"field {'.'.join(str(part) for part in e['loc'])!r}: {e['msg']}" for e in error.errors()
    )
