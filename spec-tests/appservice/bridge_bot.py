"""A small bridge-like application service on mautrix-python, for the appservice spec-test.

It behaves the way a puppeting bridge does, with the "remote network" being an echo:

- at start it checks the homeserver as mautrix's own bridges do (/versions, registering its
  bot user, whoami as that user, the appservice ping round trip) and sets the bot's name;
- when its bot user is invited to a room, the bot joins;
- for every text message from a user who is neither the bot nor one of its ghosts, the ghost
  ``@echo_<sender localpart>:<server>`` is registered (if it is not yet), named, brought
  into the room (the bot invites it when it may not join by itself) and says
  ``echo: <body>`` there.

Everything the homeserver is asked goes through mautrix's AppService and IntentAPI; its
transactions arrive at mautrix's aiohttp server on 127.0.0.1. Run it from the virtualenv of
scripts/install-appservice-bot:

    python bridge_bot.py --homeserver http://127.0.0.1:8008 --server-name localhost \
        --registration registration.yaml --port 29333

Every option can also come from the environment (BRIDGE_HOMESERVER, BRIDGE_SERVER_NAME,
BRIDGE_REGISTRATION, BRIDGE_PORT). The line "bridge bot ready" on stdout says it is up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys

import yaml
from mautrix.appservice import AppService, IntentAPI
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore
from mautrix.types import (
    Event,
    EventType,
    Membership,
    MessageEvent,
    StateEvent,
    TextMessageEventContent,
    UserID,
)

GHOST_PREFIX = "echo_"
log = logging.getLogger("bridge")


class MemoryASStateStore(MemoryStateStore, ASStateStore):
    """mautrix's state cache kept in memory: every run starts knowing nothing, so each ghost
    is really registered against the homeserver (mautrix ignores M_USER_IN_USE)."""

    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homeserver", default=env("BRIDGE_HOMESERVER"),
                        help="client API base URL, e.g. http://127.0.0.1:8008")
    parser.add_argument("--server-name", default=env("BRIDGE_SERVER_NAME"),
                        help="the homeserver's server name (the part after ':' in user ids)")
    parser.add_argument("--registration", default=env("BRIDGE_REGISTRATION"),
                        help="the appservice registration YAML the homeserver loads too")
    parser.add_argument("--port", type=int, default=env("BRIDGE_PORT"),
                        help="port of the transaction server on 127.0.0.1")
    args = parser.parse_args()
    missing = [name for name in ("homeserver", "server_name", "registration", "port")
               if getattr(args, name) in (None, "")]
    if missing:
        parser.error("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return args


def load_registration(path: str) -> dict:
    with open(path, encoding="utf-8") as file:
        registration = yaml.safe_load(file)
    for key in ("id", "as_token", "hs_token", "sender_localpart", "namespaces"):
        if key not in registration:
            sys.exit(f"{path}: the registration has no {key!r}")
    return registration


class EchoBridge:
    def __init__(self, args: argparse.Namespace, registration: dict) -> None:
        self.server_name = args.server_name
        self.port = args.port
        self.user_regexes = [re.compile(ns["regex"])
                             for ns in registration["namespaces"].get("users", [])]
        self.appservice = AppService(
            server=args.homeserver,
            domain=args.server_name,
            id=registration["id"],
            as_token=registration["as_token"],
            hs_token=registration["hs_token"],
            bot_localpart=registration["sender_localpart"],
            state_store=MemoryASStateStore(),
            log="mau.as",
        )
        self.bot_mxid = self.appservice.bot_mxid
        self.appservice.matrix_event_handler(self.on_event)

    def is_ghost(self, user_id: str) -> bool:
        return user_id.startswith(f"@{GHOST_PREFIX}") and user_id.endswith(f":{self.server_name}")

    def ghost_for(self, sender: str) -> IntentAPI:
        localpart = sender[1:].split(":", 1)[0]
        ghost = UserID(f"@{GHOST_PREFIX}{localpart}:{self.server_name}")
        if not any(regex.fullmatch(ghost) for regex in self.user_regexes):
            log.warning("%s is outside the registration's user namespaces", ghost)
        return self.appservice.intent.user(ghost)

    async def start(self) -> None:
        await self.appservice.start(host="127.0.0.1", port=self.port)
        log.info("transaction server on http://127.0.0.1:%d", self.port)
        bot = self.appservice.intent
        versions = await bot.versions()
        log.info("homeserver speaks %s", ", ".join(str(v) for v in versions.versions))
        await bot.ensure_registered()
        whoami = await bot.whoami()
        log.info("whoami as the bot: %s", whoami.user_id)
        if whoami.user_id != self.bot_mxid:
            raise RuntimeError(f"whoami says {whoami.user_id}, expected {self.bot_mxid}")
        # The homeserver calls POST /_matrix/app/v1/ping on us before it answers this.
        duration = await self.appservice.ping_self(bot.api.get_txn_id())
        log.info("appservice ping round trip: %s ms", duration)
        await bot.set_displayname("Echo bridge bot")
        self.appservice.ready = True
        # The test waits for this line.
        print("bridge bot ready", flush=True)

    async def on_event(self, event: Event) -> None:
        log.info("event %s %s in %s from %s", event.type, getattr(event, "event_id", "-"),
                 getattr(event, "room_id", "-"), getattr(event, "sender", "-"))
        if isinstance(event, StateEvent) and event.type == EventType.ROOM_MEMBER:
            if event.state_key == self.bot_mxid and event.content.membership == Membership.INVITE:
                log.info("invited to %s by %s: joining", event.room_id, event.sender)
                await self.appservice.intent.join_room_by_id(event.room_id)
                log.info("joined %s", event.room_id)
        elif isinstance(event, MessageEvent) and event.type == EventType.ROOM_MESSAGE:
            await self.echo(event)

    async def echo(self, event: MessageEvent) -> None:
        sender = event.sender
        if sender == self.bot_mxid or self.is_ghost(sender):
            return
        body = getattr(event.content, "body", None)
        if not isinstance(body, str):
            return
        ghost = self.ghost_for(sender)
        log.info("echoing %s from %s as %s", event.event_id, sender, ghost.mxid)
        await ghost.ensure_registered()
        localpart = sender[1:].split(":", 1)[0]
        await ghost.set_displayname(f"{localpart} (echo)")
        await ghost.ensure_joined(event.room_id)
        event_id = await ghost.send_message(
            event.room_id, TextMessageEventContent(msgtype="m.text", body=f"echo: {body}"))
        log.info("sent %s as %s in %s", event_id, ghost.mxid, event.room_id)


async def main() -> None:
    args = parse_args()
    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiohttp's access log shows the homeserver's requests to us (transactions, ping).
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    bridge = EchoBridge(args, load_registration(args.registration))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await bridge.appservice.stop()


if __name__ == "__main__":
    asyncio.run(main())
