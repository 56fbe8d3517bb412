"""The config drive, checked by independent tools: fsck.fat, mdir, the label,
and the files read back by mtools' own reader."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from xenkeep.cloudinit.drive import DRIVE_BYTES, Seed, build
from xenkeep.formats.cloudinit import StaticAddress, meta_data, network_config, user_data


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


CLOUD_INIT = Path.home() / ".cache/xenkeep/cloud-init/usr/lib/python3/dist-packages"


def test_cloud_inits_own_nocloud_code_reads_it_back(tmp_path: Path) -> None:
    assert (CLOUD_INIT / "cloudinit").is_dir(), "run scripts/deps.sh test (unpacks cloud-init)"
    image = tmp_path / "d.img"
    static = network_config(StaticAddress("192.0.2.10/24", "192.0.2.1", ("192.0.2.53",)))
    seed = Seed(
        meta_data("iid-1", "web1"),
        user_data("web1", ["ssh-ed25519 AAAAC3Nza x@y"], "#cloud-config\npackages: [htop]\n"),
        static,
    )
    build(seed, image)
    # The files as a mount of the volume shows them, copied out by mtools.
    out = tmp_path / "seed"
    out.mkdir()
    subprocess.run(["mcopy", "-s", "-i", str(image), "::/*", str(out)], check=True)
    label = subprocess.run(
        ["mlabel", "-s", "-i", str(image), "::"], check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    done = subprocess.run(
        ["/usr/bin/python3", str(Path(__file__).with_name("nocloud_readback.py")), str(out), label],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(CLOUD_INIT), "PATH": "/usr/bin:/bin"},
    )
    back = json.loads(done.stdout)
    assert back["devices"] == ["/dev/xvdd"]
    assert back["meta-data"] == {"instance-id": "iid-1", "local-hostname": "web1"}
    assert back["user-data"] == seed.user_data
    assert back["network-config"] == yaml.safe_load(static)
