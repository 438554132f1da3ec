"""simulacra.codecs.files."""
