"""Test doubles for core's protocols (kept out of the package: production code never needs them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from gpi_desktop.core.vocabulary.progress import Progress


@dataclass
class RecordingState:
    """A TaskState that keeps everything it is told; cancels after `cancel_after` results."""

    cancel_after: int | None = None
    statuses: list[str] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    cancel_requested: bool = False

    def set_status(self, message: str) -> None:
        self.statuses.append(message)

    def set_progress(self, progress: Progress) -> None:
        self.progress.append(progress)

    def set_partial_result(self, result: Any) -> None:
        self.results.append(result)
        if self.cancel_after is not None and len(self.results) >= self.cancel_after:
            self.cancel_requested = True

    def is_interruption_requested(self) -> bool:
        return self.cancel_requested


class MemoryKeyring(KeyringBackend):
    """A keyring that lives in a dict, for tests."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        if (service, username) not in self.store:
            raise PasswordDeleteError("not found")
        del self.store[(service, username)]
