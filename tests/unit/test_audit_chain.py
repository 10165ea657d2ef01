"""The audit trail's records and hash chain (pure: no servers, no files)."""

from __future__ import annotations

import itertools

import orjson
import pytest

from stratum.trust.audit import AuditRecord, order_key, record_of
from stratum.trust.audit_chain import GENESIS, ChainWriter, chain, link_hash, verify_bytes

RUNS = [
    {
        "_id": f"run-{n}",
        "tenant": "acme",
        "created_at": f"2026-01-01T00:00:0{n}.000000Z",
        "status": "Succeeded",
        "actor": "source:tests",
        "inputs_hash": "a" * 64,
    }
    for n in range(5)
]


def export() -> list[bytes]:
    """Five chained lines, without their newlines."""
    return chain(record_of(run).model_dump(mode="json") for run in RUNS).splitlines()


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def retouched(line: bytes, **changes: object) -> bytes:
    """`line` with record fields changed and its own hash recomputed (a careful forger)."""
    entry = orjson.loads(line)
    entry["record"] |= changes
    entry["hash"] = link_hash(entry["seq"], entry["prev"], entry["record"])
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


def test_an_export_verifies_and_reports_its_head() -> None:
    lines = export()
    report = verify_bytes(joined(lines))
    assert report.ok and report.lines == 5
    assert report.head == orjson.loads(lines[-1])["hash"]
    assert orjson.loads(lines[0])["prev"] == GENESIS
    # each line carries the hash of the one before
    for before, after in itertools.pairwise(lines):
        assert orjson.loads(after)["prev"] == orjson.loads(before)["hash"]


def test_an_empty_export_verifies() -> None:
    assert verify_bytes(b"").ok
    assert verify_bytes(b"").head == GENESIS


def test_the_writer_is_deterministic() -> None:
    assert chain([{"a": 1, "b": [1, 2]}]) == chain([{"b": [1, 2], "a": 1}])
    writer = ChainWriter()
    writer.line({"x": 1})
    assert writer.count == 1 and writer.head != GENESIS


def changed_value(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b'"Succeeded"', b'"Failed"')
    return lines


def changed_and_rehashed(lines: list[bytes]) -> list[bytes]:
    lines[2] = retouched(lines[2], status="Failed")
    return lines


def deleted(lines: list[bytes]) -> list[bytes]:
    del lines[2]
    return lines


def reordered(lines: list[bytes]) -> list[bytes]:
    lines[1], lines[2] = lines[2], lines[1]
    return lines


def first_changed(lines: list[bytes]) -> list[bytes]:
    lines[0] = lines[0].replace(b'"acme"', b'"beta"')
    return lines


def inserted(lines: list[bytes]) -> list[bytes]:
    lines.insert(3, lines[3])
    return lines


def respaced(lines: list[bytes]) -> list[bytes]:
    lines[1] = orjson.dumps(orjson.loads(lines[1]), option=orjson.OPT_INDENT_2).replace(b"\n", b"")
    return lines


def garbage(lines: list[bytes]) -> list[bytes]:
    lines[4] = b"{not json"
    return lines


TAMPERING = {
    "a value changed": (changed_value, 3, "content does not match its hash"),
    "a value changed, its hash recomputed": (changed_and_rehashed, 4, "prev is not line 3"),
    "a line deleted": (deleted, 3, "sequence number is 4, expected 3"),
    "two lines swapped": (reordered, 2, "sequence number is 3, expected 2"),
    "the first line changed": (first_changed, 1, "content does not match its hash"),
    "a line repeated": (inserted, 5, "sequence number is 4, expected 5"),
    "a line reformatted": (respaced, 2, "not in canonical form"),
    "a line that is not JSON": (garbage, 5, "not JSON"),
}


@pytest.mark.parametrize(("tamper", "line", "why"), list(TAMPERING.values()), ids=list(TAMPERING))
def test_tampering_fails_naming_the_first_bad_line(tamper: object, line: int, why: str) -> None:
    assert callable(tamper)
    report = verify_bytes(joined(tamper(export())))
    assert not report.ok
    assert report.bad_line == line
    assert why in (report.reason or "")
    assert report.lines == line - 1  # everything before it held


def test_a_file_cut_short_still_chains_but_not_to_the_head() -> None:
    lines = export()
    full = verify_bytes(joined(lines))
    cut = verify_bytes(joined(lines[:-1]))
    assert cut.ok and cut.head != full.head  # hence `verify --head`


def test_an_empty_line_in_the_middle_is_tampering() -> None:
    lines = export()
    lines.insert(2, b"")
    report = verify_bytes(joined(lines))
    assert report.bad_line == 3 and report.reason == "empty line"


def test_a_record_says_who_what_and_under_which_leases_and_nothing_else() -> None:
    run = {
        "id": "run-1",
        "tenant": "acme",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "status": "Succeeded",
        "actor": "publisher:ci",
        "actor_key": "UABC",
        "topic": "crate.push",
        "event_id": "e1",
        "event_data": {"secret": "never in the trail"},
        "decision": {"allowed": True},
        "policy_ids": ["ci-may-push"],
        "graph_version": "g1",
        "inputs_hash": "i" * 64,
        "outputs_hash": "o" * 64,
    }
    executions = [
        {
            "node": "build",
            "attempts": [
                {"attempt": 1, "idempotency_key": "run-1/build/1", "credential_lease": "lease-1"},
                {"attempt": 2, "idempotency_key": "run-1/build/2", "credential_lease": None},
            ],
        },
        {"node": "lint", "attempts": [{"attempt": 1, "credential_lease": {"lease_id": "l-2"}}]},
    ]
    compensations = [{"node": "build", "attempts": 2}]  # a count: no leases to read
    record = record_of(run, executions, compensations)
    assert record.run_id == "run-1" and record.decision == "allow"
    assert record.policy_ids == ["ci-may-push"] and record.actor_key == "UABC"
    assert [(u.node, u.attempt, u.lease_id) for u in record.credential_leases] == [
        ("build", 1, "lease-1"),
        ("lint", 1, "l-2"),
    ]
    assert "never in the trail" not in record.model_dump_json()


def test_a_record_of_a_run_with_none_of_the_optional_facts() -> None:
    record = record_of({"_id": "run-2", "tenant": "acme", "created_at": "t", "status": "Denied"})
    assert record.decision == "deny"  # only authorization denies a run
    assert record.graph_version is None and record.credential_leases == []
    assert record_of({"_id": "r", "tenant": "a", "status": "Running"}).decision is None


def test_records_order_by_time_then_run_id() -> None:
    records = [
        AuditRecord(timestamp="2", run_id="b", tenant="t", status="s"),
        AuditRecord(timestamp="1", run_id="z", tenant="t", status="s"),
        AuditRecord(timestamp="2", run_id="a", tenant="t", status="s"),
    ]
    assert [r.run_id for r in sorted(records, key=order_key)] == ["z", "a", "b"]
