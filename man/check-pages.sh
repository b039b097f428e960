#!/bin/sh
# The man page test (ctest man_pages):
# - every symbol libmproc.so exports (nm -D) is declared in a public header, so it is named in
#   that header's page and, when the pages are built, has a page file of its own (a link);
# - every built page renders without warnings from man (what lintian checks);
# - mproc-demo(1) and mproc-longtask(1) describe every option their program's --help prints;
# - mproc(7) names every MPROC_* environment variable the library reads, and every section 3 page.
# usage: check-pages.sh NM LIBMPROC PYTHON3 HEADER2SCD SOURCE_DIR MPROC_DEMO PAGES_DIR|- [MPROC_LONGTASK]
set -eu
nm=$1 lib=$2 python=$3 gen=$4 src=$5 demo=$6 pages=$7 longtask=${8:-}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$nm" -D --defined-only "$lib" | awk '$2 ~ /^[TDBRV]$/ { sub(/@.*/, "", $3); print $3 }' |
    sort -u >"$tmp/exported"
[ -s "$tmp/exported" ] || { echo "no exported symbols read from $lib"; exit 1; }
"$python" "$gen" --functions "$src"/include/mproc/*.h | awk '{ print $2 }' | sort -u >"$tmp/documented"
comm -23 "$tmp/exported" "$tmp/documented" >"$tmp/missing"
if [ -s "$tmp/missing" ]; then
    echo "exported but declared in no public header (so on no man page):"
    sed 's/^/  /' "$tmp/missing"
    fail=1
fi
echo "$(wc -l <"$tmp/exported") exported symbols, $(wc -l <"$tmp/documented") documented functions"

if [ "$pages" != - ]; then
    while read -r sym; do
        [ -e "$pages/man3/$sym.3" ] || { echo "no page $pages/man3/$sym.3"; fail=1; }
    done <"$tmp/exported"
    if command -v man >/dev/null 2>&1; then
        for page in "$pages"/man?/*; do
            [ -L "$page" ] && continue
            LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" \
                2>"$tmp/warnings" >/dev/null || true
            if [ -s "$tmp/warnings" ]; then
                echo "man warnings in $page:"
                cat "$tmp/warnings"
                fail=1
            fi
        done
    fi
    echo "pages checked in $pages"
fi

options_described() { # PROGRAM PAGE: --help runs before any display or pool is opened
    for opt in $("$1" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
        grep -qF -- "*$opt*" "$src/man/$2.scd" || { echo "$2 does not describe $opt"; fail=1; }
    done
}
options_described "$demo" mproc-demo.1
[ -z "$longtask" ] || options_described "$longtask" mproc-longtask.1
for page in "$src"/man/*.1.scd; do
    name=$(basename "$page" .1.scd)
    grep -qF -- "*$name*(1)" "$src/man/mproc.7.scd" || { echo "mproc(7) does not list $name(1)"; fail=1; }
done
for var in $(grep -rhoE 'getenv\("MPROC_[A-Z_]+"\)' "$src/src" | grep -oE 'MPROC_[A-Z_]+' | sort -u); do
    grep -qF -- "*$var*" "$src/man/mproc.7.scd" || { echo "mproc(7) does not describe $var"; fail=1; }
done
for h in "$src"/include/mproc/*.h; do
    page=$("$python" "$gen" --page "$h")
    grep -qF -- "*$page*(3)" "$src/man/mproc.7.scd" || { echo "mproc(7) does not list $page(3)"; fail=1; }
done
exit $fail
