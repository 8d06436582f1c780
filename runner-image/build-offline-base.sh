#!/usr/bin/env bash
# Build the offline base image for Dockerfile.runner WITHOUT any container registry:
# debootstrap Debian bookworm (minbase) from the configured Debian mirror, install Debian's python3,
# pip, venv, numpy and torch (1.13.1, CPU) in a chroot, then `docker import` the root filesystem.
#
#   sudo runner-image/build-offline-base.sh [--force] [TAG]      (default TAG: lightlm-harness/base:bookworm-offline)
#
# Idempotent: exits at once when TAG already exists (unless --force). Downloaded .debs are kept in
# ${XDG_CACHE_HOME:-~/.cache}/lightlm-harness (override with LIGHTLM_CACHE_DIR), so rebuilds are fast.
# Environment overrides: MIRROR (Debian archive URL), SECURITY_MIRROR (empty string: no security suite),
# SUITE (default bookworm), WORK_PARENT (where the temporary rootfs lives, default ${TMPDIR:-/var/tmp}).
set -euo pipefail

DEFAULT_TAG=lightlm-harness/base:bookworm-offline
# libopenblas0-pthread: Debian's torch links the generic libblas.so.3, and the reference BLAS it resolves to by
# default makes BERT-base ~50x slower; with OpenBLAS installed the alternatives system points it there.
PACKAGES=(python3 python3-pip python3-venv python3-numpy python3-torch libopenblas0-pthread ca-certificates)
SUITE=${SUITE:-bookworm}

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
say() { printf '[base %5ss] %s\n' "$((SECONDS))" "$*"; }
die() { printf 'build-offline-base: error: %s\n' "$*" >&2; exit 1; }

FORCE=0
TAG=
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        -f|--force) FORCE=1 ;;
        -*) die "unknown option $arg (see --help)" ;;
        *) [[ -z "$TAG" ]] || die "only one TAG may be given"; TAG=$arg ;;
    esac
done
TAG=${TAG:-$DEFAULT_TAG}

command -v docker >/dev/null 2>&1 || die "docker is not installed (the image is loaded with 'docker import')"
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || die "the Docker engine does not answer, and this script must run as root anyway: sudo $0 $*"
    die "the Docker engine does not answer ('docker version' fails): start it"
fi

if [[ $FORCE -eq 0 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    say "image $TAG already exists; nothing to do (use --force to rebuild)"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap and chroot need it): sudo $0 $*"

if ! command -v debootstrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        say "debootstrap is missing: installing it with apt-get"
        apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y --no-install-recommends debootstrap >/dev/null; } \
            || die "could not install debootstrap; run: apt-get update && apt-get install -y debootstrap"
    else
        die "debootstrap is missing; install it (Debian/Ubuntu: apt-get install -y debootstrap)"
    fi
fi

# --- the Debian mirror: MIRROR, else the host's apt sources (one-line .list and deb822 .sources) ---
apt_sources() {   # prints "URI SUITE" for every deb entry the host's apt configuration names
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk '
            function flush(  i, j, nu, ns, u, s) {
                if (types ~ /(^| )deb( |$)/ && enabled != "no") {
                    nu = split(uris, u, " "); ns = split(suites, s, " ")
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
                }
                types = uris = suites = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
              if (key == "types") types = $0; else if (key == "uris") uris = $0
              else if (key == "suites") suites = $0; else if (key == "enabled") enabled = tolower($0) }
            END { flush() }' "$f"
    done
}
SOURCES=$(apt_sources 2>/dev/null || true)
if [[ -z "${MIRROR:-}" ]]; then
    MIRROR=$(awk -v s="$SUITE" '$2 == s { print $1; exit }' <<<"$SOURCES")
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
if [[ -z "${SECURITY_MIRROR+set}" ]]; then
    SECURITY_MIRROR=$(awk -v s="$SUITE-security" '$2 == s { print $1; exit }' <<<"$SOURCES")
    SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
fi
MIRROR=${MIRROR%/}
SECURITY_MIRROR=${SECURITY_MIRROR%/}

CACHE=${LIGHTLM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lightlm-harness}
mkdir -p "$CACHE/debootstrap" "$CACHE/apt-archives/partial"
WORK=$(mktemp -d "${WORK_PARENT:-${TMPDIR:-/var/tmp}}/lightlm-base.XXXXXX")
ROOTFS=$WORK/rootfs
MOUNTS=()

cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
    # never rm -rf through a mount that is still there (the bind-mounted apt cache, /proc)
    if grep -q " $ROOTFS" /proc/mounts; then
        echo "build-offline-base: warning: mounts remain under $ROOTFS; not deleting $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount_in() { mount "$@"; MOUNTS+=("${!#}"); }

say "target $TAG: Debian $SUITE minbase from $MIRROR (security: ${SECURITY_MIRROR:-none})"
say "cache $CACHE, scratch $WORK"

KEYRING=()
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] && KEYRING=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
say "debootstrap (minbase) ..."
debootstrap --variant=minbase "${KEYRING[@]}" --cache-dir="$CACHE/debootstrap" \
    "$SUITE" "$ROOTFS" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
say "debootstrap done ($(du -sh "$ROOTFS" | cut -f1))"

# --- chroot configuration: sources, no docs/recommends, no service starts, DNS ---
{
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    if [[ -n "$SECURITY_MIRROR" ]]; then echo "deb $SECURITY_MIRROR $SUITE-security main"; fi
} > "$ROOTFS/etc/apt/sources.list"
cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/01-lightlm-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat > "$ROOTFS/etc/apt/apt.conf.d/01-lightlm" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG
echo force-unsafe-io > "$ROOTFS/etc/dpkg/dpkg.cfg.d/00-lightlm-unsafe-io"   # no fsync per file: much faster; removed below
printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true

mount_in -t proc proc "$ROOTFS/proc"
mount_in --bind "$CACHE/apt-archives" "$ROOTFS/var/cache/apt/archives"

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }
say "apt-get update ..."
in_root apt-get update -qq > "$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get update failed"; }
say "apt-get install ${PACKAGES[*]} ..."
in_root apt-get install -y -q "${PACKAGES[@]}" >> "$WORK/apt.log" 2>&1 \
    || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get install failed (log above)"; }
say "installed $(grep -c '^Setting up' "$WORK/apt.log" || true) packages; checking python3 ..."
in_root python3 -c 'import sys, numpy, torch; print("python", sys.version.split()[0], "numpy", numpy.__version__, "torch", torch.__version__)' \
    | sed 's/^/[base]   /'

# --- clean up: mounts, apt lists and caches, docs, logs, host-specific files ---
for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}"; done
MOUNTS=()
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old "$ROOTFS"/var/log/* \
       "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/root/.cache "$ROOTFS"/usr/sbin/policy-rc.d \
       "$ROOTFS"/etc/dpkg/dpkg.cfg.d/00-lightlm-unsafe-io \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
: > "$ROOTFS/etc/resolv.conf"
: > "$ROOTFS/etc/machine-id" 2>/dev/null || true
rm -f "$ROOTFS/var/lib/dbus/machine-id"
say "root filesystem ready ($(du -sh "$ROOTFS" | cut -f1)); docker import ..."

# /dev, /proc, /sys stay empty: the engine provides them in every container.
tar -C "$ROOTFS" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
  | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      --change 'LABEL org.opencontainers.image.title="lightlm-harness offline base"' \
      --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase, python3, numpy, torch from $MIRROR (runner-image/build-offline-base.sh)\"" \
      --message "debootstrap $SUITE minbase + ${PACKAGES[*]}" \
      - "$TAG" > /dev/null
say "done: $TAG ($(docker image inspect --format '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
