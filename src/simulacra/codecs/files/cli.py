"""``simulacra files``: upload, list, share, revoke, redeem and download over the files API.

::

    simulacra files put PATH                       ─► entry id (progress bar after 2 s)
    simulacra files ls                             ─► your viewer dictionary
    simulacra files share ENTRY --to USER|--anyone [--rights view|download] [--ttl 7d] [--uses N]
                                                   ─► the code (printed once, stored hashed)
    simulacra files revoke CODE                    simulacra files redeem CODE
    simulacra files get CODE|ENTRY -o PATH         ─► redeems a code if needed, downloads,
                                                      checks sha256, then renames into place
    simulacra files inbox                          ─► shares addressed to you
    simulacra files codes                          ─► codes you issued (by id; revoke #ID)

All take ``--url URL --token T [--json]`` (``SIMULACRA_URL``, ``SIMULACRA_TOKEN``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from simulacra.config import add_option
from simulacra.errors import ConfigError
from simulacra.fsutil import atomic_path, human_size

__all__ = ["register", "run_files"]

_ENTRY_ID = re.compile(r"[0-9a-f]{16}")


def _common(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "--url", default="http://127.0.0.1:8080", help="server URL")
    add_option(parser, "--token", default="", help="access token")
    add_option(parser, "--timeout", default=30.0, type=float, help="seconds to wait for a reply")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers: Any) -> None:
    """Add the ``files`` subcommand and its actions."""
    files = subparsers.add_parser(
        "files", help="share files by regeneration code", description=__doc__.splitlines()[0]
    )
    actions = files.add_subparsers(dest="files_action", metavar="ACTION")

    def action(
        name: str, help: str, run: Callable[[Any, argparse.Namespace], Awaitable[Any]]
    ) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help)
        _common(parser)
        parser.set_defaults(handler=lambda a: run_files(a, run))
        return parser

    put = action("put", "upload a file; prints its entry id", _put)
    put.add_argument("path", type=Path)
    put.add_argument("--name", default=None, help="name to store (default: the file's)")
    put.add_argument("--type", default="", help="media type (default: guessed from the name)")

    action("ls", "list your viewer dictionary", _ls)

    share = action("share", "issue a regeneration code; prints it", _share)
    share.add_argument("entry", help="entry id (from put or ls)")
    share.add_argument("--to", default=None, help="recipient user name")
    share.add_argument("--anyone", action="store_true", help="any user may redeem it")
    share.add_argument("--rights", default="view", choices=("view", "download"))
    share.add_argument("--ttl", default="7d", help="lifetime: 7d, 12h, 30m, 90s")
    share.add_argument("--uses", default=1, type=int, help="how many users may redeem it")

    action("revoke", "revoke a code you issued", _revoke).add_argument("code")
    action("redeem", "add a shared file to your viewer dictionary", _redeem).add_argument("code")

    get = action("get", "download a shared file (download rights)", _get)
    get.add_argument("what", metavar="CODE|ENTRY")
    get.add_argument("-o", "--output", type=Path, required=True, help="file to write")

    inbox = action("inbox", "shares addressed to you", _inbox)
    inbox.add_argument("--all", action="store_true", help="also those already delivered")

    action("codes", "codes you issued (ids, never the codes)", _codes)

    files.set_defaults(handler=lambda a: _help(files))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_files(
    args: argparse.Namespace, action: Callable[[Any, argparse.Namespace], Awaitable[Any]]
) -> int:
    """Connect, run ``action``, print its result (JSON or one human line per item)."""
    from simulacra.client.files_api import FilesClient

    async def main() -> Any:
        async with FilesClient(args.url, args.token, timeout=args.timeout) as client:
            return await action(client, args)

    result = asyncio.run(main())
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for line in _human(args.files_action, result):
            print(line)
    return 0


def _human(action: str, result: dict[str, Any]) -> list[str]:
    if action == "put":
        e = result["entry"]
        return [f"{e['id']}  {e['name']}  {human_size(e['size'])}  stored"]
    if action == "ls":
        return [
            f"{e['id']}  {e['rights']:<8}  {human_size(e['size']):>10}  {e['type']:<24}  {e['name']}"
            + (f"  (from {e['from']})" if e["rights"] != "owner" else "")
            for e in result["entries"]
        ]
    if action == "share":
        return [result["code"]]
    if action == "revoke":
        return [f"revoked code #{result['code_id']}"]
    if action == "redeem":
        e = result["entry"]
        return [
            f"{e['id']}  {e['name']}  {human_size(e['size'])}  {e['rights']} (from {e['from']})"
        ]
    if action == "get":
        return [f"{result['path']}  {human_size(result['size'])}  sha256 {result['sha256']}  ok"]
    if action == "codes":
        return [
            f"#{c['id']}  entry {c['entry']}  to {c['to'] or 'anyone'}  {c['rights']}"
            f"  uses left {c['uses_left']}" + ("  revoked" if c["revoked"] else "")
            for c in result["codes"]
        ]
    if action == "inbox":
        return [
            f"#{i['inbox']}  {i['name']}  {human_size(i['size'])}  {i['rights']} from {i['from']}"
            for i in result["items"]
        ]
    return [json.dumps(result)]


def _bar(total: int | None, desc: str) -> Any:
    from tqdm import tqdm

    # delay: no bar at all for transfers done within two seconds.
    return tqdm(
        total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, delay=2.0, leave=False
    )


async def _put(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    path: Path = args.path
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    bar = _bar(size, path.name)
    done = 0

    def progress(acked: int) -> None:
        nonlocal done
        bar.update(acked - done)
        done = acked

    started = time.perf_counter()
    try:
        entry = await client.put(path, name=args.name, type=args.type, progress=progress)
    finally:
        bar.close()
    return {"entry": entry, "seconds": round(time.perf_counter() - started, 3)}


async def _ls(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    return {"entries": await client.ls()}


async def _share(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    reply = await client.share(
        args.entry, to=args.to, rights=args.rights, ttl=args.ttl, uses=args.uses, anyone=args.anyone
    )
    reply.pop("id", None)
    reply.pop("ok", None)
    return reply


async def _revoke(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    return {"code_id": (await client.revoke(args.code))["code_id"]}


async def _redeem(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    return {"entry": await client.redeem(args.code)}


async def _codes(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    return {"codes": (await client.request("codes"))["codes"]}


async def _inbox(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    items = await client.inbox(every=args.all)
    # Items still undelivered were pushed right after connect, before this reply.
    pushed = []
    while not client.inbox_items.empty():
        pushed.append(client.inbox_items.get_nowait())
    seen = {i["inbox"] for i in items}
    merged = [i for i in pushed if i["inbox"] not in seen] + items
    return {"items": sorted(merged, key=lambda i: i["inbox"])}


async def _get(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.output
    what = args.what.strip()
    if _ENTRY_ID.fullmatch(what):
        entry = what
    else:
        entry = (await client.redeem(what))["id"]
    bar = _bar(None, out.name)

    def progress(got: int) -> None:
        bar.update(got - bar.n)

    try:
        # The bytes land under a temporary name: a failed download leaves nothing at ``out``.
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            info, _ = await client.get(entry=entry, sink=fh, progress=progress)
    finally:
        bar.close()
    return {
        "path": str(out),
        "entry": info["id"],
        "size": info["size"],
        "sha256": info.get("sha256", ""),
    }
