import numpy as np
import pytest

from simulacra.codecs.emulator import Emulator, compile_table
from simulacra.codecs.emulator.neural import MlpModel, fit_mlp
from simulacra.errors import CodecError

N = 12
XS = np.arange(1 << N, dtype=np.uint64)


def _threshold_table():
    # Two weighted thresholds: no symmetry, not affine, not a bit polynomial.
    w = np.random.default_rng(3).integers(1, 40, N)
    bits = ((XS[:, None] >> np.arange(N, dtype=np.uint64)) & np.uint64(1)).astype(np.int64)
    s = bits @ w
    return (s > w.sum() // 2).astype(np.uint64) * 5 + (s > w.sum() // 3).astype(np.uint64)


@pytest.fixture(scope="module")
def model():
    return fit_mlp(_threshold_table(), N, 3, hidden=8, steps=300, seed=7)


def test_training_is_deterministic(model):
    again = fit_mlp(_threshold_table(), N, 3, hidden=8, steps=300, seed=7)
    assert again.to_obj() == model.to_obj()


def test_torch_path_equals_integer_path(model):
    assert model.evaluate_torch(XS).tolist() == model.evaluate(XS).tolist()


def test_integer_model_round_trips(model):
    back = MlpModel.from_obj(model.to_obj(), N, 3)
    assert back.evaluate(XS).tolist() == model.evaluate(XS).tolist()
    # A learned decoder is mostly right; fixes carry the rest.
    assert np.mean(model.evaluate(XS) == _threshold_table()) > 0.9


def test_neural_region_with_latent_fixes_is_exact():
    table = _threshold_table()
    emu = compile_table(table, N, 3, heuristics={"mlp"})
    report = emu.report()
    assert report["shares"] == {"mlp": 1.0}
    assert report["fixes"]["output_fixes"] == 0
    assert report["fixes"]["latent_fixes"] == len(emu.latent_fixes)
    assert emu.query(XS).tolist() == table.tolist()
    back = Emulator.from_bytes(emu.to_bytes())
    assert back.query(XS).tolist() == table.tolist()
    u = back.uncertainty(XS)
    assert 0.0 <= float(u.min()) and float(u.max()) <= 1.0 and float(u.max()) > 0.0


def test_without_latent_fixes_every_miss_is_an_output_fix():
    table = _threshold_table()
    emu = compile_table(table, N, 3, heuristics={"mlp"}, latent_fixes=False)
    assert emu.report()["fixes"]["latent_fixes"] == 0
    assert emu.query(XS).tolist() == table.tolist()


def test_unknown_heuristic():
    with pytest.raises(CodecError, match="unknown heuristics"):
        compile_table(_threshold_table(), N, 3, heuristics={"magic"})


def test_bits_mode_for_many_outputs():
    # 9 output bits with 512 distinct values: one logit per bit, identity denoiser.
    table = XS >> np.uint64(3)
    model = fit_mlp(table, N, 9, hidden=8, steps=100, seed=1)
    assert model.bits_mode and model.latent_bits == 9
    assert model.evaluate_torch(XS).tolist() == model.evaluate(XS).tolist()
    emu = compile_table(table, N, 9, heuristics={"mlp"})
    assert emu.report()["shares"] == {"mlp": 1.0}
    assert emu.report()["fixes"]["output_fixes"] == 0
    assert emu.query(XS).tolist() == table.tolist()
    assert [emu(int(x)) for x in XS[:300]] == table[:300].tolist()


def test_compiler_keeps_the_cheaper_of_neural_and_level_tables():
    # Level tables (mdd) now store this threshold in fewer bytes than the network plus
    # its latent fixes: the full search must not pick the network here.
    table = _threshold_table()
    emu = compile_table(table, N, 3)
    neural = compile_table(table, N, 3, heuristics={"mlp"})
    assert emu.report()["shares"] == {"mdd": 1.0}
    assert emu.nbytes < neural.nbytes < (1 << N) * 3 // 8
    assert emu.query(XS).tolist() == table.tolist()
