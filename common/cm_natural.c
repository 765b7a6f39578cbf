/*
 * cm_natural.c - NATURAL_CI comparison (see cm_natural.h).
 */
#include "common/cm_natural.h"

#include <locale.h>
#include <pthread.h>
#include <wctype.h>

static locale_t utf8_locale;
static pthread_once_t locale_once = PTHREAD_ONCE_INIT;

static void locale_init(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

uint32_t cm_utf8_decode(const char *s, size_t n, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0], need;
    uint32_t cp, min;

    *len = 1;
    if (c < 0x80)
        return c;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0xFFFD;
    }
    if (n < need)
        return 0xFFFD;
    for (unsigned i = 1; i < need; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0xFFFD;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0xFFFD;
    *len = need;
    return cp;
}

uint32_t cm_fold_rune(uint32_t r)
{
    uint32_t best = r, c;
    if (r < 0x80) {
        if (r >= 'a' && r <= 'z')
            return r - 32;
        return r;
    }
    pthread_once(&locale_once, locale_init);
    if (utf8_locale == (locale_t)0)
        return r;
    c = (uint32_t)towlower_l((wint_t)r, utf8_locale);
    if (c < best)
        best = c;
    c = (uint32_t)towupper_l((wint_t)r, utf8_locale);
    if (c < best)
        best = c;
    c = (uint32_t)towupper_l(towlower_l((wint_t)r, utf8_locale), utf8_locale);
    if (c < best)
        best = c;
    return best;
}

static int isdig(uint32_t c)
{
    return c >= '0' && c <= '9';
}

/* Go's casefolded.NaturalLess, rune by rune. */
static int natural_less(const char *s1, size_t n1, const char *s2, size_t n2)
{
    size_t i1 = 0, i2 = 0;

    while (i1 < n1 && i2 < n2) {
        size_t d1, d2;
        uint32_t c1 = cm_utf8_decode(s1 + i1, n1 - i1, &d1);
        uint32_t c2 = cm_utf8_decode(s2 + i2, n2 - i2, &d2);
        int dig1 = isdig(c1), dig2 = isdig(c2);
        size_t nz1, nz2, l1, l2;

        if (dig1 != dig2)
            return dig1;
        if (!dig1) {
            i1 += d1;
            i2 += d2;
            if (c1 == c2)
                continue;
            c1 = cm_fold_rune(c1);
            c2 = cm_fold_rune(c2);
            if (c1 != c2)
                return c1 < c2;
            continue;
        }
        while (i1 < n1 && s1[i1] == '0')
            i1++;
        while (i2 < n2 && s2[i2] == '0')
            i2++;
        nz1 = i1;
        nz2 = i2;
        while (i1 < n1 && isdig((unsigned char)s1[i1]))
            i1++;
        while (i2 < n2 && isdig((unsigned char)s2[i2]))
            i2++;
        l1 = i1 - nz1;
        l2 = i2 - nz2;
        if (l1 != l2)
            return l1 < l2;
        for (size_t k = 0; k < l1; k++)
            if (s1[nz1 + k] != s2[nz2 + k])
                return (unsigned char)s1[nz1 + k] < (unsigned char)s2[nz2 + k];
        if (nz1 != nz2)
            return nz1 < nz2;
    }
    return n1 < n2;
}

int cm_natural_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (natural_less(a, alen, b, blen))
        return -1;
    if (natural_less(b, blen, a, alen))
        return 1;
    return 0;
}
