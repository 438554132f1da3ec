"""simulacra.client."""
