"""The neural heuristic: an integer MLP decoder, latent fixes, a codebook denoiser.

::

    u (d bits) ─► decoder: h = relu(W1·bits + b1)        int8 weights, int64 accumulators
                           z = W2·h + b2                 one logit per code
                           b = argmax z                  coarse latent code (L bits)
              ─► b ^= latent_fixes[x]                    sparse flips, L bits each
              ─► denoiser: y = codebook[b]               the learned code -> output map
              ─► (emulator) y ^= output_fixes[x]

    bits mode (more than MAX_CODES distinct outputs): one logit per output bit,
    b_j = z_j > 0, the latent code is the output word and the denoiser is the identity.

Training (torch, deterministic: seeded, one thread, deterministic algorithms)
fits a float MLP with a softmax over the codebook (the distinct outputs of the
region, at most ``MAX_CODES``); ``quantize`` turns it into integers so the query
path is numpy integer arithmetic, identical on every machine. A latent fix costs
L = ceil(log2 codes) bits instead of the w output bits an output fix costs.
``evaluate_torch`` runs the same integer network in torch (int64) and must
agree bit for bit; a test pins that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulacra.codecs.emulator.bits import pack_uint, unpack_uint, unzigzag, zigzag
from simulacra.codecs.emulator.models import Model
from simulacra.errors import CorruptArtifact

__all__ = ["MlpModel", "NEURAL_KINDS", "MAX_CODES", "fit_mlp"]

MAX_CODES = 256
_MAX_HIDDEN = 64
_MAX_IN = 26
_U64 = np.uint64


def _bits(u: np.ndarray, d: int) -> np.ndarray:
    return ((u[:, None] >> np.arange(d, dtype=np.uint64)) & _U64(1)).astype(np.int64)


class MlpModel(Model):
    kind = "mlp"
    exact = False

    def __init__(
        self,
        w1: np.ndarray,
        b1: np.ndarray,
        w2: np.ndarray,
        b2: np.ndarray,
        codebook: np.ndarray,
        logit_scale: float,
        uses_latent: bool,
        d: int,
        w: int,
    ) -> None:
        self.w1 = np.asarray(w1, np.int64)  # (d, H) int8 range
        self.b1 = np.asarray(b1, np.int64)  # (H,)
        self.w2 = np.asarray(w2, np.int64)  # (H, C) int8 range
        self.b2 = np.asarray(b2, np.int64)  # (C,)
        self.codebook = np.asarray(codebook, np.uint64)
        self.logit_scale = float(logit_scale)
        self.uses_latent = uses_latent
        self.d, self.w = d, w
        # An empty codebook selects bits mode: one logit per output bit.
        self.bits_mode = self.codebook.size == 0
        self.latent_bits = w if self.bits_mode else max(1, int(self.codebook.size - 1).bit_length())
        self._weights = np.left_shift(1, np.arange(self.w2.shape[1], dtype=np.int64))

    def logits(self, u: np.ndarray) -> np.ndarray:
        h = np.maximum(_bits(u, self.d) @ self.w1 + self.b1, 0)
        return h @ self.w2 + self.b2

    def code(self, u: np.ndarray) -> np.ndarray:
        """The decoder's latent code: a codebook index, or the output bits in bits mode."""
        out = np.empty(u.size, dtype=np.int64)
        for s in range(0, u.size, 1 << 16):
            z = self.logits(u[s : s + (1 << 16)])
            out[s : s + (1 << 16)] = (z > 0) @ self._weights if self.bits_mode else z.argmax(1)
        return out

    def target_code(self, truth: np.ndarray) -> np.ndarray:
        """The latent code the denoiser turns into ``truth`` (truth is in the codebook)."""
        if self.bits_mode:
            return truth.astype(np.int64)
        return np.searchsorted(self.codebook, truth).astype(np.int64)

    def denoise(self, code: np.ndarray) -> np.ndarray:
        if self.bits_mode:
            return code.astype(np.uint64)
        # A flip never leaves the codebook in a compiled artifact; clamp defensively.
        return self.codebook[np.minimum(code, self.codebook.size - 1)]

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return self.denoise(self.code(u))

    def evaluate_latent(self, u: np.ndarray, flips: np.ndarray) -> np.ndarray:
        return self.denoise(self.code(u) ^ flips.astype(np.int64))

    def evaluate_torch(self, u: np.ndarray) -> np.ndarray:
        """The same integer network in torch (int64); equal to ``evaluate``."""
        import torch

        x = torch.from_numpy(_bits(u, self.d))
        h = torch.clamp(x @ torch.from_numpy(self.w1) + torch.from_numpy(self.b1), min=0)
        z = h @ torch.from_numpy(self.w2) + torch.from_numpy(self.b2)
        if self.bits_mode:
            return ((z > 0).long() @ torch.from_numpy(self._weights)).numpy().astype(np.uint64)
        # torch.argmax does not promise the first maximum on ties; emulate numpy's rule.
        top = z.max(dim=1, keepdim=True).values
        idx = torch.arange(z.shape[1]).expand_as(z)
        first = torch.where(z == top, idx, z.shape[1]).min(dim=1).values
        return self.codebook[first.numpy()]

    def margin(self, u: np.ndarray) -> np.ndarray:
        z = self.logits(u)
        if self.bits_mode:
            gap = np.abs(z).min(axis=1).astype(np.float64) / max(self.logit_scale, 1e-9)
            return 2.0 / (1.0 + np.exp(np.minimum(gap, 50.0)))
        if z.shape[1] < 2:
            return np.zeros(u.size)
        part = np.partition(z, -2, axis=1)
        gap = (part[:, -1] - part[:, -2]).astype(np.float64) / max(self.logit_scale, 1e-9)
        return 2.0 / (1.0 + np.exp(np.minimum(gap, 50.0)))

    def to_obj(self) -> list[Any]:
        h, c = self.w1.shape[1], self.w2.shape[1]
        weights = zigzag(np.concatenate([self.w1.ravel(), self.w2.ravel()]))
        biases = zigzag(np.concatenate([self.b1, self.b2]))
        ww = int(weights.max()).bit_length() if weights.size else 0
        bw = int(biases.max()).bit_length() if biases.size else 0
        return [
            h,
            c,
            int(self.uses_latent) | int(self.bits_mode) << 1,
            float(np.float32(self.logit_scale)),
            ww,
            pack_uint(weights, ww),
            bw,
            pack_uint(biases, bw),
            pack_uint(self.codebook, self.w),
        ]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 9:
            raise CorruptArtifact("malformed mlp model")
        h, c, latent, scale, ww, wblob, bw, bblob, book = obj
        if not all(isinstance(v, int) for v in (h, c, latent, ww, bw)) or not isinstance(
            scale, float
        ):
            raise CorruptArtifact("malformed mlp model")
        if not (1 <= h <= _MAX_HIDDEN and 1 <= c <= MAX_CODES and d <= _MAX_IN):
            raise CorruptArtifact("mlp model out of range")
        # int8 weights, biases well inside int64 so accumulators cannot overflow.
        if not (0 <= ww <= 9 and 0 <= bw <= 40):
            raise CorruptArtifact("mlp model out of range")
        if not all(isinstance(b, bytes) for b in (wblob, bblob, book)):
            raise CorruptArtifact("malformed mlp model")
        weights = unzigzag(unpack_uint(wblob, ww, d * h + h * c))
        biases = unzigzag(unpack_uint(bblob, bw, h + c))
        w1 = weights[: d * h].reshape(d, h)
        w2 = weights[d * h :].reshape(h, c)
        if latent >> 2:
            raise CorruptArtifact("mlp model has unknown flags")
        if latent & 2:
            if c != w or book:
                raise CorruptArtifact("mlp bits mode needs one logit per output bit")
            codebook = np.zeros(0, dtype=np.uint64)
        else:
            codebook = unpack_uint(book, w, c)
            if c > 1 and not bool(np.all(codebook[1:] > codebook[:-1])):
                raise CorruptArtifact("mlp codebook is not sorted")
        return cls(w1, biases[:h], w2, biases[h:], codebook, scale, bool(latent & 1), d, w)


NEURAL_KINDS: dict[str, type[Model]] = {"mlp": MlpModel}


def fit_mlp(
    y: np.ndarray,
    d: int,
    w: int,
    *,
    hidden: int = 16,
    steps: int = 1000,
    seed: int = 0,
    uses_latent: bool = False,
    max_rows: int = 1 << 13,
    budget: float | None = None,
) -> MlpModel | None:
    """Train the decoder on (bits -> code) with torch, then quantize to integers.

    With ``budget`` (bytes to beat), training stops after a fifth of its steps
    when, even if the misses then halved, the fixes alone would cost more.
    """
    if d > 20 or d < 2:
        return None
    codebook, codes = np.unique(y, return_inverse=True)
    if codebook.size == 1 or w > 32:
        return None
    bits_mode = codebook.size > MAX_CODES
    if bits_mode:
        codebook = np.zeros(0, dtype=np.uint64)
    import torch

    size = 1 << d
    rng = np.random.default_rng(seed)
    rows = (
        np.arange(size, dtype=np.uint64)
        if size <= max_rows
        else np.sort(rng.choice(size, max_rows, replace=False)).astype(np.uint64)
    )
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(seed)
        x = torch.from_numpy(_bits(rows, d).astype(np.float32))
        picked = rows.astype(np.intp)
        if bits_mode:
            c = w
            t = torch.from_numpy(
                ((y[picked, None] >> np.arange(w, dtype=np.uint64)) & _U64(1)).astype(np.float32)
            )
        else:
            c = codebook.size
            t = torch.from_numpy(codes[picked].astype(np.int64))
        first, second = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, c)
        net = torch.nn.Sequential(first, torch.nn.ReLU(), second)
        opt = torch.optim.Adam(net.parameters(), lr=0.03)
        for step in range(steps):
            if budget is not None and step == steps // 5:
                with torch.no_grad():
                    z = net(x)
                    wrong = ((z > 0).float() != t).any(dim=1) if bits_mode else z.argmax(dim=1) != t
                misses = float(wrong.float().mean()) * size / 2
                latent = w if bits_mode else max(1, int(c - 1).bit_length())
                fix_bits = 2 + max(0.0, d - np.log2(max(misses, 1.0))) + latent
                if misses * fix_bits / 8 > budget:
                    return None
            opt.zero_grad()
            out = net(x)
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(out, t)
                if bits_mode
                else torch.nn.functional.cross_entropy(out, t)
            )
            loss.backward()
            opt.step()
        w1f = first.weight.detach().numpy().T.astype(np.float64)
        b1f = first.bias.detach().numpy().astype(np.float64)
        w2f = second.weight.detach().numpy().T.astype(np.float64)
        b2f = second.bias.detach().numpy().astype(np.float64)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    s1 = 127.0 / max(float(np.abs(w1f).max()), 1e-9)
    s2 = 127.0 / max(float(np.abs(w2f).max()), 1e-9)
    w1 = np.rint(w1f * s1).astype(np.int64)
    b1 = np.rint(b1f * s1).astype(np.int64)
    w2 = np.rint(w2f * s2).astype(np.int64)
    b2 = np.rint(b2f * s1 * s2).astype(np.int64)
    return MlpModel(w1, b1, w2, b2, codebook, s1 * s2, uses_latent, d, w)
