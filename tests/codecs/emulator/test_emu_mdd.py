import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.emulator import compile_emulator, compile_table
from simulacra.codecs.emulator.mdd import FAST_ENTRIES, LevelTables, fit_level_tables
from simulacra.codecs.emulator.models import MddModel, model_from_obj
from simulacra.errors import CorruptArtifact


def _all(n):
    return np.arange(1 << n, dtype=np.uint64)


def test_exact_bytes_of_a_tiny_table():
    # y = x & 1 over 2 bits, one group, natural order, one 1-bit digit:
    # level 0 = the single row [0, 1] (leaf bits 0, 1), top = [0, 0] (1-bit ids of 1 row: 0 bits).
    lt = LevelTables.build(np.array([0, 1, 0, 1], dtype=np.uint64), 2, 1, 0, 1, [1])
    assert lt.to_obj() == [0, 1, [1], [1], b"\x02"]
    assert lt.query(np.arange(4)).tolist() == [0, 1, 0, 1]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 9),
    m=st.integers(1, 12),
    block=st.sampled_from([0, 1, 2]),
    g=st.integers(1, 12),
    k=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    sparse=st.booleans(),
)
def test_any_configuration_round_trips_exactly(n, m, block, g, k, seed, sparse):
    if block and n % block or g > m:
        return
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 1 << m, 1 << n, dtype=np.uint64)
    if sparse:
        table &= np.uint64(rng.integers(0, 1 << m))
        table[rng.integers(0, 1 << n, 3)] = np.uint64((1 << m) - 1)
    ks = [k] * ((n - 1) // k)
    lt = LevelTables.build(table, n, m, block, g, ks)
    back = LevelTables.from_obj(msgpack.unpackb(msgpack.packb(lt.to_obj())), n, m)
    xs = _all(n)
    assert back.query(xs).tolist() == table.tolist()
    assert [back.query_one(int(x)) for x in xs[:64]] == table[:64].tolist()


def test_fast_tables_stay_bounded_and_exact():
    rng = np.random.default_rng(5)
    table = rng.integers(0, 1 << 12, 1 << 18, dtype=np.uint64)
    lt = LevelTables.build(table, 18, 12, 0, 4, [2] * 8)
    fast = lt._accel()
    entries = fast.top.size + sum(t.size for _, t in fast.steps)
    assert entries <= max(FAST_ENTRIES, lt.top.size + sum(t.size for t in lt.levels))
    xs = rng.integers(0, 1 << 18, 5000, dtype=np.uint64)
    assert lt.query(xs).tolist() == table[xs.astype(np.intp)].tolist()


def test_row2048_is_level_tables_under_the_moonshot():
    from simulacra.codecs.emulator.examples import SUITE

    sf = SUITE["row2048"]
    xs = _all(16)
    truth = sf.fn(xs)
    found = fit_level_tables(truth, 16, 16)
    assert found is not None
    lt, bits = found
    # Tiles slide towards tile 0, the low nibble: reading it first is what pays.
    assert lt.block in (1, 4) and lt.g == 4
    assert bits // 8 < 4004 // 2
    assert lt.query(xs).tolist() == truth.tolist()


@pytest.mark.slow
def test_row2048_compiles_to_level_tables():
    from simulacra.codecs.emulator.examples import SUITE

    sf = SUITE["row2048"]
    emu = compile_emulator(sf.fn, 16, 16, vectorized=True)
    assert emu.report()["shares"] == {"mdd": 1.0}
    assert emu.nbytes <= 4004
    xs = _all(16)
    assert emu.query(xs).tolist() == sf.fn(xs).tolist()


def test_compiler_picks_level_tables_when_cheapest():
    # Only the low 4 bits select among 16 random constants, read last in natural
    # order: level tables share the high bits away.
    xs = _all(12)
    consts = np.random.default_rng(2).integers(0, 1 << 10, 16, dtype=np.uint64)
    table = consts[(xs & np.uint64(15)).astype(np.intp)] ^ (xs >> np.uint64(11))
    emu = compile_table(table, 12, 10, heuristics={"mdd"})
    assert emu.report()["shares"] == {"mdd": 1.0}
    assert emu.query(xs).tolist() == table.tolist()
    assert emu.nbytes < 160


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: [5, *o[1:]], "bad block"),
        (lambda o: [o[0], 0, *o[2:]], "bad block or group"),
        (lambda o: [*o[:2], [99, 2], *o[3:]], "bad digit widths"),
        (lambda o: [*o[:4], o[4] + b"\x00"], "length does not match"),
        (lambda o: [*o[:4], b"\xff" * len(o[4])], "point past"),
        (lambda o: o[:4], "malformed"),
    ],
)
def test_corrupt_level_tables(mutate, message):
    table = np.arange(64, dtype=np.uint64) * np.uint64(7) % np.uint64(61)
    lt = LevelTables.build(table, 6, 6, 0, 2, [2, 2])
    with pytest.raises(CorruptArtifact, match=message):
        model_from_obj([9, mutate(lt.to_obj())], 6, 6)
    assert isinstance(model_from_obj([9, lt.to_obj()], 6, 6), MddModel)
