"""What the integration tests share: the real `nu`, and the curated PATH scripts see."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stratum.executor import DEFAULT_TOOLS, curated_path

ROOT = Path(__file__).resolve().parents[2]
NU = ROOT / ".venv" / "bin" / "nu"


@pytest.fixture(scope="session")
def tool_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    assert NU.exists(), f"{NU} missing: run `make install`"
    return curated_path(tmp_path_factory.mktemp("tools"), DEFAULT_TOOLS, os.environ["PATH"])
