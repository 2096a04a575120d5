"""[escalation] (levels per priority, stop_on_ack) and [updates] (how often an open incident's
ticket gets a situation note), read into an `EscalationPolicy`."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from alertd.config.reader import _bool, _duration, _strings, _Table, _tags
from alertd.durations import parse_duration
from alertd.escalation import DEFAULT_CADENCE, DEFAULT_LEVELS, EscalationLevel, EscalationPolicy
from alertd.model import Priority

_LEVEL_KEYS = ("name", "after", "group_id", "responder_id", "priority", "note",
               "notify_emails", "tags")  # fmt: skip


def _escalation(t: _Table, updates: _Table) -> EscalationPolicy:
    priorities = tuple(p.value for p in Priority)
    t.check_keys(("stop_on_ack", *priorities))
    levels = dict(DEFAULT_LEVELS)
    for priority in Priority:
        if priority.value in t.data:
            levels[priority] = _levels(t, priority.value)
    updates.check_keys(("public", *priorities))
    cadence = dict(DEFAULT_CADENCE)
    for priority in Priority:
        text = updates.get(priority.value, str, 'a duration like "1h", or "none"')
        if text is None:
            continue
        if text == "none":
            cadence[priority] = None
            continue
        try:
            cadence[priority] = parse_duration(text)
        except ValueError as exc:
            updates.add(priority.value, f'{exc}, or "none"')
    return EscalationPolicy(
        levels=MappingProxyType(levels),
        stop_on_ack=_bool(t, "stop_on_ack", True),
        cadence=MappingProxyType(cadence),
        public_updates=_bool(updates, "public", False),
    )


def _levels(t: _Table, name: str) -> tuple[EscalationLevel, ...]:
    raw = t.data[name]
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        t.add(name, "expected an array of tables ([[escalation.<priority>]] levels)")
        return ()
    levels: list[EscalationLevel] = []
    for n, data in enumerate(raw, 1):
        level = _Table(data, f"{t.key(name)}[{n}]", t.problems)
        level.check_keys(_LEVEL_KEYS)
        after = _duration(level, "after", timedelta(0))
        if "after" not in level.data:
            level.add("after", "required: how long after opening this level fires")
        elif levels and after <= levels[-1].after:
            level.add("after", "levels must come in increasing order of `after`")
        priority = level.get("priority", str, 'a string: "raise" or a priority')
        if priority is not None and priority != "raise" and priority not in set(Priority):
            level.add("priority", f'expected "raise" or one of {", ".join(Priority)}, '
                                  f"got {priority!r}")  # fmt: skip
            priority = None
        levels.append(
            EscalationLevel(
                name=level.get("name", str, "a string") or f"level {n}",
                after=after,
                group_id=level.get("group_id", int, "an integer (a group id)"),
                responder_id=level.get("responder_id", int, "an integer (an agent id)"),
                priority=priority,
                note=level.get("note", str, "a string") or "",
                notify_emails=_strings(level, "notify_emails", ()),
                tags=_tags(level, "tags"),
            )
        )
    return tuple(levels)
