"""A host's services with a live incident: a tuple while few, a set past that; the same
answers either way (what a host's incident absorbs depends on them)."""

from __future__ import annotations

from alertd.host_index import HostServices


def test_services_come_and_go_the_same_below_and_above_the_small_size() -> None:
    index = HostServices()
    names = [f"svc-{n}" for n in range(40)]
    for name in names:
        index.add("db", name)
        index.add("db", name)  # twice: still once
        assert sorted(index.get("db")) == sorted(names[: names.index(name) + 1])
    index.add("web", "http")
    for name in reversed(names):
        index.discard("db", name)
        index.discard("db", name)  # gone already: nothing happens
    assert list(index.get("db")) == []
    assert list(index.get("web")) == ["http"]
    index.discard("web", "http")
    index.discard("nowhere", "x")
    assert list(index.get("web")) == []
