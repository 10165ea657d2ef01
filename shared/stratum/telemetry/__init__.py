"""Traces, metrics and the trace context that joins a run's hops into one trace."""
