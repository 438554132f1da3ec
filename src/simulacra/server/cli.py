"""``simulacra serve`` and ``simulacra users``.

::

    simulacra serve [--host H] [--port P] [--data DIR] [--app NAME] [--reference]
                    [--ice-server URL]... [--turn-secret S] [--turn-ttl SECONDS]
        ─► first start: compiles the app's emulators, progress bars on stderr
        ─► Server ─► "simulacra serving 2048 at http://H:P/?token=T" (once /healthz is ready)
    simulacra users add NAME [--role control|view] [--data DIR]   ─► token, last line
    simulacra users ls [--data DIR] [--json]

Every flag also reads ``SIMULACRA_<FLAG>`` (``SIMULACRA_PORT=0`` picks a free port);
the repeatable ``--ice-server`` reads ``SIMULACRA_ICE_SERVERS``, comma-separated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from simulacra.apps import APP_NAMES, get_app
from simulacra.config import add_option, env_name
from simulacra.errors import ConfigError
from simulacra.protocol.ice import ice_url_problem
from simulacra.server.auth import ROLES
from simulacra.server.config import MIN_TURN_TTL, ServerConfig
from simulacra.server.server import Server
from simulacra.server.store import Store

__all__ = ["register"]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {port}")
    return port


def _ice_url(text: str) -> str:
    problem = ice_url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _turn_ttl(text: str) -> float:
    try:
        ttl = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"TURN TTL must be seconds, got {text!r}") from None
    if not MIN_TURN_TTL <= ttl < float("inf"):
        raise argparse.ArgumentTypeError(
            f"TURN TTL must be {MIN_TURN_TTL:g} s or more, got {text!r}"
        )
    return ttl


ICE_SERVERS_ENV = env_name("--ice-servers")


def _ice_servers(flags: list[str] | None) -> tuple[str, ...]:
    """``--ice-server`` flags when given, else ``SIMULACRA_ICE_SERVERS`` (comma-separated)."""
    if flags is not None:
        return tuple(flags)
    # add_option maps one flag to one value; a list from one variable is split here.
    raw = os.environ.get(ICE_SERVERS_ENV, "")
    urls = tuple(url.strip() for url in raw.split(",") if url.strip())
    for url in urls:
        problem = ice_url_problem(url)
        if problem is not None:
            raise ConfigError(f"{problem} (from {ICE_SERVERS_ENV})")
    return urls


def _add_data(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "--data", default="data", type=Path, help="data directory")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser("serve", help="serve apps to browsers and headless clients")
    add_option(serve, "--host", default="127.0.0.1", help="interface to listen on")
    add_option(serve, "--port", default=8080, type=_port, help="TCP port; 0 picks a free one")
    _add_data(serve)
    add_option(serve, "--app", default="2048", help="app a client gets when it names none")
    add_option(
        serve,
        "--mqtt",
        default=None,
        help="MQTT broker, mqtt://[user:pass@]host:port; 'off' for none; unset: embedded broker",
    )
    add_option(serve, "--node", default="", help="this node's name in MQTT topics (hostname-pid)")
    serve.add_argument(
        "--reference",
        action="store_true",
        default=os.environ.get(env_name("--reference"), "") not in ("", "0", "false", "no"),
        help="run apps on their reference code instead of the emulators (for comparison)"
        f" [env {env_name('--reference')}]",
    )
    serve.add_argument(
        "--ice-server",
        dest="ice_servers",
        action="append",
        type=_ice_url,
        metavar="URL",
        help="STUN/TURN server for WebRTC peers (stun:host:port, turn:host:port?transport=udp,"
        f" stuns:, turns:); repeatable [env {ICE_SERVERS_ENV}, comma-separated, default none]",
    )
    add_option(
        serve,
        "--turn-secret",
        default="",
        help="coturn's static-auth-secret: TURN URLs get credentials minted from it"
        " (prefer the environment: flags show in ps)",
    )
    add_option(
        serve, "--turn-ttl", default=3600.0, type=_turn_ttl, help="seconds TURN credentials last"
    )
    serve.set_defaults(handler=_serve)

    users = subparsers.add_parser("users", help="manage users and their tokens")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = users_sub.add_parser("add", help="create a user; prints its token as the last line")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="control")
    _add_data(add)
    add.set_defaults(handler=_users_add)
    ls = users_sub.add_parser("ls", help="list users")
    _add_data(ls)
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.set_defaults(handler=_users_ls)


def _serve(args: argparse.Namespace) -> int:
    config = ServerConfig(
        host=args.host,
        port=args.port,
        data_dir=args.data,
        app=args.app,
        reference=args.reference,
        progress=True,
        mqtt=args.mqtt,
        node=args.node,
        ice_servers=_ice_servers(args.ice_servers),
        turn_secret=args.turn_secret,
        turn_ttl=args.turn_ttl,
    )
    return asyncio.run(_run_server(config))


def _compile_note(config: ServerConfig) -> str | None:
    """A line for stderr when the default app's emulators still have to be compiled."""
    if config.reference or config.app not in APP_NAMES:
        return None  # the server itself reports an unknown app
    from simulacra.apps.emulation import segment_summary

    app_cls = get_app(config.app)
    missing = [s.segment for s in segment_summary(app_cls, config.data_dir) if not s.compiled]
    if not missing:
        return None
    where = Path(config.data_dir) / "emulators" / app_cls.name
    return (
        f"simulacra: compiling {len(missing)} segment(s) of {config.app} into emulators"
        f" (first start; cached in {where})"
    )


async def _run_server(config: ServerConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        stop.set()
        # A second Ctrl-C while shutting down interrupts for real.
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    note = await asyncio.to_thread(_compile_note, config)
    if note:
        print(note, file=sys.stderr, flush=True)
    server = Server(config)
    # Ctrl-C during a first start's compile stops at once, not after it.
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        print("simulacra: interrupted while starting", file=sys.stderr, flush=True)
        return 130
    stopping.cancel()
    starting.result()  # a failed start raises its one-line error here
    try:
        mode = " (reference code)" if config.reference else ""
        print(
            f"simulacra serving {config.app}{mode} at {server.url}/?token={server.admin_token}",
            flush=True,
        )
        await stop.wait()
        print("simulacra: shutting down", file=sys.stderr, flush=True)
    finally:
        await server.close()
    return 0


def _users_add(args: argparse.Namespace) -> int:
    with Store(args.data) as store:
        token = store.add_user(args.name, args.role)
    print(f"user {args.name} ({args.role}) created; token:", file=sys.stderr)
    print(token, flush=True)
    return 0


def _users_ls(args: argparse.Namespace) -> int:
    with Store(args.data) as store:
        users = store.users()
    if args.json:
        print(json.dumps([{"name": u.name, "role": u.role, "created": u.created} for u in users]))
    else:
        for u in users:
            print(f"{u.name}\t{u.role}")
    return 0
