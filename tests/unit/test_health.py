"""Health of a reloadable set (definitions, policies): the load tracker, the /healthz body
and readiness, and `stratum top`'s line for what is degraded. Pure: a clock that moves
when told, gauges in a registry of the test's own."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge

from stratum.clock import iso
from stratum.telemetry.health import LoadState, LoadTracker, health_body, unready
from stratum_host.cli.top import Snapshot, degraded_lines, top_view, with_health
from tests.events import T0
from tests.unit.test_cli_render import text_of


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def after(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def tracked() -> tuple[LoadTracker, Clock, CollectorRegistry]:
    registry = CollectorRegistry()
    degraded = Gauge("t_degraded", "degraded", registry=registry)
    loaded = Gauge("t_loaded", "last good load", registry=registry)
    clock = Clock()
    return LoadTracker(degraded, loaded, clock), clock, registry


def gauges(registry: CollectorRegistry) -> tuple[float | None, float | None]:
    return registry.get_sample_value("t_degraded"), registry.get_sample_value("t_loaded")


def test_a_failure_degrades_since_its_first_occurrence_until_a_load_succeeds() -> None:
    tracker, clock, registry = tracked()
    assert tracker.state(None).degraded  # nothing loaded yet
    assert tracker.succeeded() is False
    loaded_at = clock.now
    assert tracker.state("v1") == LoadState(degraded=False, version="v1", loaded_at=iso(loaded_at))
    assert gauges(registry) == (0.0, loaded_at.timestamp())

    first = clock.after(5)
    tracker.failed("a.ncl:1:2: unexpected token")
    clock.after(5)
    tracker.failed("a.ncl:3:4: still broken")  # the latest error, the streak's start
    assert tracker.state("v1") == LoadState(
        degraded=True,
        version="v1",
        error="a.ncl:3:4: still broken",
        since=iso(first),
        loaded_at=iso(loaded_at),
    )
    assert gauges(registry) == (1.0, loaded_at.timestamp())

    again = clock.after(5)
    assert tracker.succeeded() is True  # it cleared the error
    assert tracker.state("v1") == LoadState(degraded=False, version="v1", loaded_at=iso(again))
    assert gauges(registry) == (0.0, again.timestamp())


def test_degraded_is_live_and_ready_only_nothing_in_force_is_unready() -> None:
    fine = LoadState(degraded=False, version="v1")
    stale = LoadState(degraded=True, version="v1", error="broken", since=iso(T0))
    none = LoadState(degraded=True, error="bad.ncl:1:1: unexpected token")
    assert health_body({"definitions": fine}, function="planner") == {
        "status": "ok",
        "function": "planner",
        "definitions": fine.model_dump(),
    }
    assert health_body({"definitions": fine, "policies": stale})["status"] == "degraded"
    assert health_body({})["status"] == "ok"
    assert unready({"definitions": fine, "policies": stale}) is None
    assert unready({"definitions": none}) == ("no valid definitions: bad.ncl:1:1: unexpected token")


def test_top_says_what_is_degraded_since_when_and_what_still_serves() -> None:
    stale = LoadState(
        degraded=True, version="g-1", error="hot.ncl:3:5: unexpected token", since=iso(T0)
    )
    health = {
        "status": "degraded",
        "definitions": stale.model_dump(),
        "policies": LoadState(degraded=False, version="p-1").model_dump(),
    }
    snap = with_health(Snapshot(graph_version="g-1"), health)
    assert snap.health["definitions"] == stale and not snap.health["policies"].degraded
    assert Snapshot.model_validate(snap.model_dump(mode="json")) == snap  # --json round trip
    [line] = degraded_lines(snap)
    assert line.plain == (
        f"definitions degraded since {iso(T0)} (g-1 still serving): hot.ncl:3:5: unexpected token"
    )
    text = text_of(top_view(snap), width=200)
    assert text.index("definitions degraded") < text.index("Runs")
    assert "policies degraded" not in text

    never = with_health(Snapshot(), {"definitions": {"degraded": True, "error": "bad"}})
    assert degraded_lines(never)[0].plain == "definitions degraded (nothing in force): bad"
    assert with_health(Snapshot(), {"status": "ok"}) == Snapshot()  # an older server
