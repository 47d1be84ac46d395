"""The model a server answers with, and how it switches to a new alias holder without a restart.

Usage:
    holder = ModelHolder(ServedModel(model, "3"), loader=lambda: registry.load_chat_model(name, "prod"),
                         probe=lambda: registry.alias_version(name, "prod"))
    served = holder.current        # a request takes this once and uses it to the end
    holder.reload()                # {"changed": True, "version": "4", "previous": "3"}

A new version is loaded completely (files downloaded, sha256 verified, ONNX session built) and answers one
warm-up request before a single reference is swapped: a request never sees a half-loaded model, requests in
flight finish on the model they started with, and a version that fails to load leaves the old one serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from slmops.inference.chat_model import ChatModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    model: ChatModel
    version: str | None  # the registry version; None for a local folder


class ReloadError(RuntimeError):
    pass


class ModelHolder:
    def __init__(
        self,
        served: ServedModel,
        loader: Callable[[], tuple[ChatModel, str]] | None = None,
        probe: Callable[[], str | None] | None = None,
    ):
        self._current = served
        self.loader, self.probe = loader, probe
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        # Told of every reload that loaded something: ("changed" | "failed", the version now serving).
        self.on_reload: Callable[[str, str | None], None] = lambda outcome, version: None

    @property
    def current(self) -> ServedModel:
        return self._current  # one attribute read: atomic, so a request gets either the old or the new model

    @property
    def can_reload(self) -> bool:
        return self.loader is not None

    def reload(self, force: bool = False) -> dict:
        """Switch to the alias's holder if it changed (or ``force``). Raises ``ReloadError``; the old model
        keeps serving then."""
        if self.loader is None:
            raise ReloadError("this server serves a local folder, not a registry alias: restart it to change")
        with self._reload_lock:  # one reload at a time; a second caller waits and then finds nothing to do
            previous = self._current.version
            try:
                if not force and self.probe is not None and self.probe() == previous:
                    return {"changed": False, "version": previous, "previous": previous}
                model, version = self.loader()
                model.chat([{"role": "user", "content": "warm-up"}], max_tokens=1)  # it can answer
            except Exception as err:  # the old model stays; the reason is kept for /health
                self.last_error = f"{type(err).__name__}: {err}"
                log.error("reload failed, still serving version %s: %s", previous, self.last_error)
                self.on_reload("failed", previous)
                raise ReloadError(f"{self.last_error}; still serving version {previous}") from err
            self._current = ServedModel(model, version)
            self.last_error = None
            self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
            log.warning("now serving version %s (was %s)", version, previous)
            self.on_reload("changed", version)
            return {"changed": version != previous, "version": version, "previous": previous}


class ReloadWatcher:
    """Poll the alias every ``interval_s`` on a daemon thread and reload when its holder changed."""

    def __init__(self, holder: ModelHolder, interval_s: float):
        self.holder, self.interval_s = holder, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)

    def start(self) -> ReloadWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                outcome = self.holder.reload()
            except ReloadError:
                continue  # logged and shown on /health; try again next round
            if outcome["changed"]:
                log.warning("reload by the alias poller: version %s, was %s", outcome["version"], outcome["previous"])
