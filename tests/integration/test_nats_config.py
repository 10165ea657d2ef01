"""`stratum nats config` run as a user runs it: the seeds and the server config land where
it says, readable only by their owner, the real nats-server accepts the config, no seed
is printed, and running it again keeps every user."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import uuid
from pathlib import Path

from stratum.bus.deployment import CONFIG, SEEDS
from stratum.bus.nkeys import CORE_IDENTITY
from stratum_host.registry import FUNCTION_NAMES
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
NKEY = re.compile(r'"nkey": "(U[A-Z0-9]{55})"')


def nats_config(out: Path, *args: str, prefix: str = "stratum") -> str:
    env = {**os.environ, "STRATUM_SUBJECT_PREFIX": prefix}
    done = subprocess.run(
        [str(BIN / "stratum"), "nats", "config", "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_seeds_and_a_config_nats_server_accepts(tmp_path: Path) -> None:
    out = tmp_path / "nats"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = tmp_path / "jetstream"
    printed = nats_config(
        out, "--listen", "127.0.0.1:4333", "--store-dir", str(store), prefix=prefix
    )

    config = out / CONFIG
    seeds = {path.stem: path for path in (out / SEEDS).glob("*.seed")}
    assert set(seeds) == {CORE_IDENTITY, *FUNCTION_NAMES}
    assert mode(config) == 0o600
    assert mode(out / SEEDS) == 0o700
    assert {name: mode(path) for name, path in seeds.items()} == dict.fromkeys(seeds, 0o600)

    text = config.read_text()
    assert 'listen: "127.0.0.1:4333"' in text
    assert f'"store_dir": "{store}"' in text
    assert f"{prefix}-stage-executor" in text  # durables under the configured prefix
    assert len(NKEY.findall(text)) == len(seeds)  # one user per identity, no publisher

    assert str(config) in printed and str(out / SEEDS) in printed
    for path in seeds.values():
        assert path.read_text().strip() not in printed  # a seed is never printed
        assert path.read_text().strip() not in text  # the server knows public keys only

    checked = subprocess.run(
        [str(BIN / "nats-server"), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_running_it_again_keeps_every_user(tmp_path: Path) -> None:
    out = tmp_path / "nats"
    nats_config(out)
    before = {path.name: path.read_text() for path in (out / SEEDS).glob("*.seed")}
    users = NKEY.findall((out / CONFIG).read_text())

    nats_config(out, "--listen", "127.0.0.1:4444")

    after = {path.name: path.read_text() for path in (out / SEEDS).glob("*.seed")}
    assert after == before
    text = (out / CONFIG).read_text()
    assert NKEY.findall(text) == users
    assert 'listen: "127.0.0.1:4444"' in text
    assert '"store_dir": "/data/jetstream"' in text  # the compose volume's path by default
