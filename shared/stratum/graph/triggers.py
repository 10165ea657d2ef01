"""NATS subject matching for node triggers.

A trigger is a NATS subject pattern over the tenant's event topics, so matching follows
NATS: tokens are split on `.`, `*` matches exactly one token and `>` (only as the last
token) matches one or more trailing tokens.
"""

from __future__ import annotations


def matches(trigger: str, topic: str) -> bool:
    """Whether `topic` (a concrete subject such as `crate.push`) matches `trigger`.

    A topic with an empty token (`crate..push`, `crate.`) never matches: NATS would refuse
    to publish it. A `>` anywhere but last matches nothing, as in NATS.
    """
    topic_tokens = topic.split(".")
    if "" in topic_tokens:
        return False
    pattern = trigger.split(".")
    for position, token in enumerate(pattern):
        if token == ">":
            return position == len(pattern) - 1 and len(topic_tokens) > position
        if position >= len(topic_tokens):
            return False
        if token not in ("*", topic_tokens[position]):
            return False
    return len(pattern) == len(topic_tokens)
