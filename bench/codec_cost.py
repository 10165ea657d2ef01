"""What SurrealDB's CBOR costs per pipeline, the SDK's pure-Python codec against Stratum's
(`stratum.store.codec`, cbor2's C extension): every request and response of the measured
pipelines is recorded as it passes, then encoded and decoded again by each, timed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stratum.store import codec


@dataclass
class Corpus:
    """The requests (values) and responses (bytes) of the measured round trips."""

    requests: list[Any] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)


@contextlib.contextmanager
def recording() -> Iterator[Corpus]:
    """Record what goes through the codec the SDK uses (Stratum's, once a store is open)."""
    from surrealdb.connections import async_embedded
    from surrealdb.request_message.descriptors import cbor_ws

    corpus = Corpus()
    encode: Callable[[Any], bytes] = getattr(cbor_ws, "encode")  # noqa: B009
    decode: Callable[[bytes], Any] = getattr(async_embedded, "decode")  # noqa: B009

    def recorded_encode(value: Any) -> bytes:
        corpus.requests.append(value)
        return encode(value)

    def recorded_decode(data: bytes) -> Any:
        corpus.responses.append(bytes(data))
        return decode(data)

    setattr(cbor_ws, "encode", recorded_encode)  # noqa: B010
    setattr(async_embedded, "decode", recorded_decode)  # noqa: B010
    try:
        yield corpus
    finally:
        setattr(cbor_ws, "encode", encode)  # noqa: B010
        setattr(async_embedded, "decode", decode)  # noqa: B010


def _seconds(work: Callable[[], object], repeat: int = 5) -> float:
    """The best of `repeat` timings of `work` (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def compare(corpus: Corpus, pipelines: int) -> dict[str, Any]:
    from surrealdb.data.cbor import decode as sdk_decode
    from surrealdb.data.cbor import encode as sdk_encode

    def run(encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> float:
        return _seconds(lambda: [encode(v) for v in corpus.requests]) + _seconds(
            lambda: [decode(b) for b in corpus.responses]
        )

    return {
        "round_trips_per_pipeline": len(corpus.requests) / pipelines,
        "sdk_ms": run(sdk_encode, sdk_decode) * 1000 / pipelines,
        "stratum_ms": run(codec.encode, codec.decode) * 1000 / pipelines,
    }


def report(result: dict[str, Any]) -> str:
    return (
        f"CBOR per pipeline         SDK's codec {result['sdk_ms']:.2f} ms, Stratum's "
        f"{result['stratum_ms']:.2f} ms (encode and decode of "
        f"{result['round_trips_per_pipeline']:.1f} round trips)"
    )
