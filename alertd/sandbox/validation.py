"""The API's field rules: which ticket, note and query-string fields are accepted, with what
types and values under the account's options, and the error each violation gets. Every check
collects all problems at once, as the real API does."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from aiohttp import web

from alertd.sandbox.account import (
    MAX_TAG_LENGTH,
    MAX_TAGS,
    PRIORITIES,
    REQUESTER_FIELDS,
    SERVICE_LEVELS,
    STATUSES,
    SandboxOptions,
)
from alertd.sandbox.errors import _FieldError, _invalid
from alertd.sandbox.formats import _parse_time

_Kind = Literal["int", "id", "str", "bool", "strings", "email", "emails", "datetime", "object"]
_EXPECTED: Final[dict[_Kind, str]] = {
    "int": "Integer",
    "id": "Positive Integer",
    "str": "String",
    "bool": "Boolean",
    "strings": "Array",
    "email": "String",
    "emails": "Array",
    "datetime": "String",
    "object": "key/value pair",
}
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: _Kind
    nullable: bool = False
    # The allowed values under these options; an empty result means "any".
    choices: Callable[[SandboxOptions], Collection[Any]] | None = None


_TICKET_FIELDS: Final[dict[str, _Spec]] = {
    "requester_id": _Spec("id"),
    "email": _Spec("email"),
    "phone": _Spec("str"),
    "twitter_id": _Spec("str"),
    "facebook_id": _Spec("str"),
    "unique_external_id": _Spec("str"),
    "name": _Spec("str"),
    "subject": _Spec("str"),
    "description": _Spec("str"),
    "status": _Spec("int", choices=lambda o: (*STATUSES, *o.custom_statuses)),
    "priority": _Spec("int", choices=lambda o: PRIORITIES),
    "source": _Spec("int", choices=lambda o: o.sources),
    "type": _Spec("str", choices=lambda o: o.ticket_types),
    "tags": _Spec("strings"),
    "group_id": _Spec("id", nullable=True, choices=lambda o: o.groups),
    "responder_id": _Spec("id", nullable=True),  # null unassigns
    "company_id": _Spec("id", nullable=True),
    "product_id": _Spec("id", nullable=True),
    "email_config_id": _Spec("id"),
    "cc_emails": _Spec("emails"),
    "due_by": _Spec("datetime"),
    "fr_due_by": _Spec("datetime"),
    "custom_fields": _Spec("object"),
    "parent_id": _Spec("id"),
}
_SERVICE_FIELDS: Final[dict[str, _Spec]] = {
    "impact": _Spec("int", choices=lambda o: SERVICE_LEVELS),
    "urgency": _Spec("int", choices=lambda o: SERVICE_LEVELS),
    "workspace_id": _Spec("id", choices=lambda o: o.workspaces),
    "department_id": _Spec("id", nullable=True),
    "category": _Spec("str", nullable=True),
    "sub_category": _Spec("str", nullable=True),
    "bypass_mandatory": _Spec("bool"),
}
# Freshdesk's fields that Freshservice's ticket does not have.
_DESK_ONLY: Final = frozenset(
    {"twitter_id", "facebook_id", "unique_external_id", "company_id", "product_id", "parent_id"}
)
_SERVICE_REQUESTER_FIELDS: Final = ("requester_id", "email", "phone")
_CREATE_ONLY: Final = frozenset({"parent_id", "workspace_id"})
_UPDATE_ONLY: Final = frozenset({"bypass_mandatory"})
_NOTE_FIELDS: Final[dict[str, _Spec]] = {
    "body": _Spec("str"),
    "private": _Spec("bool"),
    "incoming": _Spec("bool"),
    "notify_emails": _Spec("emails"),
    "user_id": _Spec("id"),
}


def _ticket_errors(
    body: Mapping[str, Any], options: SandboxOptions, *, creating: bool
) -> list[_FieldError]:
    """Every problem with a create or update body that needs no stored data, in body order."""
    known = _ticket_fields(options)
    errors: list[_FieldError] = []
    for name, value in body.items():
        spec = known.get(name)
        if (
            spec is None
            or (name in _CREATE_ONLY and not creating)
            or (name in _UPDATE_ONLY and creating)
        ):
            errors.append(_unexpected(name))
        elif name == "custom_fields" and isinstance(value, dict):
            errors.extend(_custom_field_errors(value, options))
        else:
            problems = _value_errors(name, value, spec, options)
            if name == "tags" and not problems:
                problems = _tag_errors(value)
            errors.extend(problems)
    if creating:
        errors.extend(_create_errors(body, options))
    return errors


def _ticket_fields(options: SandboxOptions) -> dict[str, _Spec]:
    """The body fields this product's ticket takes."""
    if not options.service:
        return _TICKET_FIELDS
    desk = {k: v for k, v in _TICKET_FIELDS.items() if k not in _DESK_ONLY}
    return desk | _SERVICE_FIELDS


def _tag_errors(tags: Sequence[Any]) -> list[_FieldError]:
    """A ticket holds at most 30 tags of at most 32 characters each (docs/protocols.md 1.2)."""
    errors = []
    if len(tags) > MAX_TAGS:
        errors.append(
            _FieldError("tags", f"It should have at most {MAX_TAGS} elements", "invalid_value")
        )
    long = [tag for tag in tags if isinstance(tag, str) and len(tag) > MAX_TAG_LENGTH]
    if long:
        errors.append(
            _FieldError(
                "tags",
                f"Has {len(long)} elements longer than {MAX_TAG_LENGTH} characters",
                "invalid_value",
            )
        )
    return errors


def _create_errors(body: Mapping[str, Any], options: SandboxOptions) -> list[_FieldError]:
    errors = []
    requesters = _SERVICE_REQUESTER_FIELDS if options.service else REQUESTER_FIELDS
    if not any(name in body for name in requesters):
        fields = ", ".join(requesters)
        errors.append(
            _FieldError(
                "requester_id", f"Please fill at least 1 of {fields} fields", "missing_field"
            )
        )
    if "phone" in body and "email" not in body and "name" not in body:
        errors.append(_FieldError("name", "It is required when phone is given", "missing_field"))
    for name in options.required_fields:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append(_FieldError(name, "It should not be blank", "missing_field"))
    return errors


def _note_errors(body: Mapping[str, Any]) -> list[_FieldError]:
    errors: list[_FieldError] = []
    for name, value in body.items():
        spec = _NOTE_FIELDS.get(name)
        if spec is None:
            errors.append(_unexpected(name))
        else:
            errors.extend(_value_errors(name, value, spec, None))
    text = body.get("body")
    if text is None or (isinstance(text, str) and not text.strip()):
        errors.append(_FieldError("body", "It should not be blank", "missing_field"))
    return errors


def _custom_field_errors(values: Mapping[str, Any], options: SandboxOptions) -> list[_FieldError]:
    errors = []
    for name, value in values.items():
        field = f"custom_fields.{name}"
        if name not in options.custom_fields:
            errors.append(_unexpected(field))
        elif isinstance(value, list | dict):
            errors.append(_mismatch(field, value, "String, Number, Boolean or null"))
    return errors


def _value_errors(
    name: str, value: Any, spec: _Spec, options: SandboxOptions | None
) -> list[_FieldError]:
    if value is None:
        return [] if spec.nullable else [_mismatch(name, value, _EXPECTED[spec.kind])]
    if not _has_type(value, spec.kind):
        return [_mismatch(name, value, _EXPECTED[spec.kind])]
    if spec.kind in ("strings", "emails") and not all(isinstance(v, str) for v in value):
        return [
            _FieldError(name, "It should contain elements of type String only", "datatype_mismatch")
        ]
    emails = [value] if spec.kind == "email" else value if spec.kind == "emails" else []
    if any(_EMAIL.fullmatch(e) is None for e in emails):
        return [
            _FieldError(name, "It should be in the 'valid email address' format", "invalid_value")
        ]
    if spec.kind == "datetime" and _parse_time(value) is None:
        return [_FieldError(name, "It should be in the 'valid date-time' format", "invalid_value")]
    allowed = spec.choices(options) if spec.choices is not None and options is not None else ()
    if allowed and value not in allowed:
        listed = ",".join(str(choice) for choice in allowed)
        return [_FieldError(name, f"It should be one of these values: '{listed}'", "invalid_value")]
    return []


def _has_type(value: Any, kind: _Kind) -> bool:
    if kind == "int":
        return _is_int(value)
    if kind == "id":
        return _is_int(value) and value > 0
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("strings", "emails"):
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    # JSON true/false decode to bool, a subclass of int; the API calls those a type mismatch.
    return isinstance(value, int) and not isinstance(value, bool)


def _unexpected(field: str) -> _FieldError:
    return _FieldError(field, "Unexpected/invalid field in request", "invalid_field")


def _mismatch(field: str, value: Any, expected: str) -> _FieldError:
    got = _json_type(value)
    return _FieldError(
        field, f"Value set is of type {got}.It should be a/an {expected}", "datatype_mismatch"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Number"
    if isinstance(value, str):
        return "String"
    return "Array" if isinstance(value, list) else "key/value pair"


class _Params:
    """A query-string reader that collects every problem, as body validation does."""

    def __init__(self, request: web.Request, allowed: Collection[str]) -> None:
        self._query = request.query
        self.errors = [_unexpected(name) for name in self._query if name not in allowed]

    def raw(self, name: str) -> str | None:
        """The parameter as sent, unchecked."""
        return self._query.get(name)

    def number(self, name: str, default: int, high: int | None = None) -> int:
        value = self.optional_number(name)
        if value is None:
            return default
        if high is not None and value > high:
            self.errors.append(
                _FieldError(name, f"It should be between 1 and {high}", "invalid_value")
            )
            return default
        return value

    def optional_number(self, name: str) -> int | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            self.errors.append(
                _FieldError(
                    name,
                    f"Value set is {raw!r}.It should be a/an Positive Integer",
                    "datatype_mismatch",
                )
            )
            return None
        return int(raw)

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        raw = self._query.get(name, default)
        if raw not in choices:
            self.errors.append(_choice_error(name, choices))
            return default
        return raw

    def since(self, name: str) -> datetime | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        parsed = _parse_time(raw)
        if parsed is None:
            self.errors.append(
                _FieldError(name, "It should be in the 'valid date-time' format", "invalid_value")
            )
        return parsed

    def includes(self, choices: Sequence[str]) -> set[str]:
        wanted = set(_include_items(self._query.get("include")))
        if not wanted <= set(choices):
            self.errors.append(_choice_error("include", choices))
        return wanted

    def done(self) -> None:
        if self.errors:
            raise _invalid(self.errors)


def _choice_error(name: str, choices: Sequence[str]) -> _FieldError:
    return _FieldError(
        name, f"It should be one of these values: '{','.join(choices)}'", "invalid_value"
    )


def _include_items(raw: str | None) -> list[str]:
    return [item.strip() for item in raw.split(",")] if raw else []
