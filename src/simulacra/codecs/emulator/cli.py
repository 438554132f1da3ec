"""``simulacra emu``: compile, query, inspect, patch and probe ``.emu`` artifacts.

::

    simulacra emu compile MODULE:FUNC --in-bits N --out-bits M -o F.emu   fn ─► compile ─► F.emu
    simulacra emu query   F.emu X [X ...]                                 F.emu ─► y per x
    simulacra emu inspect F.emu                                           sections, heuristics, fixes
    simulacra emu patch   F.emu X=Y [X=Y ...] -o G.emu                    F.emu ─► G.emu (F kept)
    simulacra emu probe   F.emu [--lines N]                               where outputs change

``MODULE`` is a dotted module name or a path to a ``.py`` file. Integers are
decimal or ``0x`` hex. Every subcommand takes ``--json``; errors are one line.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from simulacra.config import add_option
from simulacra.errors import CodecError, ConfigError, NotFound

__all__ = ["register", "load_function", "parse_int", "parse_pair"]

MAX_IN_BITS = 26
MAX_OUT_BITS = 64


# --- argument parsing ----------------------------------------------------------


def parse_int(text: str) -> int:
    """``"42"``, ``"0x2a"`` (or ``0b``/``0o``) -> int >= 0; ``ConfigError`` otherwise."""
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise ConfigError(f"not an integer: {text!r} (use decimal or 0x hex)") from None
    if value < 0:
        raise ConfigError(f"negative input: {text!r}")
    return value


def parse_pair(text: str) -> tuple[int, int]:
    """``"X=Y"`` -> ``(X, Y)``."""
    x, sep, y = text.partition("=")
    if not sep:
        raise ConfigError(f"patch must look like X=Y, got {text!r}")
    return parse_int(x), parse_int(y)


def load_function(spec: str) -> Callable[..., Any]:
    """``"pkg.mod:func"`` or ``"path/to/file.py:func"`` -> the callable."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected MODULE:FUNC, got {spec!r}")
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise NotFound(f"no such file: {path}")
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            if mod_spec is None or mod_spec.loader is None:
                raise ConfigError(f"cannot load {path} as a module")
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            # Like ``python -m``: a module in the working directory is importable.
            cwd = str(Path.cwd())
            added = cwd not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(cwd)
    except ImportError as exc:
        raise NotFound(f"cannot import {module_name!r}: {exc}") from None
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise NotFound(f"{module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise ConfigError(f"{spec} is not callable")
    return fn


def _guarded(fn: Callable[..., Any], spec: str) -> Callable[..., Any]:
    """``fn`` whose own exceptions become one-line ``CodecError``s, not tracebacks."""

    def call(x: Any) -> Any:
        try:
            return fn(x)
        except Exception as exc:
            raise CodecError(f"{spec} raised {type(exc).__name__}: {exc}") from exc

    return call


def _in_bits(value: str) -> int:
    n = parse_int(value)
    if not 1 <= n <= MAX_IN_BITS:
        raise ConfigError(f"--in-bits must be 1..{MAX_IN_BITS}, got {n}")
    return n


def _out_bits(value: str) -> int:
    n = parse_int(value)
    if not 1 <= n <= MAX_OUT_BITS:
        raise ConfigError(f"--out-bits must be 1..{MAX_OUT_BITS}, got {n}")
    return n


# --- JSON and text output -----------------------------------------------------


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays, paths and tuples -> JSON-ready values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _emit_json(obj: Any) -> None:
    print(json.dumps(_plain(obj), indent=2, sort_keys=False))


def _text_lines(value: Any, indent: int = 0) -> Iterator[str]:
    """YAML-like lines: nested dicts indent, lists of scalars stay on one line."""
    pad = "  " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if _nested(v):
                yield f"{pad}{k}:"
                yield from _text_lines(v, indent + 1)
            else:
                yield f"{pad}{k}: {_scalar(v)}"
    elif isinstance(value, list):
        for v in value:
            lines = list(_text_lines(v, indent + 1)) if _nested(v) else [_scalar(v)]
            # The first line of an item rides on its dash.
            yield f"{pad}- {lines[0].lstrip()}"
            yield from lines[1:]
    else:
        yield f"{pad}{_scalar(value)}"


def _nested(v: Any) -> bool:
    if isinstance(v, dict):
        return bool(v)
    return isinstance(v, list) and any(isinstance(i, dict | list) for i in v)


def _scalar(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(i) for i in v) + "]"
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


# --- codec access -------------------------------------------------------------


def _codec() -> Any:
    try:
        return importlib.import_module("simulacra.codecs.emulator")
    except ImportError as exc:  # pragma: no cover - only while the codec is being built
        raise CodecError(f"emulator codec unavailable: {exc}") from None


def _load(path: Path) -> Any:
    if not path.is_file():
        raise NotFound(f"no such artifact: {path}")
    try:
        return _codec().load_emulator(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def _save(emu: Any, path: Path) -> None:
    try:
        emu.save(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def _in_bits_of(emu: Any) -> int | None:
    value = getattr(emu, "in_bits", None)
    if value is None:
        value = emu.report().get("in_bits")
    return None if value is None else int(value)


class _Progress:
    """``progress(stage, done, total)`` -> one tqdm bar per stage (on a terminal only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            from tqdm import tqdm

            self.stage = stage
            # disable=None: tqdm shows the bar only when stderr is a terminal.
            self.bar = tqdm(total=total or None, desc=stage, unit="", leave=False, disable=None)
        bar = self.bar
        if bar is not None:
            if total and bar.total != total:
                bar.total = total
            bar.update(max(0, done - bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --- handlers -------------------------------------------------------------------


def _cmd_compile(args: argparse.Namespace) -> int:
    in_bits = _in_bits(args.in_bits)
    out_bits = _out_bits(args.out_bits)
    fn = load_function(args.function)
    codec = _codec()
    progress = _Progress(enabled=not args.json)
    t0 = time.perf_counter()
    try:
        emu = codec.compile_emulator(
            _guarded(fn, args.function),
            in_bits,
            out_bits,
            vectorized=args.vectorized,
            seed=args.seed,
            progress=progress,
        )
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    _save(emu, args.output)
    summary = {
        "path": str(args.output),
        "function": args.function,
        "in_bits": in_bits,
        "out_bits": out_bits,
        "nbytes": int(emu.nbytes),
        "packed_bytes": -(-(1 << in_bits) * out_bits // 8),
        "seconds": round(seconds, 3),
    }
    if args.json:
        _emit_json(summary)
    else:
        print(
            f"wrote {args.output}: {summary['nbytes']:,} bytes "
            f"(packed table {summary['packed_bytes']:,}), {in_bits}->{out_bits} bits, "
            f"compiled in {seconds:.1f} s"
        )
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    import numpy as np

    xs = [parse_int(x) for x in args.inputs]
    emu = _load(args.artifact)
    in_bits = _in_bits_of(emu)
    if in_bits is not None:
        for x in xs:
            if x >> in_bits:
                raise ConfigError(f"input {x:#x} does not fit in {in_bits} bits")
    ys = emu.query(np.array(xs, dtype=np.uint64)).tolist()
    if args.json:
        _emit_json({"results": [{"x": x, "y": int(y)} for x, y in zip(xs, ys, strict=True)]})
    else:
        for y in ys:
            print(hex(int(y)) if args.hex else int(y))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    emu = _load(args.artifact)
    report = dict(emu.report())
    report.setdefault("path", str(args.artifact))
    report.setdefault("nbytes", int(emu.nbytes))
    if args.json:
        _emit_json(report)
    else:
        for line in _text_lines(_plain(report)):
            print(line)
    return 0


def _cmd_patch(args: argparse.Namespace) -> int:
    pairs = [parse_pair(p) for p in args.pairs]
    if not pairs:
        raise ConfigError("nothing to patch: give X=Y pairs")
    emu = _load(args.artifact)
    in_bits = _in_bits_of(emu)
    out_bits = getattr(emu, "out_bits", None)
    for x, y in pairs:
        if in_bits is not None and x >> in_bits:
            raise ConfigError(f"input {x:#x} does not fit in {in_bits} bits")
        if out_bits is not None and y >> int(out_bits):
            raise ConfigError(f"output {y:#x} does not fit in {out_bits} bits")
    patched = emu.patch(dict(pairs))
    _save(patched, args.output)
    summary = {
        "path": str(args.output),
        "from": str(args.artifact),
        "patches": len(dict(pairs)),
        "nbytes": int(patched.nbytes),
        "nbytes_before": int(emu.nbytes),
    }
    if args.json:
        _emit_json(summary)
    else:
        print(
            f"wrote {args.output}: {summary['patches']} patch(es), "
            f"{summary['nbytes_before']:,} -> {summary['nbytes']:,} bytes"
        )
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    emu = _load(args.artifact)
    if args.lines < 1:
        raise ConfigError(f"--lines must be at least 1, got {args.lines}")
    result = emu.boundaries(lines=args.lines, samples=args.samples, seed=args.seed, mode=args.mode)
    if args.json:
        _emit_json(result)
        return 0
    steps, changes = int(result.get("steps", 0)), int(result.get("changes", 0))
    print(
        f"{len(result.get('lines', []))} {result.get('mode', args.mode)} line(s), "
        f"{steps:,} steps, {changes:,} output changes "
        f"(rate {float(result.get('change_rate', 0.0)):.3f})"
    )
    for i, line in enumerate(result.get("lines", [])):
        how = f"step {line['step']:#x}" if "step" in line else "bit flips"
        found = line.get("changes", [])
        # Each change is [t, x_before, x_after, y_before, y_after]; show the first few.
        shown = ", ".join(f"{c[1]:#x}->{c[2]:#x}: {c[3]:#x}->{c[4]:#x}" for c in found[:3])
        more = f", ... (+{len(found) - 3})" if len(found) > 3 else ""
        print(
            f"  line {i}: start {line['start']:#x}, {how}: {len(found)} change(s)"
            + (f": {shown}{more}" if found else "")
        )
    return 0


# --- registration -----------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``simulacra emu ...`` to the top-level parser."""
    emu = subparsers.add_parser("emu", help="compile and use exact neural emulators")
    sub = emu.add_subparsers(dest="emu_command", metavar="EMU_COMMAND")
    emu.set_defaults(handler=lambda args: _usage(emu))

    p = sub.add_parser("compile", help="compile MODULE:FUNC into an .emu artifact")
    p.add_argument("function", metavar="MODULE:FUNC", help="dotted module or file.py, and name")
    # Widths are checked by the handler, so a bad one is our one-line error, exit 1.
    p.add_argument("--in-bits", required=True, help="input width, 1..26")
    p.add_argument("--out-bits", required=True, help="output width, 1..64")
    p.add_argument("-o", "--output", required=True, type=Path, help="artifact to write")
    p.add_argument("--vectorized", action="store_true", help="FUNC maps a uint64 array to an array")
    add_option(p, "--seed", default=0, type=int, help="training seed")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=_cmd_compile)

    p = sub.add_parser("query", help="answer inputs from an artifact")
    p.add_argument("artifact", type=Path, metavar="F.emu")
    p.add_argument("inputs", nargs="+", metavar="X", help="decimal or 0x hex")
    p.add_argument("--hex", action="store_true", help="print outputs in hex")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_query)

    p = sub.add_parser("inspect", help="sections, heuristics, fixes, verified domain")
    p.add_argument("artifact", type=Path, metavar="F.emu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("patch", help="override outputs, writing a new artifact")
    p.add_argument("artifact", type=Path, metavar="F.emu")
    p.add_argument("pairs", nargs="+", metavar="X=Y")
    p.add_argument("-o", "--output", required=True, type=Path, help="new artifact")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_patch)

    p = sub.add_parser("probe", help="probe lines through input space for output changes")
    p.add_argument("artifact", type=Path, metavar="F.emu")
    add_option(p, "--lines", default=8, type=int, help="lines to probe")
    p.add_argument("--samples", default=256, type=int, help="points per integer line")
    p.add_argument(
        "--mode",
        choices=("int", "bits"),
        default="int",
        help="int: x = start + t*step; bits: flip one input bit per step",
    )
    p.add_argument("--seed", default=0, type=int, help="seed for the lines")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_probe)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
