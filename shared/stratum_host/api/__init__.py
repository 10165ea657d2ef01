"""Stratum's HTTP API: health, runs (from the projector's read models), graph and plans."""
