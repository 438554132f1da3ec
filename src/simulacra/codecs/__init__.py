"""simulacra.codecs."""
