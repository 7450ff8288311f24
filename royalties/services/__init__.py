"""Use cases. Each takes plain values and a session, and owns the transaction:
it commits on success and rolls back on any error, so a failed call writes nothing."""
