#!/usr/bin/env bash
# Installs the Debian packages XenKeep needs for a role, skipping what is
# already there so repeated `make` calls stay fast.
#   scripts/deps.sh run    what `make run` needs (venv, systemd-python build)
#   scripts/deps.sh test   plus the independent tools the tests check against
#   scripts/deps.sh image  plus mkosi 24+ from bookworm-backports and QEMU
set -euo pipefail
role=${1:-test}

run_pkgs=(python3-venv libsystemd-dev pkg-config gcc make git)
# dbus, systemd (networkd) and systemd-timesyncd: the network-change tests run
# the real daemons in network namespaces (tests/support/netns.py).
test_pkgs=(qemu-utils curl xfsprogs btrfs-progs chromium chromium-driver slapd ldap-utils
           xmlsec1 mtools dosfstools iproute2 openssl tar xxhash util-linux sudo
           dnsmasq-base simplesamlphp php-cli php-xml php-mbstring stunnel4
           dbus systemd systemd-timesyncd
           # tests/e2e: the simulator boots the cloud template under QEMU and
           # the test logs in with ssh (keys from ssh-keygen).
           qemu-system-x86 openssh-client
           python3-configobj python3-jsonschema python3-jinja2 python3-netifaces
           python3-jsonpatch python3-requests python3-yaml)
image_pkgs=(kmod cpio grub-pc-bin grub-common grub-efi-amd64-bin dosfstools mtools
            erofs-utils qemu-system-x86 qemu-utils zstd)
backports_pkgs=(mkosi systemd systemd-container systemd-boot)

case $role in
  run) want=("${run_pkgs[@]}") ;;
  test) want=("${run_pkgs[@]}" "${test_pkgs[@]}") ;;
  image) want=("${run_pkgs[@]}" "${image_pkgs[@]}") ;;
  *) echo "usage: $0 run|test|image" >&2; exit 2 ;;
esac

sudo_=()
[ "$(id -u)" -eq 0 ] || sudo_=(sudo)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# python3 -m venv fails without ensurepip even when python3-venv is absent
# only for Debian's python: trust a working venv module over the package list.
if python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
# The sign-in tests run a real OpenID provider under Node (npm installs it,
# pinned by its lockfile, into ~/.cache/xenkeep/npm): any node and npm do,
# Debian's (18) or another packaging's that provides both.
if [ "$role" = test ] && ! { command -v node && command -v npm; } >/dev/null; then
  missing+=(nodejs npm)
fi

export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() { [ $updated -eq 1 ] || { "${sudo_[@]}" apt-get update -qq; updated=1; }; }

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt_update
  # slapd asks debconf questions; the tests run their own slapd, so the
  # packaged instance needs no configuration and must not start.
  echo 'slapd slapd/no_configuration boolean true' | "${sudo_[@]}" debconf-set-selections
  "${sudo_[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Real journal files for the log view and diagnostics tests. It must be the
# version of the installed systemd (which may come from bookworm-backports
# on a machine that built the image): its libsystemd-shared is shared.
if [ "$role" = test ] && ! [ -x /lib/systemd/systemd-journal-remote ]; then
  apt_update
  sd=$(dpkg-query -W -f='${Version}' systemd 2>/dev/null || true)
  echo "deps: installing systemd-journal-remote ${sd:-}"
  "${sudo_[@]}" apt-get install -y -qq --no-install-recommends \
    "systemd-journal-remote${sd:+=$sd}" >/dev/null
fi

if [ "$role" = image ]; then
  need_bp=0
  command -v mkosi >/dev/null || need_bp=1
  if [ $need_bp -eq 0 ]; then
    v=$(mkosi --version | awk '{print $2}' | cut -d. -f1)
    [ "${v:-0}" -ge 24 ] || need_bp=1
  fi
  if [ $need_bp -eq 1 ]; then
    src=/etc/apt/sources.list.d/bookworm-backports.sources
    if [ ! -e "$src" ]; then
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        | "${sudo_[@]}" tee "$src" >/dev/null
      updated=0
    fi
    apt_update
    # systemd-journal-remote (the tests' journal files) must move with systemd:
    # they share libsystemd-shared, and apt would remove it otherwise.
    if dpkg-query -W -f='${Status}' systemd-journal-remote 2>/dev/null | grep -q 'install ok installed'; then
      backports_pkgs+=(systemd-journal-remote)
    fi
    echo "deps: installing ${backports_pkgs[*]} from bookworm-backports"
    "${sudo_[@]}" apt-get install -y -qq -t bookworm-backports "${backports_pkgs[@]}" >/dev/null
  fi
  # mke2fs before 1.47.1 stamps every inode with the build time: the image's
  # ext4 root is only reproducible with the backport (SOURCE_DATE_EPOCH).
  if dpkg --compare-versions "$(dpkg-query -W -f='${Version}' e2fsprogs)" lt 1.47.1; then
    apt_update
    echo "deps: installing e2fsprogs from bookworm-backports"
    "${sudo_[@]}" apt-get install -y -qq -t bookworm-backports e2fsprogs >/dev/null
  fi
fi

# cloud-init's Debian package, unpacked (never installed, so no cloud-init
# service can run here) into the cache: the daemon checks custom
# #cloud-config against its JSON schema (make run), the image carries that
# schema file (make image), and the config-drive test reads the drive back
# with its own NoCloud code (its Python dependencies are the python3-*
# packages of test_pkgs).
{
  ci_dir=${XDG_CACHE_HOME:-$HOME/.cache}/xenkeep/cloud-init
  if [ ! -d "$ci_dir/usr/lib/python3/dist-packages/cloudinit" ]; then
    tmp=$(mktemp -d)
    apt_update
    (cd "$tmp" && apt-get download -qq cloud-init 2>/dev/null)
    mkdir -p "$ci_dir"
    dpkg-deb -x "$tmp"/cloud-init_*.deb "$ci_dir"
    rm -rf "$tmp"
    echo "deps: cloud-init's modules unpacked into $ci_dir"
  fi
}
