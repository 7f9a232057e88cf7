"""Running marshmallow schemas and turning their errors into the API's ValidationError."""

from __future__ import annotations

import marshmallow
from werkzeug.datastructures import MultiDict

from .errors import ValidationError


def load(schema: marshmallow.Schema, data, *, message: str = "The request is invalid."):
    try:
        return schema.load(data)
    except marshmallow.ValidationError as error:
        raise ValidationError(message, details=_stringify_keys(error.messages)) from None


def query_args(args: MultiDict, repeatable: set[str]) -> dict:
    """Query string → dict; names in ``repeatable`` keep every value, others the first."""
    return {name: args.getlist(name) if name in repeatable else args.get(name) for name in args}


def _stringify_keys(messages):
    # Batch errors are keyed by item index; JSON keys are strings.
    if isinstance(messages, dict):
        return {str(key): _stringify_keys(value) for key, value in messages.items()}
    return messages
