#!/bin/sh
# Fails the build when an object of one layer uses a symbol defined in a layer above it.
# Usage: check-layers.sh NM layer=obj1:obj2 ... (lowest layer first, as in src/CMakeLists.txt).
# The include paths already keep a layer from seeing the headers above it; this catches a call up
# a layer made through a prototype written by hand.
set -eu
nm=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rank=0
for arg in "$@"; do
    layer=${arg%%=*}
    objs=$(printf '%s' "${arg#*=}" | tr ':' ' ')
    # shellcheck disable=SC2086
    "$nm" -P $objs 2>/dev/null | awk -v r=$rank -v l="$layer" -v d="$tmp/defined" -v u="$tmp/used" '
        $2 ~ /^[TDBRCGSVW]$/ { print $1, r, l >> d }
        $2 == "U" { print $1, r, l >> u }'
    rank=$((rank + 1))
done
touch "$tmp/defined" "$tmp/used"
awk 'NR == FNR { rank[$1] = $2; owner[$1] = $3; next }
     ($1 in rank) && rank[$1] > $2 {
         printf "layering: the %s layer uses %s, defined in the %s layer above it\n", $3, $1, owner[$1]
         bad = 1
     }
     END { exit bad }' "$tmp/defined" "$tmp/used"
