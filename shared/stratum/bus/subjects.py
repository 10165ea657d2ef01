"""NATS subjects and JetStream stream names, all under one configurable prefix.

Publishers send to `<prefix>.events.<tenant>.<topic...>`; the functions talk to each other
on `<prefix>.<entity>.<event>`; messages a function gave up on go to
`<prefix>.dead.<function>`. A prefix per test (or per deployment) keeps several Stratum
instances apart on one nats-server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TOPIC_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Subjects:
    """Subject and stream names for one Stratum deployment."""

    prefix: str = "stratum"

    @property
    def events_stream(self) -> str:
        return self._stream("EVENTS")

    @property
    def runs_stream(self) -> str:
        return self._stream("RUNS")

    @property
    def dead_stream(self) -> str:
        """Dead letters: kept apart from the runs stream so no function consumes them."""
        return self._stream("DEAD")

    def _stream(self, suffix: str) -> str:
        return f"{self.prefix.upper().replace('.', '_').replace('-', '_')}_{suffix}"

    @property
    def events_wildcard(self) -> str:
        """Everything publishers send: the ingest function's input."""
        return f"{self.prefix}.events.>"

    @property
    def internal_wildcards(self) -> tuple[str, ...]:
        """Everything the functions send each other (the runs stream)."""
        return tuple(f"{self.prefix}.{entity}.>" for entity in INTERNAL_ENTITIES)

    @property
    def dead_wildcard(self) -> str:
        """Every dead letter (the dead stream's subjects)."""
        return f"{self.prefix}.dead.>"

    def dead(self, function: str) -> str:
        """Where `function` puts a message it gave up on."""
        return f"{self.prefix}.dead.{function}"

    def event(self, tenant: str, topic: str) -> str:
        """The subject a publisher uses for `topic` in `tenant`."""
        return f"{self.prefix}.events.{tenant}.{topic}"

    def internal(self, event_type: str) -> str:
        """Subject of an internal event type such as `stratum.run.accepted`."""
        suffix = event_type.removeprefix("stratum.")
        return f"{self.prefix}.{suffix}"

    def split_event_subject(self, subject: str) -> tuple[str, str]:
        """(tenant, topic) of a publisher subject; ValueError says what is wrong."""
        head = f"{self.prefix}.events."
        if not subject.startswith(head):
            raise ValueError(f"subject {subject!r} is not under {head}*")
        rest = subject[len(head) :].split(".")
        if len(rest) < 2:
            raise ValueError(f"subject {subject!r} has no topic after the tenant")
        tenant, topic_tokens = rest[0], rest[1:]
        if not TENANT_PATTERN.match(tenant):
            raise ValueError(f"tenant {tenant!r} must match {TENANT_PATTERN.pattern}")
        for token in topic_tokens:
            if not TOPIC_TOKEN_PATTERN.match(token):
                raise ValueError(f"topic token {token!r} must match {TOPIC_TOKEN_PATTERN.pattern}")
        return tenant, ".".join(topic_tokens)


INTERNAL_ENTITIES = ("ingest", "run", "stage", "node", "compensation")
