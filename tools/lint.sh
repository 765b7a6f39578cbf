#!/bin/sh
# make lint: clang-format check, banned functions, module prefixes.
set -u
status=0
files=$(git ls-files '*.c' '*.h' | grep -v '^tests/fuzz/corpus/')

if command -v clang-format >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    if ! clang-format --dry-run -Werror $files 2>/tmp/peekd-lint.$$; then
        echo "lint: clang-format differences (run 'make format'):"
        head -n 40 /tmp/peekd-lint.$$
        status=1
    fi
    rm -f /tmp/peekd-lint.$$
else
    echo "lint: clang-format not installed" >&2
    status=1
fi

# Banned functions (curl's list): sprintf, vsprintf, strcpy, strcat,
# strncpy, strtok, atoi, atol, gets.  Comments are not exempt on purpose.
banned='(^|[^_[:alnum:]])(sprintf|vsprintf|strcpy|strcat|strncpy|strtok|atoi|atol|gets)[[:space:]]*\('
# shellcheck disable=SC2086
if grep -nE "$banned" $files; then
    echo "lint: banned function used (use snprintf, cm_buf, strtol)"
    status=1
fi

# Module prefixes: every non-static function defined in a module folder
# starts with the module's prefix.
for pair in common:cm_ kv:kv_ index:idx_ api:api_ sync:sync_ hls:hls_; do
    dir=${pair%%:*}
    pre=${pair#*:}
    for f in $(git ls-files "$dir/*.c"); do
        # A definition: a line starting at column 0 with a type and a name
        # followed by '(' and not ending with ';', not static.
        grep -nE '^[a-z][a-z0-9_ \*]*[ \*]([a-z_][a-z0-9_]*)\(' "$f" |
            grep -vE '^[0-9]+:(static|typedef|extern) ' | grep -v ';$' |
            sed -E 's/^([0-9]+):[^(]*[ *]([a-z_][a-z0-9_]*)\(.*/\1 \2/' |
            while read -r line name; do
                case $name in
                "$pre"*) ;;
                *) echo "$f:$line: '$name' lacks the '$pre' prefix" ;;
                esac
            done
    done
done | tee /tmp/peekd-prefix.$$
if [ -s /tmp/peekd-prefix.$$ ]; then
    status=1
fi
rm -f /tmp/peekd-prefix.$$

[ "$status" -eq 0 ] && echo "lint: ok"
exit "$status"
