/*  libFuzzer target: the routing policy (broker/rules.c).

    Each input is a rules file given to rules_parse. Invariants checked:
    every error names the file and a line within the input (0 for the file
    as a whole) with a non-empty, valid UTF-8 message; a file that loads
    reports no error; then decisions, expansions and copies for node ids,
    codes and names taken from the input itself (so the fuzzer reaches the
    rules it writes) are consistent: "deny default" exactly when no rule
    decided, the same answer twice, counts equal to callbacks, and neither
    the sender nor the recipient among the required copies.

    Build: clang -fsanitize=fuzzer,address,undefined with broker/rules.c
    and the wire (see tests/fuzz/fuzz_frame.c for the rest of the line).    */
#include "rules.h"

#include "liaison.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz.rules"
#define PICKS 6

typedef struct {
    size_t errors;
    int max_line;
} check_t;

static bool
s_utf8_ok (const unsigned char *s)
{
    while (*s) {
        size_t n = *s < 0x80 ? 1 : *s >= 0xf0 ? 4 : *s >= 0xe0 ? 3 : *s >= 0xc2 ? 2 : 0;
        if (!n)
            return false;
        for (size_t i = 1; i < n; i++)
            if ((s[i] & 0xc0) != 0x80)
                return false;
        s += n;
    }
    return true;
}

static void
s_error (void *arg, const char *file, int line, const char *message)
{
    check_t *c = arg;
    c->errors++;
    if (strcmp (file, NAME) != 0 || line < 0 || line > c->max_line || !message || !message[0]
        || !s_utf8_ok ((const unsigned char *) message))
        abort ();
}

typedef struct {
    const char *sender, *recipient;
    int n;
} calls_t;

static void
s_node (void *arg, const char *node)
{
    calls_t *c = arg;
    if (!node || !node[0] || (c->sender && strcmp (node, c->sender) == 0))
        abort ();
    c->n++;
}

static void
s_copy (void *arg, const char *node, int line)
{
    calls_t *c = arg;
    if (!node || line <= 0 || strcmp (node, c->sender) == 0 || strcmp (node, c->recipient) == 0)
        abort ();
    c->n++;
}

// Tokens from the input, to query what the input defines.
typedef struct {
    char nodes[PICKS][40], codes[PICKS][3], names[PICKS][65];
    int nnodes, ncodes, nnames;
} picks_t;

static void
s_pick (picks_t *p, const char *text, size_t size)
{
    size_t i = 0;
    while (i < size) {
        while (i < size && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == ','))
            i++;
        size_t start = i;
        while (i < size && text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != ',')
            i++;
        size_t n = i - start;
        const char *t = text + start;
        if (n == 2 && t[0] >= 'A' && t[0] <= 'Z' && t[1] >= 'A' && t[1] <= 'Z') {
            if (p->ncodes < PICKS)
                memcpy (p->codes[p->ncodes++], t, 2);
        }
        else if (n >= 4 && n < 40 && t[2] == '-' && t[0] >= 'a' && t[0] <= 'z') {
            if (p->nnodes < PICKS)
                memcpy (p->nodes[p->nnodes++], t, n);
        }
        else if (n >= 1 && n < 65 && t[0] >= 'a' && t[0] <= 'z') {
            if (p->nnames < PICKS)
                memcpy (p->names[p->nnames++], t, n);
        }
    }
}

static void
s_exercise (const rules_t *r, const uint8_t *data, size_t size, const char *text)
{
    const char *hash = rules_hash (r);
    if (strlen (hash) != 12 || strspn (hash, "0123456789abcdef") != 12)
        abort ();
    if (strcmp (rules_file (r), NAME) != 0)
        abort ();
    static picks_t p;
    memset (&p, 0, sizeof p);
    s_pick (&p, text, size);
    static const char *fixed[] = {"fr-pn", "de-bka", "us-doj", "kp-x"};
    const char *nodes[PICKS + 4];
    int nn = 0;
    for (int i = 0; i < p.nnodes; i++)
        nodes[nn++] = p.nodes[i];
    for (int i = 0; i < 4; i++)
        nodes[nn++] = fixed[i];
    static const char *bases[] = {"", "eio", "none", "binding"};
    uint8_t seed = size ? data[size - 1] : 0;
    for (int i = 0; i < 12; i++) {
        unsigned x = (unsigned) seed * 31u + (unsigned) i * 17u;
        rules_query_t q = {
            .sender = nodes[i % nn],
            .recipient = nodes[(i / 2 + x) % (unsigned) nn],
            .type = (int) (x % 5),
            .priority = (int) ((x / 5) % 3),
            .tlp = (int) ((x / 3) % 6),
            .handling = (int) ((x / 7) % 5),
            .source = "ABCX\0"[(x / 11) % 5],
            .accuracy = (int) ((x / 13) % 5),
            .basis = i % 3 == 0 && p.nnames ? p.names[i % p.nnames] : bases[x % 4],
            .reply = (x >> 4) & 1,
        };
        rules_decision_t d1, d2;
        rules_decide (r, &q, &d1);
        rules_decide (r, &q, &d2);
        if (d1.allow != d2.allow || d1.line != d2.line || d1.line < 0 || (d1.line == 0 && d1.allow))
            abort ();
        char buf[600];
        const char *e = rules_explain (r, &d1, buf, sizeof buf);
        if (e != buf || (d1.line == 0) != (strcmp (buf, "deny default") == 0))
            abort ();
        calls_t c = {q.sender, q.recipient, 0};
        int n = rules_copies (r, &q, s_copy, &c);
        if (n != c.n)
            abort ();
    }
    for (int i = 0; i < p.ncodes + p.nnames + nn; i++) {
        int kind = i < p.ncodes              ? LIAISON__RECIPIENT_KIND__JURISDICTION
                   : i < p.ncodes + p.nnames ? LIAISON__RECIPIENT_KIND__GROUP
                                             : LIAISON__RECIPIENT_KIND__NODE;
        const char *name = i < p.ncodes              ? p.codes[i]
                           : i < p.ncodes + p.nnames ? p.names[i - p.ncodes]
                                                     : nodes[i - p.ncodes - p.nnames];
        calls_t c = {nodes[i % nn], NULL, 0};
        int n = rules_expand (r, kind, name, c.sender, s_node, &c);
        if (n < -1 || (n >= 0 && n != c.n) || (n < 0 && c.n))
            abort ();
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    check_t c = {0, 1};
    for (size_t i = 0; i < size; i++)
        c.max_line += data[i] == '\n';
    rules_t *r = rules_parse (NAME, text, size, s_error, &c);
    if (r && c.errors)
        abort ();
    if (!r && !c.errors)
        abort ();
    if (r)
        s_exercise (r, data, size, text);
    rules_destroy (&r);
    if (r)
        abort ();
    return 0;
}
