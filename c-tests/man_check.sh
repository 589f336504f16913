#!/bin/sh
# The manual pages in man/ (installed by `make install`):
#   (a) every sesscache_* function that include/sesscache.h declares has a page
#       man/man3/NAME.3, a real one or a `.so` link to one, whose NAME section names it (as
#       lexgrog, mandb's parser, reads it); the list is read from the header each run, so a
#       new function without a page fails; so does a sesscache_* function that
#       target/release/libsesscache.so exports (when built) without a page;
#   (b) every page renders without a warning: `groff -man -ww -z -t` (and `mandoc -Tlint`
#       where mandoc is installed) and `man --warnings -l` at 80 columns print nothing on
#       stderr; each page's .TH section is the one of its directory;
#   (c) every page has NAME, DESCRIPTION and SEE ALSO sections; section-3 pages also
#       SYNOPSIS and RETURN VALUES (OpenSSL's structure);
#   (d) the checks bite: a page with an unknown macro, a section-3 page without RETURN
#       VALUES and a header declaring an undocumented function are refused;
#   (e) the URL reference, man5/sesscache-url.5, holds the block generated from the
#       parameter table (kept current by `cargo test generated_url_docs_are_current`);
#   (f) `make install-man` installs every page where man finds it, `.so` links included, and
#       `make uninstall-man` removes them again.
#
# Run from the top of the tree:   sh c-tests/man_check.sh
# Each assertion prints "ok - ..." or "FAIL - ..." (details on "#" lines); the last line is
# "man: N passed, M failed", and the exit status is non-zero when M > 0.
set -u

B=build
MAN=man
HEADER=include/sesscache.h
SUITE=man
. c-tests/checks.sh

mkdir -p $B
TMP=$(mktemp -d "${TMPDIR:-/tmp}/man_check.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

for tool in groff man; do
    if ! command -v $tool >/dev/null 2>&1; then
        fail "$tool is installed (apt-get install groff-base man-db)"
        finish
    fi
done

# The sesscache_* functions a header declares: the name before the first '(' of each
# declaration (lines starting with a type or the name itself; comment lines start with ' *'
# or '/').
header_functions() {
    grep -E '^([A-Za-z].*[^A-Za-z0-9_])?sesscache_[a-z0-9_]+\(' "$1" |
        sed -E 's/^([^(]*[^A-Za-z0-9_])?(sesscache_[a-z0-9_]+)\(.*$/\2/' | sort -u
}

# The page that `.so` in $1 points at (relative to the man directory $2), or $1 itself.
resolve() {
    target=$(sed -n '1s/^\.so[[:space:]]\{1,\}//p' "$1")
    if [ -n "$target" ]; then echo "$2/$target"; else echo "$1"; fi
}

# The text of page $1's NAME section.
name_section() {
    awk '/^\.SH/ { on = ($0 ~ /^\.SH "?NAME"?$/); next } on' "$1"
}

# (a) for one function $1 in man directory $2: prints what is wrong, if anything.
check_page_for() {
    page="$2/man3/$1.3"
    if [ ! -f "$page" ]; then
        echo "no page $page"
        return 1
    fi
    real=$(resolve "$page" "$2")
    if [ ! -f "$real" ]; then
        echo "$page is a .so link to $real, which does not exist"
        return 1
    fi
    if head -n 1 "$real" | grep -q '^\.so'; then
        echo "$page links to $real, itself a link"
        return 1
    fi
    if ! name_section "$real" | grep -qw "$1"; then
        echo "the NAME section of $real does not name $1"
        return 1
    fi
    # What mandb puts in the whatis database (for apropos and man -k): one entry per name.
    if command -v lexgrog >/dev/null 2>&1 && ! lexgrog "$real" 2>&1 | grep -q "\"$1 - "; then
        echo "lexgrog finds no whatis entry for $1 in $real:"
        lexgrog "$real" 2>&1
        return 1
    fi
}

# (a) for every function of header $1 in man directory $2; prints one line per problem.
check_header() {
    bad=0
    for f in $(header_functions "$1"); do
        check_page_for "$f" "$2" || bad=1
    done
    return $bad
}

# (b) page $1 renders without warnings; prints them.
check_render() {
    : >"$TMP/render.err"
    groff -man -ww -z -t "$1" 2>>"$TMP/render.err" >/dev/null
    if command -v mandoc >/dev/null 2>&1; then
        mandoc -Tlint -Wwarning "$1" >>"$TMP/render.err" 2>&1
    fi
    MANWIDTH=80 man --warnings -l "$1" 2>>"$TMP/render.err" >/dev/null
    if [ -s "$TMP/render.err" ]; then
        cat "$TMP/render.err"
        return 1
    fi
}

# (c) page $1 has the sections its section number requires; prints the missing ones.
check_sections() {
    sec=$(sed -n 's/^\.TH[[:space:]]\{1,\}[^[:space:]]\{1,\}[[:space:]]\{1,\}\([0-9]\).*/\1/p' "$1" | head -n 1)
    want="NAME DESCRIPTION SEE_ALSO"
    [ "$sec" = 3 ] && want="NAME SYNOPSIS DESCRIPTION RETURN_VALUES SEE_ALSO"
    bad=0
    for s in $want; do
        s=$(echo "$s" | tr _ ' ')
        if ! grep -Eq "^\.SH \"?$s\"?\$" "$1"; then
            echo "no $s section"
            bad=1
        fi
    done
    return $bad
}

echo "== (a) a page for every sesscache_* function of $HEADER"
functions=$(header_functions $HEADER)
n=$(echo "$functions" | grep -c .)
if [ "$n" -gt 0 ]; then
    pass "$HEADER declares $n sesscache_* functions: $(echo $functions)"
else
    fail "found no sesscache_* function in $HEADER (has its layout changed? see header_functions)"
    finish
fi
for f in $functions; do
    if check_page_for "$f" $MAN >"$TMP/a.out"; then
        pass "(a) $f: $(resolve $MAN/man3/$f.3 $MAN)"
    else
        fail "(a) $f"
        note <"$TMP/a.out"
    fi
done

# The library's exports too, where it is built (make check builds it first): a function
# exported but missing from the header would otherwise go without a page.
LIB=target/release/libsesscache.so
if [ -f $LIB ]; then
    exported=$(nm -D --defined-only $LIB | awk '$2 == "T" && $3 ~ /^sesscache_/ {print $3}' | sort -u)
    missing=""
    for f in $exported; do
        [ -f $MAN/man3/$f.3 ] || missing="$missing $f"
    done
    if [ -n "$exported" ] && [ -z "$missing" ]; then
        pass "(a) each of the $(echo "$exported" | grep -c .) sesscache_* functions $LIB exports has a page"
    else
        fail "(a) $LIB exports sesscache_* functions without a page:${missing:- (found none at all)}"
    fi
else
    echo "# $LIB is not built (make lib): its exports are not compared"
fi

echo "== (b) every page renders without warnings, (c) with its sections"
pages=$(ls $MAN/man[1-8]/*.[1-8] 2>/dev/null)
real_pages=""
for p in $pages; do
    if head -n 1 "$p" | grep -q '^\.so'; then
        continue
    fi
    real_pages="$real_pages $p"
    if check_render "$p" >"$TMP/b.out" 2>&1; then
        pass "(b) $p renders without warnings"
    else
        fail "(b) $p renders with warnings"
        note <"$TMP/b.out"
    fi
    dir_sec=$(echo "$p" | sed 's|^.*/man\([0-9]\)/.*$|\1|')
    if grep -Eq "^\.TH [^ ]+ $dir_sec( |\$)" "$p"; then
        pass "(b) $p: .TH says section $dir_sec"
    else
        fail "(b) $p: .TH does not say section $dir_sec"
    fi
    if check_sections "$p" >"$TMP/c.out"; then
        pass "(c) $p has its sections"
    else
        fail "(c) $p"
        note <"$TMP/c.out"
    fi
done
# Every .so link leads to a real page (those of section 3 were checked by (a) already).
for p in $pages; do
    head -n 1 "$p" | grep -q '^\.so' || continue
    t=$(resolve "$p" $MAN)
    if [ -f "$t" ] && ! head -n 1 "$t" | grep -q '^\.so'; then
        pass "(b) $p links to $t"
    else
        fail "(b) $p links to $t, which is not a page"
    fi
done
for s in 1 3 5 7; do
    if ls $MAN/man$s/*.$s >/dev/null 2>&1; then
        pass "(b) section $s has pages"
    else
        fail "(b) section $s has pages"
    fi
done

echo "== (d) the checks bite"
mkdir -p "$TMP/man/man3"
sed 's/^\.SH DESCRIPTION$/.SH DESCRIPTION\n.XYZZY an unknown macro/' $MAN/man3/sesscache_open.3 >"$TMP/man/man3/unknown_macro.3"
if cmp -s $MAN/man3/sesscache_open.3 "$TMP/man/man3/unknown_macro.3"; then
    fail "(d) could not make a page with an unknown macro"
elif check_render "$TMP/man/man3/unknown_macro.3" >"$TMP/d.out" 2>&1; then
    fail "(d) a page with an unknown macro was accepted"
else
    pass "(d) a page with an unknown macro is refused: $(head -n 1 "$TMP/d.out")"
fi
sed 's/^\.SH "RETURN VALUES"$/.SH "RETURN VALUE"/' $MAN/man3/sesscache_open.3 >"$TMP/man/man3/no_return.3"
if check_sections "$TMP/man/man3/no_return.3" >"$TMP/d.out"; then
    fail "(d) a section-3 page without RETURN VALUES was accepted"
else
    pass "(d) a section-3 page without RETURN VALUES is refused: $(cat "$TMP/d.out")"
fi
sed 's/^const char \*sesscache_version(void);$/&\nint sesscache_undocumented(int x);/' $HEADER >"$TMP/sesscache.h"
cp $MAN/man3/*.3 "$TMP/man/man3/"
if [ "$(header_functions "$TMP/sesscache.h" | grep -c .)" -ne $((n + 1)) ]; then
    fail "(d) could not add a function to a copy of the header"
elif check_header "$TMP/sesscache.h" "$TMP/man" >"$TMP/d.out"; then
    fail "(d) a header with an undocumented function was accepted"
else
    pass "(d) a header with an undocumented function is refused: $(cat "$TMP/d.out")"
fi
echo '.so man3/no_such_page.3' >"$TMP/man/man3/sesscache_version.3"
if check_header $HEADER "$TMP/man" >"$TMP/d.out"; then
    fail "(d) a .so link to a missing page was accepted"
else
    pass "(d) a .so link to a missing page is refused: $(cat "$TMP/d.out")"
fi

echo "== (e) the URL reference holds the block generated from the parameter table"
url=$MAN/man5/sesscache-url.5
lines=$(awk '/^\.\\" BEGIN generated: url-params/ {on = 1; next} /^\.\\" END generated: url-params/ {on = 0} on' $url | grep -c .)
if [ "$lines" -gt 20 ] && grep -q '^\\fBcapacity=' $url; then
    pass "(e) $url: $lines generated lines (cargo test generated_url_docs_are_current keeps them current)"
else
    fail "(e) $url: the generated block has $lines lines (SESSCACHE_BLESS=1 cargo test --lib generated_url_docs_are_current)"
fi

echo "== (f) make install-man / uninstall-man"
dest="$TMP/dest"
if make -s install-man DESTDIR="$dest" PREFIX=/usr >"$TMP/f.out" 2>&1; then
    pass "(f) make install-man"
else
    fail "(f) make install-man"
    note <"$TMP/f.out"
fi
mandir="$dest/usr/share/man"
for p in $pages; do
    rel=${p#$MAN/}
    [ -f "$mandir/$rel" ] || { fail "(f) $rel is not installed"; continue; }
done
n_installed=$(find "$mandir" -type f 2>/dev/null | grep -c .)
n_pages=$(echo $pages | wc -w)
if [ "$n_installed" -eq "$n_pages" ]; then
    pass "(f) $n_installed pages installed in \$(PREFIX)/share/man"
else
    fail "(f) $n_installed pages installed, $n_pages in $MAN/"
fi
# man finds each function's page through the installed tree, following .so links.
for f in $functions; do
    if MANWIDTH=80 man -M "$mandir" 3 "$f" 2>"$TMP/f.err" | grep -qw "$f" && [ ! -s "$TMP/f.err" ]; then
        pass "(f) man -M ... 3 $f"
    else
        fail "(f) man -M ... 3 $f"
        note <"$TMP/f.err"
    fi
done
make -s uninstall-man DESTDIR="$dest" PREFIX=/usr >"$TMP/f.out" 2>&1
left=$(find "$mandir" -type f 2>/dev/null | grep -c .)
if [ "$left" -eq 0 ]; then
    pass "(f) make uninstall-man removes every page"
else
    fail "(f) make uninstall-man left $left files"
fi

finish
