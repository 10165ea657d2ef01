"""What a run is, beside its events: its statuses, the saga order, the tenant limits."""
