"""The `stratum` command line."""
