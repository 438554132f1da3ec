"""simulacra.codecs.display."""
