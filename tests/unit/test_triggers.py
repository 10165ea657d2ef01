"""NATS subject matching of topics against node triggers."""

from __future__ import annotations

import pytest

from stratum.graph import matches

CASES = [
    # (trigger, topic, expected)
    ("crate.push", "crate.push", True),
    ("crate.push", "crate.pull", False),
    ("crate.push", "crate.push.extra", False),
    ("crate.push", "crate", False),
    ("crate.*", "crate.push", True),
    ("crate.*", "crate.push.tag", False),
    ("crate.*", "crate", False),
    ("*.push", "crate.push", True),
    ("*.push", "crate.pull", False),
    ("*", "crate", True),
    ("*", "crate.push", False),
    ("crate.*.done", "crate.build.done", True),
    ("crate.*.done", "crate.build.failed", False),
    ("crate.>", "crate.push", True),
    ("crate.>", "crate.push.tag.v1", True),
    ("crate.>", "crate", False),
    ("crate.>", "release.push", False),
    ("*.>", "crate.push", True),
    ("*.>", "crate", False),
    (">", "crate", True),
    (">", "crate.push.tag", True),
    # `>` only means "the rest" as the last token, as in NATS
    ("crate.>.tag", "crate.push.tag", False),
    # topics with empty tokens are not valid subjects
    ("crate.*", "crate.", False),
    ("*.push", ".push", False),
    (">", "crate..push", False),
    ("crate", "Crate", False),
]


@pytest.mark.parametrize(("trigger", "topic", "expected"), CASES)
def test_matches(trigger: str, topic: str, expected: bool) -> None:
    assert matches(trigger, topic) is expected
