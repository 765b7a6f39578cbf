/*
 * cm_natural.h - Stash's NATURAL_CI collation in C.
 *
 * Stash sorts titles, names and paths with Go's sortorder/casefolded
 * NaturalLess: where one side has an ASCII digit and the other not, the
 * digit sorts first; ASCII letters compare upper-cased; other runes compare
 * by their lowest case-fold equivalent; digit runs compare as numbers
 * (leading zeros skipped, a longer run is larger, on equal value fewer
 * leading zeros first); when one string runs out, the shorter (in bytes)
 * sorts first.  Invalid UTF-8 bytes compare as U+FFFD, as Go decodes them.
 *
 * The case-fold equivalent of a non-ASCII rune is approximated with the
 * C.UTF-8 locale's towlower/towupper (the minimum of r, lower(r), upper(r),
 * upper(lower(r))); it matches Unicode simple folding for the scripts in
 * real titles.  Thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Three-way compare of a[0..alen) and b[0..blen): <0, 0, >0.  0 means
 * neither is NaturalLess than the other (e.g. "abc" vs "ABC"). */
int cm_natural_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* The lowest case-fold equivalent of rune r. */
uint32_t cm_fold_rune(uint32_t r);

/* Decodes one UTF-8 rune at s[0..n) (n > 0) like Go's
 * utf8.DecodeRuneInString: invalid input gives U+FFFD and length 1.
 * OUT *len: bytes consumed. */
uint32_t cm_utf8_decode(const char *s, size_t n, size_t *len);
