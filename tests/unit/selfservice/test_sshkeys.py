"""SSH keys: parsed for real, fingerprints as ssh-keygen shows them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from xenkeep.errors import ValidationError
from xenkeep.selfservice.sshkeys import parse_key


def _keygen(tmp_path: Path, kind: str, bits: str = "") -> str:
    path = tmp_path / f"k_{kind}{bits}"
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@host", "-f", str(path)]
    if bits:
        args[4:4] = ["-b", bits]
    subprocess.run(args, check=True)
    return Path(f"{path}.pub").read_text()


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_real_keys_accepted_with_ssh_keygen_fingerprint(tmp_path: Path, kind: str) -> None:
    text = _keygen(tmp_path, kind)
    line, fingerprint = parse_key(text)
    assert line == text.strip()
    shown = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / f"k_{kind}.pub")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    assert fingerprint == shown


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 not-base64!!",
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
        "ssh-ed25519 AAAA\nssh-ed25519 BBBB",
    ],
)
def test_bad_keys_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_key(text)


def test_short_rsa_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="2048"):
        parse_key(_keygen(tmp_path, "rsa", "1024"))
