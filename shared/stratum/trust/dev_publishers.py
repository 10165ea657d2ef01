"""Publishers for local development, so `stratum emit` signs out of the box.

For each tenant in `dev_publishers`, `stratum up` registers a publisher `local-<tenant>`
once and keeps its seed in `<data_dir>/publishers/<tenant>.seed` (mode 0600), where
`stratum emit --tenant <tenant>` finds it. Production leaves `dev_publishers` empty and
registers publishers with `stratum publisher add`, whose seed only its owner keeps.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from stratum.clock import iso, utc_now
from stratum.store import PublisherRecord, RunStore
from stratum.trust.signing import new_user_seed, public_key


def seed_path(data_dir: Path, tenant: str) -> Path:
    return data_dir / "publishers" / f"{tenant}.seed"


def write_seed(path: Path, seed: str) -> None:
    """Write a seed readable by its owner only (replacing an older one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(seed + "\n")


async def ensure_dev_publishers(store: RunStore, data_dir: Path, tenants: Iterable[str]) -> None:
    for tenant in tenants:
        path = seed_path(data_dir, tenant)
        name = f"local-{tenant}"
        known = {record.name: record for record in await store.publishers(tenant)}
        if path.is_file() and name in known:
            record = known[name]
            if record.active and record.public_key == public_key(path.read_text().strip()):
                continue
        if name in known:
            continue  # revoked, or its seed is gone: leave it to the operator
        seed = new_user_seed()
        await store.add_publisher(
            PublisherRecord(
                name=name, tenant=tenant, public_key=public_key(seed), created_at=iso(utc_now())
            )
        )
        write_seed(path, seed)
