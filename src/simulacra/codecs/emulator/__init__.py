"""simulacra.codecs.emulator: compile a program segment into an exact emulator.

::

    fn ─► compile_emulator ─► Emulator ─► .query(xs) / emu(x)   exact on every input
                                   └────► .save(path) ─► load_emulator(path)
"""

from simulacra.codecs.emulator.compiler import compile_emulator, compile_table
from simulacra.codecs.emulator.emulator import CODEC_VERSION, Emulator, load_emulator

__all__ = ["compile_emulator", "compile_table", "load_emulator", "Emulator", "CODEC_VERSION"]
