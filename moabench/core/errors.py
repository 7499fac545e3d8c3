"""Configuration errors, and turning validation failures into one line that names the field."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A run configuration that cannot run; the message names the field at fault."""


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every invalid field: "field 'p': Input should be 0, 1 or 2; ..."."""
    return "; ".join(
        (f"field {'.'.join(str(part) for part in e['loc'])!r}: " if e["loc"] else "")
        + e["msg"].removeprefix("Value error, ")
        for e in error.errors()
    )


@cache
def strict(model: type[Model]) -> type[Model]:
    """`model` that also rejects unknown fields and NaN or infinite numbers, whatever its own
    config says (a plugin's `Params` that forgot `extra="forbid"` still catches a typo)."""
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__})


def validate_params(model: type[Model], params: dict[str, Any], owner: str) -> Model:
    """`strict(model)(**params)`, or a `ConfigError` such as "algorithm 'gapo': field 'p': ..."."""
    try:
        return strict(model)(**params)
    except ValidationError as error:
        raise ConfigError(f"{owner}: {describe_validation_error(error)}") from None
