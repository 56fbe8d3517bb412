from pathlib import Path

import pytest

from xenkeep.config import Settings, load_settings
from xenkeep.errors import ConfigError


def test_defaults() -> None:
    s = Settings()
    assert s.https_port == 443
    assert s.state_dir == Path("/var/lib/xenkeep")
    assert s.database_path == Path("/var/lib/xenkeep/xenkeep.db")


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text('https_port = 8443\nstate_dir = "/srv/xk"\nhostname = "box"\n')
    s = load_settings(cfg, environ={"XENKEEP_HTTPS_PORT": "9443", "XENKEEP_DEV": "yes"})
    assert s.https_port == 9443
    assert s.state_dir == Path("/srv/xk")
    assert s.dev is True
    s = load_settings(cfg, environ={}, https_port=7443)
    assert s.https_port == 7443


def test_environment_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "y.toml"
    cfg.write_text("http_port = 0\n")
    assert load_settings(environ={"XENKEEP_CONFIG": str(cfg)}).http_port == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https_port = 'abc'", "invalid value"),
        ("https_port = 70000", "between 0 and 65535"),
        ("bogus = 1", "unknown setting 'bogus'"),
        ("log_level = 'loud'", "log_level must be one of"),
        ("http_port = 8443\nhttps_port = 8443", "must differ"),
        ("https_port = [", "cannot read"),
        ("dev = 'maybe'", "invalid value"),
        ("request_read_seconds = 0", "between 1 and 600"),
    ],
)
def test_invalid_settings_fail_with_a_clear_message(
    tmp_path: Path, text: str, message: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, environ={})


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().https_port = 1  # type: ignore[misc]
