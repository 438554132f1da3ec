"""simulacra.codecs.emulator."""
