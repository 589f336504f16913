# Counting checks, for the harness's shell suites. Set SUITE (the name of the last line),
# then source this file; POSIX sh.
#   ok TEXT, pass TEXT   one check passed
#   fail TEXT            one check failed
#   check GOT WANT TEXT  ok if GOT is WANT, else fail, saying both
#   no_fewer WITH WITHOUT TEXT
#                        WITH and WITHOUT are resumption counts "R/N": ok if WITH's R is at
#                        least WITHOUT's (never worse than without the library), else fail
#   show FILE...         the last 25 lines of each file, as comments
#   note                 its standard input, as comments
#   finish               "SUITE: N passed, M failed", then exit (non-zero if one failed)
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
pass() { ok "$1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }
check() { if [ "$1" = "$2" ]; then ok "$3"; else fail "$3 (got '$1', want '$2')"; fi; }
no_fewer() {
    case "$1 $2" in
        [0-9]*/[0-9]*\ [0-9]*/[0-9]*)
            if [ "${1%/*}" -ge "${2%/*}" ]; then ok "$3: resumed $1 >= $2 without the library"
            else fail "$3: resumed $1 < $2 without the library"; fi ;;
        *) fail "$3: no comparison (with the library: ${1:-none}, without: ${2:-none})"; return 1 ;;
    esac
}
show() { for _f; do echo "#   $_f:"; tail -n 25 "$_f" 2>/dev/null | sed 's/^/#     /'; done; }
note() { sed 's/^/#   /'; }
finish() {
    echo "$SUITE: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
