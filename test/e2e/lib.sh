# Helpers for end-to-end tests (sourced).  Expects PGHOST/PGPORT/PGUSER of a
# running cluster (scripts/test.sh exports them) and prints TAP.
set -uo pipefail
_n=0
_failed=0
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }
is() {   # got expected description
    _n=$((_n + 1))
    if [ "$1" == "$2" ]; then echo "ok $_n - $3"
    else echo "not ok $_n - $3"; echo "#   got:      '$1'"; echo "#   expected: '$2'"; _failed=$((_failed + 1)); fi
}
done_testing() { echo "1..$_n"; [ $_failed -eq 0 ]; }
