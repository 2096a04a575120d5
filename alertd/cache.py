"""The writer's cache of live incidents by key, holding each either decoded or folded.

A start loads every live incident folded (`codec.Folded`: what the writer's indexes need, the
rest packed), so a million of them load in seconds and take half the memory; the first read
that needs the whole incident (`get`, `values`) decodes it (`codec.unfold`) and keeps the
`Incident` in its place, so the writer never decodes one twice and behaves as if every
incident had been decoded at start. Reads that only need the index fields (`entry`) and the
key set never decode anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from alertd import codec
from alertd.codec import Folded
from alertd.model import Incident, IncidentKey

# Told about each incident decoded from its folded form (the engine re-checks its timer).
Unfolded = Callable[[Folded, Incident], None]


class IncidentCache:
    """Live incidents by key; folded ones are decoded on first `get`. Not thread-safe, except
    `entry`, which only reads (the store's purge asks it from the store's thread)."""

    __slots__ = ("_entries", "_folded", "_unfolded")

    def __init__(self, unfolded: Unfolded | None = None) -> None:
        self._entries: dict[IncidentKey, Incident | Folded] = {}
        self._folded = 0  # how many entries are folded
        self._unfolded = unfolded

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[IncidentKey]:
        return iter(self._entries)

    def __setitem__(self, key: IncidentKey, incident: Incident) -> None:
        if self._folded and isinstance(self._entries.get(key), Folded):
            self._folded -= 1
        self._entries[key] = incident

    def get(self, key: IncidentKey) -> Incident | None:
        """The incident, decoded (once: it then stays decoded)."""
        entry = self._entries.get(key)
        if isinstance(entry, Folded):
            return self._unfold(key, entry)
        return entry

    def peek(self, key: IncidentKey) -> Incident | None:
        """The incident, decoded but left folded in the cache (a pass over every incident,
        which must not leave a million of them decoded)."""
        entry = self._entries.get(key)
        return codec.unfold(entry) if isinstance(entry, Folded) else entry

    def entry(self, key: IncidentKey) -> Incident | Folded | None:
        """What the cache holds for `key`, as it is (never decodes)."""
        return self._entries.get(key)

    def fold(self, folded: Folded) -> None:
        """Hold `folded` under its key until it is first read."""
        if not isinstance(self._entries.get(folded.key), Folded):
            self._folded += 1
        self._entries[folded.key] = folded

    def pop(self, key: IncidentKey) -> Incident | Folded | None:
        entry = self._entries.pop(key, None)
        if isinstance(entry, Folded):
            self._folded -= 1
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._folded = 0

    def values(self) -> Iterator[Incident]:
        """Every incident, decoded (and kept decoded). Do not add or remove keys meanwhile;
        replacing a folded entry by its incident does not change the dict's size."""
        entries = self._entries
        for key, entry in entries.items():
            yield self._unfold(key, entry) if isinstance(entry, Folded) else entry

    def folded(self) -> int:
        """How many are still folded."""
        return self._folded

    def _unfold(self, key: IncidentKey, folded: Folded) -> Incident:
        incident = codec.unfold(folded)
        self._entries[key] = incident
        self._folded -= 1
        if self._unfolded is not None:
            self._unfolded(folded, incident)
        return incident
