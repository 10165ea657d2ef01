"""The CLI's requests to `stratum up`, signed as the API requires (`stratum_host.api.auth`).

Who the CLI is: the publisher whose seed STRATUM_PUBLISHER_SEED_FILE names (it then sees
its own tenant only), else the local operator, whose seed `stratum up` keeps in
`<data_dir>/nkeys/stratum.seed` (every tenant), else nobody (unsigned: only for a
Stratum that does not require signatures).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path

import httpx

from stratum.bus.nkeys import CORE_IDENTITY
from stratum.config import Settings
from stratum.trust.signing import sign_event
from stratum_host.api.auth import request_target

SEED_ENV = "STRATUM_PUBLISHER_SEED_FILE"


class SignedRequest(httpx.Auth):
    requires_request_body = True

    def __init__(self, seed: str) -> None:
        self._seed = seed

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        path = request.url.raw_path.split(b"?", 1)[0]
        target = request_target(request.method, path, request.url.query)
        now_ms = int(time.time() * 1000)
        request.headers.update(sign_event(self._seed, target, request.content, now_ms))
        yield request


def api_auth(settings: Settings) -> SignedRequest | None:
    named = os.environ.get(SEED_ENV)
    path = Path(named) if named else settings.data_dir / "nkeys" / f"{CORE_IDENTITY}.seed"
    if not path.is_file():
        return None
    return SignedRequest(path.read_text().strip())
