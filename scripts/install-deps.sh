#!/usr/bin/env bash
# Install what audit_ext needs to build, test and benchmark, from Debian's
# packages only.  Idempotent: does nothing when everything is there.
set -euo pipefail

# postgresql-client-15 ships pg_isolation_regress and isolationtester (under
# $(pg_config --pkglibdir)/pgxs/src/test/isolation/), which make installcheck
# runs for specs/*.spec.  pg_prove is in libtap-parser-sourcehandler-pgtap-perl,
# only a Recommends of postgresql-15-pgtap, which --no-install-recommends skips.
PKGS="postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-15-pgtap
      libtap-parser-sourcehandler-pgtap-perl postgresql-contrib
      libipc-run-perl postgresql-15-tablelog make gcc libkrb5-dev zlib1g-dev libssl-dev libpq-dev"

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
