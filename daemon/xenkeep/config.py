"""Settings: one validated, frozen, typed object.

Read from a TOML file (default ``/etc/xenkeep/xenkeep.toml``), then
overridden by ``XENKEEP_*`` environment variables. An invalid setting stops
the daemon at start with one clear message and a hint.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenkeep.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/xenkeep/xenkeep.toml")
ENV_PREFIX = "XENKEEP_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the daemon is configured with."""

    state_dir: Path = Path("/var/lib/xenkeep")
    run_dir: Path = Path("/run/xenkeep")
    listen: str = "::"
    # 0 picks a free port (tests, development).
    https_port: int = 443
    # Redirects to HTTPS; 0 turns the redirect listener off.
    http_port: int = 80
    hostname: str = ""
    log_level: str = "info"
    # Development mode (`make run`): templates reread when changed, blocking
    # calls in the event loop raise, and plain http:// pools (the simulator)
    # are accepted; outside it a pool must be https, so that its password
    # never travels in clear.
    dev: bool = False
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    appliance_name: str = "XenKeep"
    # How long a client may take to send a request's headers (from connecting,
    # or from the end of the previous answer on a kept-alive connection) and,
    # separately, its body: a slow client holds a connection no longer.
    request_read_seconds: int = 20
    # How long a new self-service VM's guest has to report its first boot
    # before its config drive is left attached (with a warning).
    first_boot_seconds: int = 900
    # The privileged helper's socket (disks, network, NTP); absent in development.
    privhelper_socket: Path = Path("/run/xenkeep-privhelper.sock")
    # The log view and the support bundle read the system journal; a
    # directory of journal files instead, when set (a copied journal, tests).
    journal_dir: str = ""

    @property
    def database_path(self) -> Path:
        """The SQLite database file."""
        return self.state_dir / "xenkeep.db"

    @property
    def tls_dir(self) -> Path:
        """Where the HTTPS certificate and key live."""
        return self.state_dir / "tls"

    @property
    def setup_token_path(self) -> Path:
        """The one-time setup token, readable by root only."""
        return self.run_dir / "setup-token"

    @property
    def control_socket_path(self) -> Path:
        """Unix socket the local CLI talks to."""
        return self.run_dir / "control.sock"

    @property
    def effective_hostname(self) -> str:
        """The configured hostname, or the machine's."""
        return self.hostname or socket.gethostname()


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _coerce(name: str, field_type: Any, raw: Any, source: str) -> Any:
    try:
        if field_type in (Path, "Path"):
            return Path(str(raw))
        if field_type in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if field_type in (int, "int"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {name!r} from {source} has an invalid value {raw!r}",
            hint=f"expected a {getattr(field_type, '__name__', field_type)}",
        ) from None


def _validate(settings: Settings) -> None:
    for name in ("https_port", "http_port"):
        port = getattr(settings, name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name} must be between 0 and 65535, not {port}")
    if settings.http_port and settings.http_port == settings.https_port:
        raise ConfigError(
            "http_port and https_port must differ", hint="set http_port = 0 to disable it"
        )
    if settings.log_level not in _LOG_LEVELS:
        raise ConfigError(
            f"log_level must be one of {', '.join(_LOG_LEVELS)}, not {settings.log_level!r}"
        )
    if settings.session_idle_minutes < 1 or settings.session_absolute_hours < 1:
        raise ConfigError("session lifetimes must be at least 1 minute / 1 hour")
    if not 1 <= settings.first_boot_seconds <= 86400:
        raise ConfigError(
            f"first_boot_seconds must be between 1 and 86400, not {settings.first_boot_seconds}"
        )
    if not 1 <= settings.request_read_seconds <= 600:
        raise ConfigError(
            f"request_read_seconds must be between 1 and 600, not {settings.request_read_seconds}"
        )


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from a TOML file, the environment and overrides.

    A missing file at the default path is fine (defaults apply); a missing
    file that was named explicitly is an error.
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or ENV_PREFIX + "CONFIG" in env
    config_path = path or Path(env.get(ENV_PREFIX + "CONFIG", str(DEFAULT_CONFIG_PATH)))
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}

    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {config_path}: {exc}") from None
        for key, raw in data.items():
            if key not in fields:
                raise ConfigError(
                    f"unknown setting {key!r} in {config_path}",
                    hint="known settings: " + ", ".join(sorted(fields)),
                )
            values[key] = _coerce(key, fields[key].type, raw, str(config_path))
    elif explicit:
        raise ConfigError(f"configuration file {config_path} does not exist")

    for name, field in fields.items():
        raw_env = env.get(ENV_PREFIX + name.upper())
        if raw_env is not None:
            values[name] = _coerce(name, field.type, raw_env, "$" + ENV_PREFIX + name.upper())
    for name, raw in overrides.items():
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, fields[name].type, raw, "the command line")

    settings = Settings(**values)
    _validate(settings)
    return settings
