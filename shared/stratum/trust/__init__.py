"""Who may do what: signed events, publisher identities, and the tamper-evident audit chain."""
