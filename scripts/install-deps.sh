#!/usr/bin/env bash
# Install what audit_ext needs to build, test and benchmark, from Debian's
# packages only.  Idempotent: does nothing when everything is there.
#   bash scripts/install-deps.sh            build, test and benchmark
#   bash scripts/install-deps.sh chromium   also headless Chromium (only for
#       scripts/report-pdf.sh, scripts/report-images.sh and test/e2e/reports.sh,
#       which call it so: a large package, installed only when one of them runs)
set -euo pipefail

# PG_MAJOR (default 15, Debian 12's) picks the server packages; 17 on Debian 13.
# postgresql-client-N ships pg_isolation_regress and isolationtester (under
# $(pg_config --pkglibdir)/pgxs/src/test/isolation/), which make installcheck
# runs for specs/*.spec.  pg_prove is in libtap-parser-sourcehandler-pgtap-perl,
# only a Recommends of postgresql-N-pgtap, which --no-install-recommends skips.
PG_MAJOR=${PG_MAJOR:-15}
PKGS="postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-pgtap
      libtap-parser-sourcehandler-pgtap-perl
      libipc-run-perl postgresql-$PG_MAJOR-tablelog pgbouncer faketime make gcc libkrb5-dev zlib1g-dev libssl-dev libpq-dev"
# contrib (hstore, pgstattuple) is in postgresql-N itself; Debian 12 also has a
# postgresql-contrib metapackage, Debian 13 only a virtual name that dpkg-query
# never reports installed (apt-get would run on every call).
[ "$PG_MAJOR" = 15 ] && PKGS="$PKGS postgresql-contrib"
# headless Chromium renders reports to PDF and PNG (issue 21)
for arg in "$@"; do
    case $arg in
        chromium) PKGS="$PKGS chromium fonts-dejavu-core" ;;
        *) echo "install-deps.sh: unknown argument \"$arg\" (known: chromium)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Keep the packaged "main" cluster from being created: our scripts run their own.
    mkdir -p /etc/postgresql-common
    if [ ! -f /etc/postgresql-common/createcluster.conf ] || ! grep -q '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
        echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -q --no-install-recommends $missing
fi
