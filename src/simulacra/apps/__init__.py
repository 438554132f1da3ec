"""simulacra.apps."""
