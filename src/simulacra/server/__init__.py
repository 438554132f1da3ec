"""simulacra.server."""
