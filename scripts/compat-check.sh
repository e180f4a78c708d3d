#!/usr/bin/env bash
# Compile every src/*.c against another PostgreSQL major version's server
# headers, with the project's flags (-Werror), to keep the version guards
# (#if PG_VERSION_NUM >= ...) honest.  Nothing is installed or run: this
# only proves the C compiles.  Not part of scripts/test.sh, because Debian 12
# ships only PostgreSQL 15.
#
#   bash scripts/compat-check.sh /path/to/include/server   any server include dir
#   bash scripts/compat-check.sh --debian 17               (as root) fetch Debian 13's
#        postgresql-server-dev-17 into $COMPAT_DIR (default /tmp/audit_compat)
#        with a private apt state, without installing it, and compile against it
#
# PostgreSQL 16 is in no Debian release's archive; use a configured source
# tree (./configure && make -C src/backend generated-headers), passing its
# src/include.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPAT_DIR=${COMPAT_DIR:-/tmp/audit_compat}

die() { echo "compat-check: $*" >&2; exit 2; }

# --debian N: Debian 13 (trixie) carries postgresql-server-dev-17.
fetch_debian() {
    local major=$1 suite apt_dir deb
    case $major in
        17) suite=trixie ;;
        *) die "no Debian suite known to ship postgresql-server-dev-$major" ;;
    esac
    apt_dir=$COMPAT_DIR/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/sources.list.d" \
        "$apt_dir/etc/preferences.d"
    echo "deb http://deb.debian.org/debian $suite main" >"$apt_dir/etc/sources.list"
    APT_OPTS=(-o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
        -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d" -o "Dir::State::status=/var/lib/dpkg/status"
        -o "APT::Sandbox::User=root")
    apt-get -q "${APT_OPTS[@]}" update >&2
    (cd "$COMPAT_DIR" && apt-get -q "${APT_OPTS[@]}" download "postgresql-server-dev-$major" >&2)
    deb=$(find "$COMPAT_DIR" -maxdepth 1 -name "postgresql-server-dev-${major}_*.deb" | sort | tail -n1)
    rm -rf "$COMPAT_DIR/pg$major"
    dpkg-deb -x "$deb" "$COMPAT_DIR/pg$major"
    INCLUDE=$COMPAT_DIR/pg$major/usr/include/postgresql/$major/server
}

case ${1:-} in
    --debian) [ -n "${2:-}" ] || die "usage: $0 --debian MAJOR"; fetch_debian "$2" ;;
    "" | -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) INCLUDE=$1 ;;
esac
[ -f "$INCLUDE/pg_config.h" ] || die "$INCLUDE/pg_config.h not found (not a server include directory)"

# Headers configured for another C library: the other release's glibc may
# have strlcpy/strlcat where this one has not; take this machine's answer, in
# a copy of the headers (c.h includes pg_config.h from its own directory).
if ! printf '#include <string.h>\nint main(void){char b[2]; return (int) strlcpy(b, "a", 2);}\n' |
    gcc -x c -Werror=implicit-function-declaration -o /dev/null - 2>/dev/null &&
    grep -q '^#define HAVE_DECL_STRLCPY 1' "$INCLUDE/pg_config.h"; then
    copy=$COMPAT_DIR/include-copy
    rm -rf "$copy" && mkdir -p "$copy" && cp -a "$INCLUDE/." "$copy/"
    sed -i -e 's/^#define HAVE_DECL_STRLCPY 1/#define HAVE_DECL_STRLCPY 0/' \
        -e 's/^#define HAVE_DECL_STRLCAT 1/#define HAVE_DECL_STRLCAT 0/' \
        -e 's/^#define HAVE_STRLCPY 1/\/* no strlcpy here *\//' \
        -e 's/^#define HAVE_STRLCAT 1/\/* no strlcat here *\//' "$copy/pg_config.h"
    INCLUDE=$copy
fi

version=$(sed -n 's/^#define PG_VERSION_NUM \([0-9]*\).*/\1/p' "$INCLUDE/pg_config.h")
# The flags PGXS adds for a module (configure's CFLAGS of 16/17 included) and
# the project's own PG_CFLAGS from the Makefile.
pgxs_flags="-Wall -Wmissing-prototypes -Wpointer-arith -Wdeclaration-after-statement -Werror=vla
 -Wendif-labels -Wmissing-format-attribute -Wimplicit-fallthrough=3 -Wcast-function-type
 -Wshadow=compatible-local -Wformat-security -fno-strict-aliasing -fwrapv -fexcess-precision=standard
 -Wno-format-truncation -Wno-stringop-truncation -O2 -Werror=implicit-function-declaration -fPIC
 -fvisibility=hidden"
project_flags=$(sed -n 's/^PG_CFLAGS = //p' "$ROOT/Makefile")

failed=0
for f in "$ROOT"/src/*.c; do
    # shellcheck disable=SC2086  # word splitting of the flag lists is wanted
    if gcc $pgxs_flags $project_flags -I"$ROOT/src" -I"$INCLUDE" -D_GNU_SOURCE \
        -c -o /dev/null "$f"; then
        echo "ok   $(basename "$f")"
    else
        echo "FAIL $(basename "$f")"
        failed=$((failed + 1))
    fi
done
echo "PostgreSQL $version headers ($INCLUDE): $failed file(s) failed"
[ "$failed" = 0 ]
