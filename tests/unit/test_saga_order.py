"""The compensator's order: every succeeded node, latest stage first, reverse lexical."""

from __future__ import annotations

from functions.compensator.core import undo_order


def test_undo_order_is_the_mirror_of_the_plan_and_skips_unfinished_nodes() -> None:
    executions = {
        "fmt": {"stage": 0, "status": "succeeded"},
        "lint": {"stage": 0, "status": "succeeded"},
        "tag": {"stage": 1, "status": "succeeded"},
        "upload": {"stage": 1, "status": "succeeded"},
        "sign": {"stage": 1, "status": "cancelled"},
        "publish": {"stage": 2, "status": "failed"},
    }
    assert undo_order(executions) == [(1, "upload"), (1, "tag"), (0, "lint"), (0, "fmt")]


def test_nothing_succeeded_means_nothing_to_undo() -> None:
    assert undo_order({"a": {"stage": 0, "status": "failed"}}) == []
