#!/usr/bin/env bash
# The whole test suite (scripts/test.sh) on PostgreSQL 17, on a Debian 12 host
# that has only Debian's archive: PostgreSQL 17 is Debian 13's, and its
# binaries need Debian 13's C library, so the suite runs in a Debian 13
# chroot made with debootstrap.  As root; about 5 minutes the first time
# (the chroot is kept for the next run), then about 3.5.
#
#   bash scripts/test-pg17.sh
#
# Knobs: CHROOT (default /var/tmp/audit_ext_trixie), AUDIT_TEST_PORT (default
# 5700: the suite's clusters use it and the 90 ports above it).  The working
# tree (tracked and untracked files, not ignored ones) is copied into the
# chroot, so uncommitted changes are tested too.  Not part of CI: it needs a
# few hundred MB of packages and doubles the suite's time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHROOT=${CHROOT:-/var/tmp/audit_ext_trixie}
PORT=${AUDIT_TEST_PORT:-5700}
MIRROR=http://deb.debian.org/debian
PKGS="postgresql-17 postgresql-client-17 postgresql-server-dev-17 postgresql-17-pgtap
      libtap-parser-sourcehandler-pgtap-perl libipc-run-perl postgresql-17-tablelog
      make gcc libkrb5-dev zlib1g-dev libssl-dev libpq-dev bc ca-certificates"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 2; }

MOUNTS=(proc dev dev/pts dev/shm sys)
# shellcheck disable=SC2317  # called by the EXIT trap
unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        mountpoint -q "$CHROOT/${MOUNTS[i]}" && umount "$CHROOT/${MOUNTS[i]}"
    done
    return 0
}
trap unmount_all EXIT

if [ ! -x "$CHROOT/usr/lib/postgresql/17/bin/postgres" ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
    if [ ! -f "$CHROOT/etc/debian_version" ]; then
        log "debootstrap trixie into $CHROOT"
        debootstrap --variant=minbase trixie "$CHROOT" "$MIRROR" >&2
    fi
    # our clusters only: no packaged "main" cluster
    mkdir -p "$CHROOT/etc/postgresql-common"
    echo "create_main_cluster = false" >"$CHROOT/etc/postgresql-common/createcluster.conf"
fi
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
for m in "${MOUNTS[@]}"; do
    mkdir -p "$CHROOT/$m"
    mountpoint -q "$CHROOT/$m" || mount --bind "/$m" "$CHROOT/$m"
done

in_chroot() {
    chroot "$CHROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

missing=""
for p in $PKGS; do
    in_chroot dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing in the chroot:$missing"
    in_chroot apt-get update -q >&2
    # shellcheck disable=SC2086  # one word per package
    in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
fi

log "copying the working tree into $CHROOT/root/audit_ext"
rm -rf "$CHROOT/root/audit_ext"
mkdir -p "$CHROOT/root/audit_ext"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$CHROOT/root/audit_ext"

log "scripts/test.sh with PG_MAJOR=17 (ports $PORT and up)"
rc=0
in_chroot PG_MAJOR=17 AUDIT_TEST_PORT="$PORT" bash -c 'cd /root/audit_ext && bash scripts/test.sh' || rc=$?
log "PostgreSQL 17 suite: exit $rc"
exit $rc
