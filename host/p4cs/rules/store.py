"""Hot reload: the active RuleSet, swapped atomically; invalid files keep the old rules."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from typing import Callable

from .engine import Decision
from .parser import RuleError
from .ruleset import RuleSet, classify, load_rules

log = logging.getLogger("p4cs.rules")


class RuleStore:
    """Holds the active rule set. Readers take `store.current` once per request (one
    attribute read, atomic); `reload` parses and compiles off to the side and swaps only on
    success."""

    def __init__(self, ruleset: RuleSet | None = None,
                 check: Callable[[RuleSet], list[str]] | None = None) -> None:
        self._current: RuleSet = ruleset if ruleset is not None else RuleSet([], source=None)
        self._lock = threading.Lock()  # serialises reloads, never readers
        self.generation = 0
        self.path: str | None = ruleset.source if ruleset is not None else None
        self.listeners: list[Callable[[RuleSet], None]] = []
        self.check = check      # more errors of a rule set (what the switch cannot do)

    @classmethod
    def from_file(cls, path: str | Path) -> "RuleStore":
        """Raises RuleError if the initial file is invalid."""
        return cls(load_rules(path))

    @property
    def current(self) -> RuleSet:
        return self._current

    def reload(self, path: str | Path) -> list[str]:
        """Parse, compile and swap in `path`. Returns [] on success, else the error messages
        (file:line:col with caret and hint), leaving the active rule set unchanged."""
        with self._lock:
            try:
                rs = load_rules(path)
                problems = self.check(rs) if self.check is not None else []
                if problems:
                    log.warning("rule reload from %s rejected:\n%s", path, "\n".join(problems))
                    return problems
            except RuleError as e:
                log.warning("rule reload from %s rejected:\n%s", path, e)
                return e.messages
            except Exception as e:  # never let a reload take the controller down
                log.exception("rule reload from %s failed", path)
                return [f"{path}: internal error while loading rules: {e!r}"]
            self._current = rs
            self.path = str(path)
            self.generation += 1
            log.info("rules reloaded from %s: %d rules (generation %d)", path, len(rs), self.generation)
        for cb in list(self.listeners):
            try:
                cb(rs)
            except Exception:
                log.exception("rule reload listener failed")
        return []

    def classify(self, raw: bytes, client=None, vip=None, packet: bytes | None = None) -> Decision:
        return classify(self._current, raw, client, vip, packet)


def install_sighup(store: RuleStore, path: str | Path | Callable[[], str], loop: asyncio.AbstractEventLoop | None = None):
    """Reload `path` (or the path a callable returns) into `store` on SIGHUP, inside the running
    asyncio loop. Returns a function that removes the handler."""
    loop = loop or asyncio.get_running_loop()

    def on_hup() -> None:
        p = path() if callable(path) else path
        errors = store.reload(p)
        if errors:
            log.error("SIGHUP: %s rejected, keeping %d active rules", p, len(store.current))

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    return lambda: loop.remove_signal_handler(signal.SIGHUP)
