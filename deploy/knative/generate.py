"""Writes deploy/knative/ from the functions' declarations (run from the repo root:
`.venv/bin/python deploy/knative/generate.py`); the manifests are made by
`stratum_host.manifests`, and tests/unit/test_knative_manifests.py checks the files
still match the code."""

from pathlib import Path

from stratum_host.manifests import write

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    write(here, here.parent.parent)
