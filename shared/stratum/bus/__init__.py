"""The message bus: NATS JetStream, its subjects, and who may publish what on it."""
