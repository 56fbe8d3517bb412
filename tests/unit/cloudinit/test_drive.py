"""The config drive, checked by independent tools: fsck.fat, mdir, the label,
and the files read back by mtools' own reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

from xenkeep.cloudinit.drive import DRIVE_BYTES, Seed, build
from xenkeep.formats.cloudinit import meta_data, network_config, user_data


def _seed() -> Seed:
    return Seed(
        meta_data("vm-1", "web1"),
        user_data("web1", ["ssh-ed25519 AAAAC3Nza x@y"]),
        network_config(None),
    )


def test_drive_is_a_clean_fat_volume_labelled_cidata(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    seed = _seed()
    build(seed, image)
    assert image.stat().st_size == DRIVE_BYTES
    subprocess.run(["fsck.fat", "-n", str(image)], check=True, capture_output=True)
    label = subprocess.run(
        ["mlabel", "-s", "-i", str(image), "::"], check=True, capture_output=True, text=True
    ).stdout
    assert "cidata" in label.lower()
    listing = subprocess.run(
        ["mdir", "-b", "-i", str(image), "::"], check=True, capture_output=True, text=True
    ).stdout
    assert sorted(Path(p).name for p in listing.split()) == [
        "meta-data",
        "network-config",
        "user-data",
    ]
    for name, text in seed.files().items():
        back = subprocess.run(
            ["mtype", "-i", str(image), f"::/{name}"], check=True, capture_output=True, text=True
        ).stdout
        assert back == text
