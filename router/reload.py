"""Hot reload of the routing config: on a file change (watchfiles) or SIGHUP.

A valid new config replaces the old one in a single assignment, so a request
sees either the old rules or the new, never a mix; requests already in flight
keep the decision they started with. An invalid config is refused: the error is
logged and the old rules go on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from router.config_source import ConfigSource
from router.exceptions import ConfigError
from router.memory_router import MemoryRouter
from router.metrics import Metrics
from router.rules import load_rules

Trigger = Literal["file", "sighup"]


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    at: float
    trigger: Trigger
    ok: bool
    error: str | None

    def as_dict(self) -> dict[str, object]:
        return {"at": self.at, "trigger": self.trigger, "ok": self.ok, "error": self.error}


class ReloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            "memory_router_config_info",
            "The active routing config: 1 for its sha256 (first 16 hex digits).",
            ["sha256"],
            registry=registry,
        )
        self.reloads = Counter(
            "memory_router_config_reloads",
            "Config reload attempts, by trigger (file, sighup) and outcome.",
            ["trigger", "outcome"],
            registry=registry,
        )
        self.last_time = Gauge(
            "memory_router_config_last_reload_timestamp_seconds",
            "Unix time of the last reload attempt.",
            registry=registry,
        )
        self.last_ok = Gauge(
            "memory_router_config_last_reload_success",
            "1 if the last reload attempt succeeded, 0 if it was refused.",
            registry=registry,
        )

    def active(self, digest: str) -> None:
        self.info.clear()
        self.info.labels(digest).set(1)


class ConfigReloader:
    """Reloads the rules file ``source`` names into ``router`` and keeps the outcome for
    status and metrics."""

    def __init__(
        self,
        router: MemoryRouter,
        source: ConfigSource,
        metrics: Metrics,
        logger: logging.Logger,
        *,
        force_polling: bool = False,
        debounce_ms: int = 200,
    ) -> None:
        self.router = router
        self.source = source
        self.path = source.path
        self._metrics = metrics
        self._reload_metrics = ReloadMetrics(metrics.registry)
        self._reload_metrics.active(router.rules.digest)
        self._log = logger
        self._force_polling = force_polling
        self._debounce_ms = debounce_ms
        self._lock = threading.Lock()
        self.loaded_at = time.time()
        self.last: ReloadStatus | None = None
        self._stop = asyncio.Event()

    def reload(self, trigger: Trigger) -> bool:
        """Load the file now; swap it in if valid. Returns whether it was."""
        with self._lock:
            error: str | None
            try:
                rules = load_rules(self.path)
            except ConfigError as exc:
                ok, error = False, str(exc)
                self._log.error(
                    "config reload (%s) refused, keeping the old rules: %s", trigger, exc
                )
            else:
                ok, error = True, None
                old = self.router.rules
                changed = rules.digest != old.digest
                self.router.rules = rules
                self._metrics.user_ids.set_always(rules.known_user_ids())
                self._reload_metrics.active(rules.digest)
                self.loaded_at = time.time()
                self._log.info(
                    "config reloaded (%s): %s sha256 %s, %d rules, rate limits: %s (%s)%s",
                    trigger,
                    rules.source,
                    rules.digest,
                    len(rules.patterns),
                    rules.limits.describe(),
                    "changed" if rules.limits != old.limits else "unchanged",
                    "" if changed else "; file unchanged",
                )
            self.last = ReloadStatus(time.time(), trigger, ok, error)
            self._reload_metrics.reloads.labels(trigger, "success" if ok else "failure").inc()
            self._reload_metrics.last_time.set(self.last.at)
            self._reload_metrics.last_ok.set(1 if ok else 0)
            return ok

    def status(self) -> dict[str, object]:
        rules = self.router.rules
        return {
            **self.source.as_dict(),
            "sha256": rules.digest,
            "loaded_at": self.loaded_at,
            "last_reload": self.last.as_dict() if self.last else None,
        }

    async def watch(self) -> None:
        """Reload whenever the file changes, until ``stop`` is called."""
        from watchfiles import Change, awatch

        target = self.path.resolve()
        directory = target.parent
        names = {self.path.name, target.name}

        def relevant(change: Change, changed: str) -> bool:
            return Path(changed).name in names or Path(changed).resolve() == target

        async for _ in awatch(
            directory,
            watch_filter=relevant,
            stop_event=self._stop,
            debounce=self._debounce_ms,
            step=50,
            force_polling=self._force_polling,
            poll_delay_ms=200,
            recursive=False,
        ):
            self.reload("file")

    def stop(self) -> None:
        self._stop.set()

    def install_sighup(self) -> bool:
        """Reload on SIGHUP. Only possible in the main thread; returns whether installed."""
        if threading.current_thread() is not threading.main_thread():
            return False
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload, "sighup")
        except (NotImplementedError, RuntimeError, ValueError):
            return False
        return True

    def remove_sighup(self) -> None:
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
