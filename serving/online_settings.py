"""Settings of the online scoring service, read from environment variables.

`portfolio serve` turns its flags into these variables for the BentoML
process; a container sets them directly. Every variable has a default.

| variable | default | meaning |
|---|---|---|
| `PORTFOLIO_API_KEY` | unset | when set, `/score` and `/portfolio` need `Authorization: Bearer <key>` |
| `PORTFOLIO_MAX_ACCOUNTS` | 1000 | accounts per `/score` request at most |
| `PORTFOLIO_MAX_BODY_BYTES` | 1048576 | request body size limit (1 MiB) |
| `PORTFOLIO_RELOAD_SECONDS` | 30 | how often the `@champion` aliases and the latest snapshot are checked |
| `PORTFOLIO_RETRY_SECONDS` | 5 | how often loading is retried while the service is not ready |
| `PORTFOLIO_SNAPSHOT` | unset | a run folder whose `features.parquet` answers lookups by id (fixed) |
| `PORTFOLIO_RUNS_ROOT` | `<repo>/runs` | without `PORTFOLIO_SNAPSHOT`: the latest completed run under it |
| `PORTFOLIO_TOP_REASONS` | 3 | reasons returned per score |
| `PORTFOLIO_DRAIN_SECONDS` | 2 | after SIGTERM, a worker answers for this long while `/readyz` says 503, then stops |
| `PORTFOLIO_MODEL_SOURCE` | auto | `registry`: resolve `models:/<name>@champion` in MLflow; `bento`: the models packaged in the bento; unset: `bento` when the service runs from a bento, else `registry` |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from serving.api_guard import GuardSettings

ModelSource = Literal["registry", "bento"]
MODEL_SOURCES: tuple[str, ...] = ("registry", "bento")

ENV_API_KEY = "PORTFOLIO_API_KEY"
ENV_MAX_ACCOUNTS = "PORTFOLIO_MAX_ACCOUNTS"
ENV_MAX_BODY_BYTES = "PORTFOLIO_MAX_BODY_BYTES"
ENV_RELOAD_SECONDS = "PORTFOLIO_RELOAD_SECONDS"
ENV_RETRY_SECONDS = "PORTFOLIO_RETRY_SECONDS"
ENV_SNAPSHOT = "PORTFOLIO_SNAPSHOT"
ENV_RUNS_ROOT = "PORTFOLIO_RUNS_ROOT"
ENV_TOP_REASONS = "PORTFOLIO_TOP_REASONS"
ENV_MODEL_SOURCE = "PORTFOLIO_MODEL_SOURCE"
ENV_DRAIN_SECONDS = "PORTFOLIO_DRAIN_SECONDS"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


T = TypeVar("T", int, float)


@dataclass(frozen=True)
class ServiceSettings:
    """What the online service needs to know about its deployment."""

    api_key: str | None = field(default=None, repr=False)
    max_accounts: int = 1000
    max_body_bytes: int = 1_048_576
    reload_seconds: float = 30.0
    retry_seconds: float = 5.0
    snapshot_dir: Path | None = None
    runs_root: Path | None = None
    top_reasons: int = 3
    model_source: ModelSource | None = None  # None: decided by where the service runs
    drain_seconds: float = 2.0  # after SIGTERM: not ready, still answering, then stop

    def __post_init__(self) -> None:
        checks = (
            (ENV_MAX_ACCOUNTS, self.max_accounts, 1),
            (ENV_MAX_BODY_BYTES, self.max_body_bytes, 64),
            (ENV_RELOAD_SECONDS, self.reload_seconds, 0.1),
            (ENV_RETRY_SECONDS, self.retry_seconds, 0.1),
            (ENV_TOP_REASONS, self.top_reasons, 0),
            (ENV_DRAIN_SECONDS, self.drain_seconds, 0),
        )
        for name, value, minimum in checks:
            if value < minimum:
                raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        if self.model_source is not None and self.model_source not in MODEL_SOURCES:
            raise SettingsError(
                f"{ENV_MODEL_SOURCE} must be one of {list(MODEL_SOURCES)}, got {self.model_source!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Settings from environment variables (unset or empty ones keep their default)."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def read(name: str, parse: Callable[[str], T], default: T) -> T:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return parse(raw)
            except ValueError:
                raise SettingsError(
                    f"{name} must be {'an integer' if parse is int else 'a number'}, got {raw!r}"
                ) from None

        def path(name: str) -> Path | None:
            raw = env.get(name, "").strip()
            return Path(raw).expanduser() if raw else None

        return cls(
            api_key=env.get(ENV_API_KEY) or None,
            max_accounts=read(ENV_MAX_ACCOUNTS, int, defaults.max_accounts),
            max_body_bytes=read(ENV_MAX_BODY_BYTES, int, defaults.max_body_bytes),
            reload_seconds=read(ENV_RELOAD_SECONDS, float, defaults.reload_seconds),
            retry_seconds=read(ENV_RETRY_SECONDS, float, defaults.retry_seconds),
            snapshot_dir=path(ENV_SNAPSHOT),
            runs_root=path(ENV_RUNS_ROOT),
            top_reasons=read(ENV_TOP_REASONS, int, defaults.top_reasons),
            model_source=env.get(ENV_MODEL_SOURCE, "").strip() or None,  # type: ignore[arg-type]
            drain_seconds=read(ENV_DRAIN_SECONDS, float, defaults.drain_seconds),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (for a child process)."""
        env = {
            ENV_MAX_ACCOUNTS: str(self.max_accounts),
            ENV_MAX_BODY_BYTES: str(self.max_body_bytes),
            ENV_RELOAD_SECONDS: str(self.reload_seconds),
            ENV_RETRY_SECONDS: str(self.retry_seconds),
            ENV_TOP_REASONS: str(self.top_reasons),
            ENV_DRAIN_SECONDS: str(self.drain_seconds),
        }
        if self.model_source is not None:
            env[ENV_MODEL_SOURCE] = self.model_source
        if self.api_key:
            env[ENV_API_KEY] = self.api_key
        if self.snapshot_dir is not None:
            env[ENV_SNAPSHOT] = str(self.snapshot_dir)
        if self.runs_root is not None:
            env[ENV_RUNS_ROOT] = str(self.runs_root)
        return env

    def guard_settings(self) -> GuardSettings:
        return GuardSettings(api_key=self.api_key, max_body_bytes=self.max_body_bytes)
