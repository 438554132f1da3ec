"""simulacra.protocol."""
