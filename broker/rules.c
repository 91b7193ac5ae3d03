/*  Routing policy: reads a rules file, checks it, compiles it and decides;
    see rules.h and README, "Routing rules".

    Every allow/deny rule is a bit position, in file order. For each
    dimension of a query (sender, recipient, type, priority, TLP, handling,
    source, accuracy, reply, legal basis) and each value it can take, a row
    of bits says which rules accept that value. A decision picks one row per
    dimension and ANDs them word by word: the lowest bit left is the first
    matching rule. Copy rules are compiled the same way into a second set.
    The same rows answer "does an earlier rule match everything this one
    does?" at load, which is how shadowed rules are found.

    Nothing here allocates after loading, and a loaded rules_t is never
    written again, so decisions may run on several threads at once.         */
#include "rules.h"

#include "codec.h"
#include "tls.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#define CC_COUNT 676 /* two-letter codes AA..ZZ */
#define CC_WORDS 11  /* 64-bit words holding CC_COUNT bits */
#define NAME_MAX_LEN 64
// Per rule list. The load-time shadow check is quadratic (in words), and no
// real policy comes near this; the limit keeps a hostile file cheap.
#define MAX_RULES 65536
// Past this many errors the file is probably not a rules file at all.
#define MAX_ERRORS 1000
// Node rows cost one row per named node per rule list; this caps what a
// file may make the broker allocate.
#define MAX_TABLE_BYTES ((size_t) 256 << 20)
#define SHOW 48 /* characters of a token quoted in a message */
#define INST_BIT 0x80000000u

// The small dimensions of a query, each a handful of values.
enum { D_TYPE, D_PRIORITY, D_TLP, D_HANDLING, D_SOURCE, D_ACCURACY, D_REPLY, D_COUNT };
#define D_MAXVAL 5

// Condition keys: from, to, basis, then the small dimensions.
enum { K_FROM, K_TO, K_BASIS, K_DIM0 };
#define K_COUNT (K_DIM0 + D_COUNT)
#define KEY(k) (1u << (k))

enum { V_ALLOW, V_DENY, V_COPY };

// Basis of a resolved query: an instrument binding both sides (>= 0), none
// given, or anything else (unknown, or not binding this pair).
#define BASIS_NONE (-1)
#define BASIS_OTHER (-2)

typedef struct {
    const char *key;
    int nvalues;
    bool nocase;
    const char *values[D_MAXVAL];
    const char *usage;
} dim_t;

static const dim_t s_dims[D_COUNT] = {
    {"type",
     4,
     false,
     {"mla-request", "mla-reply", "evidence-handoff", "case-lead"},
     "mla-request, mla-reply, evidence-handoff or case-lead"},
    {"priority", 3, false, {"routine", "urgent", "emergency"}, "routine, urgent or emergency"},
    {"tlp",
     5,
     true,
     {"clear", "green", "amber", "amber+strict", "red"},
     "clear, green, amber, amber+strict or red (TLP 2.0, a TLP: prefix is allowed)"},
    {"handling", 4, true, {"h0", "h1", "h2", "h3"}, "h0, h1, h2 or h3"},
    {"source", 5, false, {"A", "B", "C", "X", "none"}, "A, B, C, X or none"},
    {"accuracy", 5, false, {"1", "2", "3", "4", "none"}, "1, 2, 3, 4 or none"},
    {"reply", 2, false, {"no", "yes"}, "yes or no"},
};

static const char *s_keys[K_COUNT] = {"from", "to",       "basis",  "type",     "priority",
                                      "tlp",  "handling", "source", "accuracy", "reply"};

static const char *s_statements[] = {"group", "instrument", "contact", "allow", "deny", "copy"};

// Words with a meaning of their own in values; never names.
static const char *s_reserved_words[] = {"any", "foreign", "domestic", "none", "binding"};

// ISO 3166-1 exceptionally reserved codes: they look like jurisdictions
// but are not, and EU in particular is easily mistaken for the group.
static const struct {
    char cc[3];
    const char *hint;
} s_reserved_cc[] = {
    {"AC", "Ascension Island is part of SH"},
    {"CP", "Clipperton Island is part of FR"},
    {"DG", "Diego Garcia is part of IO"},
    {"EA", "Ceuta and Melilla are part of ES"},
    {"EU", "for the member states of the European Union use the group 'eu' (groups are lower "
           "case, jurisdictions upper case)"},
    {"EZ", "for the euro area define a group of its members (groups are lower case)"},
    {"FX", "metropolitan France is FR"},
    {"IC", "the Canary Islands are part of ES"},
    {"SU", "use the code of the successor state"},
    {"TA", "Tristan da Cunha is part of SH"},
    {"UK", "the United Kingdom's code is GB"},
    {"UN", "for several states define a group of them (groups are lower case)"},
};

// A set of two-letter codes, bit (c0-'A')*26 + (c1-'A').
typedef struct {
    uint64_t w[CC_WORDS];
} ccset_t;

// Open addressing, keys borrowed from whoever owns the entries.
typedef struct {
    const char *key;
    uint64_t hash;
    uint32_t value;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t cap, count; /* cap is 0 or a power of two */
} htab_t;

// A group (its members) or an instrument (its parties).
typedef struct {
    char *name;
    int line;
    ccset_t cc;
} named_t;

// One side of a rule: the senders (from) or the recipients (to).
typedef struct {
    bool any;      /* also when the key is absent */
    bool foreign;  /* to only: the recipient's country is not the sender's */
    bool domestic; /* to only: the same country */
    ccset_t cc;
    uint32_t *nodes; /* node table entries */
    size_t nnodes, cap;
    const char *empty; /* an empty group the list names, for messages */
} side_t;

// A rule as parsed, before compilation.
typedef struct {
    int line;
    int verb;
    uint32_t node; /* copy rules: node table entry of the copy */
    uint32_t keys; /* KEY(k) for every condition given */
    side_t from, to;
    uint8_t mask[D_COUNT]; /* accepted values, bit per value index */
    bool basis_none, basis_binding;
    uint32_t *insts; /* instruments listed in basis */
    size_t ninsts, icap;
    bool never; /* reported as never matching */
} rule_t;

// One compiled rule list. Every pointer below points into arena; rows are
// `words` long. A country or node no rule names shares a default row.
typedef struct {
    size_t n, words;
    uint64_t *arena;
    uint64_t *s_cc[CC_COUNT];
    uint64_t *r_cc[2][CC_COUNT]; /* [1]: recipient in the sender's country */
    uint64_t **s_node;           /* per node table entry; NULL if not in 'from' */
    uint64_t **r_node[2];        /* per node table entry; NULL if not in 'to' */
    uint64_t *dim[D_COUNT][D_MAXVAL];
    uint64_t *b_nocond; /* rules without basis */
    uint64_t *b_none;   /* ... plus basis none */
    uint64_t **b_inst;  /* ... plus basis listing k, plus basis binding */
    // Used only by the shadow check.
    uint64_t *s_any, *r_any, *r_anyfor, *r_anydom, *b_binding;
    uint16_t s_id[CC_COUNT], r_id[CC_COUNT]; /* distinct rows, numbered */
} rset_t;

struct rules {
    char *file;
    char hash[13];
    size_t statements;
    htab_t names; /* groups: index; instruments: index | INST_BIT */
    named_t *groups, *insts;
    size_t ngroups, ninsts, gcap, icap;
    htab_t nodes; /* node ids named by rules and copies: index */
    char **node_ids;
    size_t nnodes, ncap;
    char **contact[CC_COUNT];
    size_t ncontact[CC_COUNT];
    int contact_line[CC_COUNT];
    rset_t main, copy;
    int *main_line;
    bool *main_allow;
    int *copy_line;
    uint32_t *copy_node;
    int32_t *copy_prev; /* previous copy rule with the same node, or -1 */
};

// A problem found, held until loading ends so that they go out in line
// order (shadowed rules are only found once everything is compiled).
typedef struct {
    int line;
    size_t seq;
    char *msg;
} report_t;

typedef struct {
    rules_t *r;
    const char *name;
    rules_error_fn *fn;
    void *arg;
    size_t errors;
    report_t *reports;
    size_t nreports, repcap;
    int line;
    htab_t later; /* group and instrument names -> line of definition */
    char **later_keys;
    size_t nlater, lcap;
    rule_t *rules; /* allow and deny */
    size_t nrules, rcap;
    rule_t *copies;
    size_t ncopies, ccap;
    bool too_many;
} parser_t;

// A query resolved against one rules_t.
typedef struct {
    int cs, cr;     /* sender's and recipient's country */
    int64_t sn, rn; /* node table entries, -1 when no rule names the node */
    int v[D_COUNT];
    int basis;
} qctx_t;

// --------------------------------------------------------------------------
// Small helpers

static inline void
s_bit_set (uint64_t *row, size_t i)
{
    row[i / 64] |= (uint64_t) 1 << (i % 64);
}

static inline bool
s_bit_get (const uint64_t *row, size_t i)
{
    return (row[i / 64] >> (i % 64)) & 1;
}

static bool
s_cc_empty (const ccset_t *s)
{
    for (int i = 0; i < CC_WORDS; i++)
        if (s->w[i])
            return false;
    return true;
}

static bool
s_cc_meets (const ccset_t *a, const ccset_t *b)
{
    for (int i = 0; i < CC_WORDS; i++)
        if (a->w[i] & b->w[i])
            return true;
    return false;
}

static void
s_cc_or (ccset_t *a, const ccset_t *b)
{
    for (int i = 0; i < CC_WORDS; i++)
        a->w[i] |= b->w[i];
}

// The first member of s at or after c, or -1.
static int
s_cc_next (const ccset_t *s, int c)
{
    for (int w = c / 64; w < CC_WORDS; c = ++w * 64) {
        uint64_t x = s->w[w] >> (c % 64);
        if (x)
            return c + __builtin_ctzll (x);
    }
    return -1;
}

static int
s_node_cc (const char *node)
{
    return (node[0] - 'a') * 26 + (node[1] - 'a');
}

static uint64_t
s_hash (const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s; s++)
        h = (h ^ (unsigned char) *s) * 0x100000001b3u;
    return h;
}

// The value stored for key, or -1.
static int64_t
s_htab_get (const htab_t *t, const char *key, uint64_t h)
{
    if (!t->cap)
        return -1;
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const slot_t *s = &t->slots[i];
        if (!s->key)
            return -1;
        if (s->hash == h && strcmp (s->key, key) == 0)
            return s->value;
    }
}

// Adds a key known to be absent; the key must outlive the table. 0 or -1.
static int
s_htab_put (htab_t *t, const char *key, uint64_t h, uint32_t value)
{
    if ((t->count + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        slot_t *slots = calloc (cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->slots[i].key)
                continue;
            size_t j = t->slots[i].hash & (cap - 1);
            while (slots[j].key)
                j = (j + 1) & (cap - 1);
            slots[j] = t->slots[i];
        }
        free (t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    size_t j = h & (t->cap - 1);
    while (t->slots[j].key)
        j = (j + 1) & (t->cap - 1);
    t->slots[j] = (slot_t){key, h, value};
    t->count++;
    return 0;
}

// Makes room for one more element in a growable array: 0, or -1 (the
// array is left as it was).
#define GROW(arr, cap, n)                                                                          \
    ((n) < (cap) ? 0 : ({                                                                          \
        size_t ncap_ = (cap) ? (cap) *2 : 8;                                                       \
        __typeof__ (arr) p_ = realloc ((arr), ncap_ * sizeof *(arr));                              \
        p_ ? ((arr) = p_, (cap) = ncap_, 0) : -1;                                                  \
    }))

// How many bytes of a token to quote: at most SHOW, never half a UTF-8
// character (messages reach logs and terminals).
static int
s_show (const char *t)
{
    size_t n = strnlen (t, SHOW + 1);
    if (n > SHOW) {
        n = SHOW;
        while (n > 0 && ((unsigned char) t[n] & 0xc0) == 0x80)
            n--;
    }
    return (int) n;
}
#define TOK(t) s_show (t), (t)

// Edit distance ignoring case, a swap of neighbours counting as one edit
// (optimal string alignment), for "did you mean"; large when either string
// is too long to be a plausible typo.
static int
s_distance (const char *a, const char *b)
{
    size_t na = strlen (a), nb = strlen (b);
    if (na > NAME_MAX_LEN || nb > NAME_MAX_LEN)
        return 1000;
    int d[3][NAME_MAX_LEN + 1]; /* rows i-2, i-1, i */
    for (size_t j = 0; j <= nb; j++)
        d[0][j] = (int) j;
    for (size_t i = 1; i <= na; i++) {
        int *row = d[i % 3], *prev = d[(i + 2) % 3], *prev2 = d[(i + 1) % 3];
        row[0] = (int) i;
        for (size_t j = 1; j <= nb; j++) {
            int ai = tolower ((unsigned char) a[i - 1]), bj = tolower ((unsigned char) b[j - 1]);
            int v = prev[j - 1] + (ai != bj);
            if (prev[j] + 1 < v)
                v = prev[j] + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            if (i > 1 && j > 1 && ai == tolower ((unsigned char) b[j - 2])
                && tolower ((unsigned char) a[i - 2]) == bj && prev2[j - 2] + 1 < v)
                v = prev2[j - 2] + 1;
            row[j] = v;
        }
    }
    return d[na % 3][nb];
}

// The candidate closest to word, if close enough to be a typo, else NULL.
static const char *
s_nearest (const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    int best_d = strlen (word) <= 4 ? 2 : 3;
    for (size_t i = 0; i < n && i < 10000; i++) {
        if (!cands[i] || strcmp (word, cands[i]) == 0)
            continue;
        int d = s_distance (word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    return best;
}

// " (did you mean 'x'?)" or "".
static const char *
s_mean (char *buf, size_t len, const char *cand)
{
    if (!cand)
        return "";
    snprintf (buf, len, " (did you mean '%s'?)", cand);
    return buf;
}

static void s_error (parser_t *p, int line, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

// Records one problem; after MAX_ERRORS only counts them.
static void
s_error (parser_t *p, int line, const char *fmt, ...)
{
    p->errors++;
    if (!p->fn || p->errors > MAX_ERRORS)
        return;
    char msg[700];
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    // A cut message must not end in half a UTF-8 character.
    if (n >= (int) sizeof msg) {
        size_t k = sizeof msg - 1;
        while (k > 0 && ((unsigned char) msg[k] & 0xc0) == 0x80)
            k--;
        msg[k] = 0;
    }
    char *copy = strdup (msg);
    if (!copy || GROW (p->reports, p->repcap, p->nreports)) {
        free (copy);
        p->fn (p->arg, p->name, line, msg); /* out of order beats lost */
        return;
    }
    p->reports[p->nreports] = (report_t){line, p->nreports, copy};
    p->nreports++;
}

static int
s_report_cmp (const void *a, const void *b)
{
    const report_t *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

// Hands the recorded problems to the callback, file-level ones first.
static void
s_flush (parser_t *p)
{
    if (p->nreports)
        qsort (p->reports, p->nreports, sizeof *p->reports, s_report_cmp);
    for (size_t i = 0; i < p->nreports; i++) {
        p->fn (p->arg, p->name, p->reports[i].line, p->reports[i].msg);
        free (p->reports[i].msg);
    }
    if (p->fn && p->errors > MAX_ERRORS)
        p->fn (p->arg, p->name, 0,
               "more than 1000 errors, the rest are not shown: is this a rules file?");
    free (p->reports);
    p->reports = NULL;
    p->nreports = p->repcap = 0;
}

static void
s_oom (parser_t *p)
{
    s_error (p, p->line, "out of memory while loading the rules");
}

// --------------------------------------------------------------------------
// Tokens

// True for ^[a-z]{2}- : the start of a node id.
static bool
s_node_like (const char *s)
{
    return s[0] >= 'a' && s[0] <= 'z' && s[1] >= 'a' && s[1] <= 'z' && s[2] == '-';
}

static bool
s_reserved_word (const char *s)
{
    for (size_t i = 0; i < sizeof s_reserved_words / sizeof *s_reserved_words; i++)
        if (strcmp (s, s_reserved_words[i]) == 0)
            return true;
    return false;
}

static const char *
s_reserved_hint (int c0, int c1)
{
    for (size_t i = 0; i < sizeof s_reserved_cc / sizeof *s_reserved_cc; i++)
        if (s_reserved_cc[i].cc[0] == c0 && s_reserved_cc[i].cc[1] == c1)
            return s_reserved_cc[i].hint;
    return NULL;
}

// A jurisdiction code: its index, -1 if the token is not ^[A-Z]{2}$, -2 if
// it is a reserved code (reported).
static int
s_cc_token (parser_t *p, const char *t)
{
    if (!wire_codec_country_valid (t))
        return -1;
    const char *hint = s_reserved_hint (t[0], t[1]);
    if (hint) {
        s_error (p, p->line,
                 "'%s' is an exceptionally reserved ISO 3166-1 code, not a jurisdiction: %s", t,
                 hint);
        return -2;
    }
    return (t[0] - 'A') * 26 + (t[1] - 'A');
}

// Checks a new group or instrument name; reports and returns false if bad.
static bool
s_name_ok (parser_t *p, const char *name, bool group)
{
    const char *what = group ? "group" : "instrument";
    if (!wire_codec_group_valid (name)) {
        char lower[NAME_MAX_LEN + 1];
        size_t n = strlen (name);
        bool upper = false;
        for (size_t i = 0; i < n && i < NAME_MAX_LEN; i++) {
            upper |= isupper ((unsigned char) name[i]) != 0;
            lower[i] = (char) tolower ((unsigned char) name[i]);
        }
        lower[n < NAME_MAX_LEN ? n : NAME_MAX_LEN] = 0;
        if (upper && n <= NAME_MAX_LEN && wire_codec_group_valid (lower))
            s_error (p, p->line,
                     "%s name '%.*s' must be lower case ('%s'): upper case is for "
                     "jurisdiction codes",
                     what, TOK (name), lower);
        else
            s_error (p, p->line,
                     "'%.*s' is not a valid %s name: use a lower-case letter, then up to 63 "
                     "lower-case letters, digits, '_' or '-'",
                     TOK (name), what);
        return false;
    }
    if (s_reserved_word (name)) {
        s_error (p, p->line, "'%s' is a reserved word and cannot name a %s: choose another", name,
                 what);
        return false;
    }
    // Groups stand where node ids do (from, to, addresses); instruments
    // only after 'basis', so they may look like one ("fr-us-mlat").
    if (group && s_node_like (name)) {
        char hint[NAME_MAX_LEN + 1];
        snprintf (hint, sizeof hint, "%s", name);
        for (char *c = hint; *c; c++)
            if (*c == '-')
                *c = '_';
        s_error (p, p->line,
                 "group name '%s' looks like a node id (two letters and '-'): write '%s'", name,
                 hint);
        return false;
    }
    return true;
}

// Candidates for "did you mean" among groups or instruments.
static const char *
s_nearest_named (const named_t *v, size_t n, const char *word)
{
    const char *best = NULL;
    int best_d = strlen (word) <= 4 ? 2 : 3;
    for (size_t i = 0; i < n && i < 10000; i++) {
        int d = s_distance (word, v[i].name);
        if (d < best_d && strcmp (word, v[i].name) != 0) {
            best_d = d;
            best = v[i].name;
        }
    }
    return best;
}

// Reports a name that is not (yet) a group or instrument.
static void
s_unknown_name (parser_t *p, const char *name, bool want_group)
{
    rules_t *r = p->r;
    const char *what = want_group ? "group" : "instrument";
    int64_t later = s_htab_get (&p->later, name, s_hash (name));
    if (later >= 0) {
        int line = (int) (later & ~(int64_t) INST_BIT);
        bool inst = (later & INST_BIT) != 0;
        if (line == p->line)
            s_error (p, p->line, "'%s' is being defined on this line and cannot name itself", name);
        else if (inst == !want_group && line > p->line)
            s_error (p, p->line,
                     "%s '%s' is used before its definition at line %d: move that line above "
                     "this one",
                     what, name, line);
        else if (inst == !want_group)
            s_error (p, p->line, "%s '%s' is not defined: its definition at line %d has errors",
                     what, name, line);
        else
            s_error (p, p->line, "'%s' is %s at line %d, not %s", name,
                     inst ? "an instrument" : "a group", line,
                     want_group ? "a group: instruments go after 'basis'"
                                : "an instrument: 'basis' names instruments");
        return;
    }
    char buf[NAME_MAX_LEN + 32], cc[64] = "";
    const char *near = want_group ? s_nearest_named (r->groups, r->ngroups, name)
                                  : s_nearest_named (r->insts, r->ninsts, name);
    if (want_group && strlen (name) == 2)
        snprintf (cc, sizeof cc, " (jurisdictions are upper case: %c%c)",
                  toupper ((unsigned char) name[0]), toupper ((unsigned char) name[1]));
    s_error (p, p->line, "unknown %s '%.*s'%s: define it with %s line above its first use%s", what,
             TOK (name), s_mean (buf, sizeof buf, near),
             want_group ? "a 'group'" : "an 'instrument'", cc);
}

// A group by name, or NULL (reported).
static const named_t *
s_group_ref (parser_t *p, const char *name)
{
    rules_t *r = p->r;
    int64_t v = s_htab_get (&r->names, name, s_hash (name));
    if (v >= 0 && !(v & INST_BIT))
        return &r->groups[v];
    if (v >= 0) {
        s_error (p, p->line, "'%s' is an instrument, not a group: instruments go after 'basis'",
                 name);
        return NULL;
    }
    s_unknown_name (p, name, true);
    return NULL;
}

// A node id named by a rule: its node table entry, or -1 (reported).
static int64_t
s_node_ref (parser_t *p, const char *id)
{
    rules_t *r = p->r;
    if (!wire_node_id_valid (id))
        return -1;
    const char *hint =
        s_reserved_hint (toupper ((unsigned char) id[0]), toupper ((unsigned char) id[1]));
    if (hint) {
        char fix[NAME_MAX_LEN + 1];
        snprintf (fix, sizeof fix, "%s", id);
        for (char *c = fix; *c; c++)
            if (*c == '-')
                *c = '_';
        s_error (p, p->line,
                 "'%s' would be a node of %c%c, which is not a jurisdiction (%s); a group "
                 "name may not look like a node id: write '%s'",
                 id, toupper ((unsigned char) id[0]), toupper ((unsigned char) id[1]), hint, fix);
        return -2;
    }
    uint64_t h = s_hash (id);
    int64_t v = s_htab_get (&r->nodes, id, h);
    if (v >= 0)
        return v;
    char *copy = strdup (id);
    if (!copy || GROW (r->node_ids, r->ncap, r->nnodes)
        || s_htab_put (&r->nodes, copy, h, (uint32_t) r->nnodes)) {
        free (copy);
        s_oom (p);
        return -2;
    }
    r->node_ids[r->nnodes] = copy;
    return (int64_t) r->nnodes++;
}

// One item of a group or instrument list: a jurisdiction or an earlier
// group. Adds it to cc; false if reported.
static bool
s_set_item (parser_t *p, const char *item, ccset_t *cc, const char *what)
{
    int c = s_cc_token (p, item);
    if (c >= 0) {
        s_bit_set (cc->w, (size_t) c);
        return true;
    }
    if (c == -2)
        return false;
    if (strchr (item, ',')) {
        s_error (p, p->line, "'%.*s': %s lists its items separated by spaces, not commas",
                 TOK (item), what);
        return false;
    }
    if (wire_node_id_valid (item)) {
        s_error (p, p->line,
                 "'%s' is a node id: %s lists jurisdictions (FR) and groups (eu), not nodes", item,
                 what);
        return false;
    }
    if (s_reserved_word (item)) {
        s_error (p, p->line, "'%s' cannot be used in %s: list jurisdictions (FR) and groups (eu)",
                 item, what);
        return false;
    }
    if (!wire_codec_group_valid (item)) {
        s_error (p, p->line,
                 "'%.*s' is neither a jurisdiction (two upper-case letters, FR) nor a group "
                 "name (lower case, eu)",
                 TOK (item));
        return false;
    }
    const named_t *g = s_group_ref (p, item);
    if (!g)
        return false;
    s_cc_or (cc, &g->cc);
    return true;
}

// Registers a group or instrument name; false if it is taken (reported).
static bool
s_define (parser_t *p, const char *name, bool group, const ccset_t *cc)
{
    rules_t *r = p->r;
    uint64_t h = s_hash (name);
    int64_t v = s_htab_get (&r->names, name, h);
    if (v >= 0) {
        bool inst = (v & INST_BIT) != 0;
        const named_t *old = inst ? &r->insts[v & ~(int64_t) INST_BIT] : &r->groups[v];
        if (inst == !group)
            s_error (p, p->line, "%s '%s' is already defined at line %d: give each %s once",
                     group ? "group" : "instrument", name, old->line,
                     group ? "group" : "instrument");
        else
            s_error (p, p->line,
                     "'%s' is already %s (line %d): a name is a group or an instrument, not "
                     "both",
                     name, inst ? "an instrument" : "a group", old->line);
        return false;
    }
    named_t **arr = group ? &r->groups : &r->insts;
    size_t *n = group ? &r->ngroups : &r->ninsts;
    size_t *cap = group ? &r->gcap : &r->icap;
    char *copy = strdup (name);
    if (!copy || GROW (*arr, *cap, *n)
        || s_htab_put (&r->names, copy, h, (uint32_t) *n | (group ? 0 : INST_BIT))) {
        free (copy);
        s_oom (p);
        return false;
    }
    (*arr)[*n] = (named_t){copy, p->line, *cc};
    (*n)++;
    return true;
}

// --------------------------------------------------------------------------
// Statements

// group NAME = ITEM ...  /  instrument NAME between ITEM ...
static void
s_named_statement (parser_t *p, char **tok, int ntok, bool group)
{
    const char *sep = group ? "=" : "between";
    if (ntok < 3 || strcmp (tok[2], sep) != 0) {
        if (group)
            s_error (p, p->line,
                     "a group line reads 'group NAME = ITEM ITEM ...', for example "
                     "'group benelux = BE NL LU'");
        else
            s_error (p, p->line,
                     "an instrument line reads 'instrument NAME between ITEM ITEM ...', for "
                     "example 'instrument eio between eu'");
        return;
    }
    if (!group && ntok == 3) {
        s_error (p, p->line,
                 "instrument '%.*s' has no parties: list the jurisdictions and groups it binds",
                 TOK (tok[1]));
        return;
    }
    ccset_t cc = {{0}};
    for (int i = 3; i < ntok; i++)
        s_set_item (p, tok[i], &cc, group ? "a group" : "an instrument");
    // Defined even when an item was wrong, so that its uses are not also
    // reported as unknown.
    if (s_name_ok (p, tok[1], group))
        s_define (p, tok[1], group, &cc);
}

// contact CC = NODE ...
static void
s_contact (parser_t *p, char **tok, int ntok)
{
    rules_t *r = p->r;
    if (ntok < 3 || strcmp (tok[2], "=") != 0) {
        s_error (p, p->line,
                 "a contact line reads 'contact CC = NODE NODE ...', for example "
                 "'contact DE = de-bka'");
        return;
    }
    int c = s_cc_token (p, tok[1]);
    if (c == -1) {
        s_error (p, p->line,
                 "'%.*s' is not a jurisdiction code: contact takes two upper-case "
                 "letters (contact DE = de-bka)",
                 TOK (tok[1]));
        return;
    }
    if (c < 0)
        return;
    if (r->contact_line[c]) {
        s_error (p, p->line,
                 "contact %s is already given at line %d: list all its nodes on one "
                 "line",
                 tok[1], r->contact_line[c]);
        return;
    }
    r->contact_line[c] = p->line;
    if (ntok == 3) {
        s_error (p, p->line,
                 "contact %s lists no node: add its contact point(s), for example "
                 "'contact %s = %c%c-police'",
                 tok[1], tok[1], tolower ((unsigned char) tok[1][0]),
                 tolower ((unsigned char) tok[1][1]));
        return;
    }
    for (int i = 3; i < ntok; i++) {
        const char *id = tok[i];
        if (!wire_node_id_valid (id)) {
            s_error (p, p->line,
                     "'%.*s' is not a node id (two lower-case letters of its "
                     "country, '-', then letters, digits or '-', as in de-bka)",
                     TOK (id));
            continue;
        }
        if (id[0] != tolower ((unsigned char) tok[1][0])
            || id[1] != tolower ((unsigned char) tok[1][1])) {
            s_error (p, p->line,
                     "contact %s: '%s' is not a node of %s (its node ids begin "
                     "with '%c%c-')",
                     tok[1], id, tok[1], tolower ((unsigned char) tok[1][0]),
                     tolower ((unsigned char) tok[1][1]));
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < r->ncontact[c]; j++)
            dup |= strcmp (r->contact[c][j], id) == 0;
        if (dup) {
            s_error (p, p->line, "contact %s lists '%s' twice", tok[1], id);
            continue;
        }
        char **v = realloc (r->contact[c], (r->ncontact[c] + 1) * sizeof *v);
        char *copy = strdup (id);
        if (v)
            r->contact[c] = v;
        if (!v || !copy) {
            free (copy);
            s_oom (p);
            return;
        }
        v[r->ncontact[c]++] = copy;
    }
}

static void
s_side_free (side_t *s)
{
    free (s->nodes);
    s->nodes = NULL;
}

static void
s_rule_free (rule_t *u)
{
    s_side_free (&u->from);
    s_side_free (&u->to);
    free (u->insts);
    u->insts = NULL;
}

// One item of 'from' or 'to'. False if reported.
static bool
s_side_item (parser_t *p, side_t *side, const char *item, bool to)
{
    const char *key = to ? "to" : "from";
    if (strcmp (item, "any") == 0) {
        side->any = true;
        return true;
    }
    if (strcmp (item, "foreign") == 0 || strcmp (item, "domestic") == 0) {
        if (!to) {
            s_error (p, p->line,
                     "'%s' belongs to 'to': it compares the recipient's country "
                     "with the sender's",
                     item);
            return false;
        }
        if (item[0] == 'f')
            side->foreign = true;
        else
            side->domestic = true;
        return true;
    }
    int c = s_cc_token (p, item);
    if (c >= 0) {
        s_bit_set (side->cc.w, (size_t) c);
        return true;
    }
    if (c == -2)
        return false;
    int64_t n = s_node_ref (p, item);
    if (n == -2)
        return false;
    if (n >= 0) {
        if (GROW (side->nodes, side->cap, side->nnodes)) {
            s_oom (p);
            return false;
        }
        side->nodes[side->nnodes++] = (uint32_t) n;
        return true;
    }
    if (s_reserved_word (item)) {
        s_error (p, p->line,
                 "'%s' has no meaning in '%s': use any, a jurisdiction (FR), a node "
                 "id (fr-pn) or a group (eu)%s",
                 item, key, to ? ", or foreign or domestic" : "");
        return false;
    }
    if (!wire_codec_group_valid (item)) {
        bool cc_like = strlen (item) == 2 && isalpha ((unsigned char) item[0])
                       && isalpha ((unsigned char) item[1]);
        if (cc_like)
            s_error (p, p->line,
                     "'%s' in '%s': jurisdictions are two upper-case letters "
                     "(%c%c)",
                     item, key, toupper ((unsigned char) item[0]),
                     toupper ((unsigned char) item[1]));
        else
            s_error (p, p->line,
                     "'%.*s' in '%s' is not a jurisdiction (FR), node id (fr-pn) or "
                     "group name (eu)",
                     TOK (item), key);
        return false;
    }
    const named_t *g = s_group_ref (p, item);
    if (!g)
        return false;
    s_cc_or (&side->cc, &g->cc);
    if (s_cc_empty (&g->cc))
        side->empty = g->name;
    return true;
}

// The value index of item in dimension d, or -1.
static int
s_dim_value (int d, const char *item)
{
    const dim_t *dim = &s_dims[d];
    if (d == D_TLP && strncasecmp (item, "TLP:", 4) == 0)
        item += 4;
    for (int v = 0; v < dim->nvalues; v++)
        if (dim->nocase ? strcasecmp (item, dim->values[v]) == 0
                        : strcmp (item, dim->values[v]) == 0)
            return v;
    return -1;
}

// One condition, KEY VALUE[,VALUE...]. False if reported.
static bool
s_condition (parser_t *p, rule_t *u, int k, char *value)
{
    const char *key = s_keys[k];
    size_t len = strlen (value);
    if (value[len - 1] == ',' || value[0] == ',' || strstr (value, ",,")) {
        s_error (p, p->line,
                 "'%s %.*s': a list is values separated by single commas, with no "
                 "spaces (from FR,DE)",
                 key, TOK (value));
        return false;
    }
    if (k == K_FROM || k == K_TO) {
        side_t *side = k == K_FROM ? &u->from : &u->to;
        side->any = false;
    }
    else if (k >= K_DIM0)
        u->mask[k - K_DIM0] = 0;
    bool ok = true;
    char *save = NULL;
    for (char *item = strtok_r (value, ",", &save); item; item = strtok_r (NULL, ",", &save)) {
        if (k == K_FROM || k == K_TO) {
            ok &= s_side_item (p, k == K_FROM ? &u->from : &u->to, item, k == K_TO);
            continue;
        }
        if (k >= K_DIM0) {
            int d = k - K_DIM0;
            int v = s_dim_value (d, item);
            if (v >= 0) {
                u->mask[d] |= (uint8_t) (1u << v);
                continue;
            }
            char buf[NAME_MAX_LEN + 32];
            const char *near = s_nearest (item, s_dims[d].values, (size_t) s_dims[d].nvalues);
            if (d == D_TLP
                && strcasecmp (item + (strncasecmp (item, "TLP:", 4) ? 0 : 4), "white") == 0)
                near = "clear";
            s_error (p, p->line, "'%.*s' is not a valid %s: use %s%s", TOK (item), key,
                     s_dims[d].usage, s_mean (buf, sizeof buf, near));
            ok = false;
            continue;
        }
        // basis
        if (strcmp (item, "none") == 0)
            u->basis_none = true;
        else if (strcmp (item, "binding") == 0)
            u->basis_binding = true;
        else {
            int64_t v =
                wire_codec_group_valid (item) ? s_htab_get (&p->r->names, item, s_hash (item)) : -1;
            if (v >= 0 && (v & INST_BIT)) {
                if (GROW (u->insts, u->icap, u->ninsts)) {
                    s_oom (p);
                    return false;
                }
                u->insts[u->ninsts++] = (uint32_t) (v & ~(int64_t) INST_BIT);
            }
            else if (v >= 0) {
                s_error (p, p->line,
                         "'%s' is a group, not an instrument: 'basis' names "
                         "instruments (basis eio), binding or none",
                         item);
                ok = false;
            }
            else if (!wire_codec_group_valid (item)) {
                char buf[NAME_MAX_LEN + 32];
                s_error (
                    p, p->line,
                    "'%.*s' is not an instrument name%s: 'basis' takes "
                    "instrument names, binding or none",
                    TOK (item),
                    s_mean (buf, sizeof buf, s_nearest_named (p->r->insts, p->r->ninsts, item)));
                ok = false;
            }
            else {
                s_unknown_name (p, item, false);
                ok = false;
            }
        }
    }
    return ok;
}

// The countries a side can stand for; *all when it is not a finite list.
static void
s_side_countries (const rules_t *r, const side_t *s, ccset_t *cc, bool *all)
{
    *all = s->any || s->foreign || s->domestic;
    *cc = s->cc;
    for (size_t i = 0; i < s->nnodes; i++)
        s_bit_set (cc->w, (size_t) s_node_cc (r->node_ids[s->nodes[i]]));
}

// Reports a rule whose conditions can never all hold; true if it did.
static bool
s_check_never (parser_t *p, rule_t *u)
{
    const rules_t *r = p->r;
    const side_t *sides[2] = {&u->from, &u->to};
    for (int i = 0; i < 2; i++) {
        const side_t *s = sides[i];
        if (s->any || s->foreign || s->domestic || s->nnodes || !s_cc_empty (&s->cc))
            continue;
        s_error (p, u->line,
                 "never matches: '%s' names only the empty group '%s'; add members "
                 "to the group or remove the rule",
                 i ? "to" : "from", s->empty ? s->empty : "?");
        return true;
    }
    // An MLA reply always answers an earlier message.
    if (u->mask[D_TYPE] == 1u << 1 && u->mask[D_REPLY] == 1u << 0) {
        s_error (p, u->line,
                 "never matches: an mla-reply always replies to an earlier message, "
                 "and the rule requires reply no");
        return true;
    }
    if ((u->keys & KEY (K_BASIS)) && !u->basis_none) {
        ccset_t scc, rcc;
        bool sall, rall;
        s_side_countries (r, &u->from, &scc, &sall);
        s_side_countries (r, &u->to, &rcc, &rall);
        size_t n = u->basis_binding ? r->ninsts : u->ninsts;
        bool some = false;
        for (size_t i = 0; i < n && !some; i++) {
            const ccset_t *parties = &r->insts[u->basis_binding ? i : u->insts[i]].cc;
            some = (sall ? !s_cc_empty (parties) : s_cc_meets (parties, &scc))
                   && (rall ? !s_cc_empty (parties) : s_cc_meets (parties, &rcc));
        }
        if (!some) {
            if (u->basis_binding && !r->ninsts)
                s_error (p, u->line,
                         "never matches: 'basis binding' needs an instrument, and "
                         "the file defines none");
            else
                s_error (p, u->line,
                         "never matches: no instrument in its 'basis' binds both a "
                         "sender and a recipient it names; check the instrument's parties");
            return true;
        }
    }
    return false;
}

// allow / deny / copy NODE, then conditions.
static void
s_rule (parser_t *p, char **tok, int ntok, int verb)
{
    rule_t u;
    memset (&u, 0, sizeof u);
    u.line = p->line;
    u.verb = verb;
    u.from.any = u.to.any = true;
    for (int d = 0; d < D_COUNT; d++)
        u.mask[d] = (uint8_t) ((1u << s_dims[d].nvalues) - 1);
    int start = 1;
    bool ok = true;
    if (verb == V_COPY) {
        int64_t n = ntok > 1 ? s_node_ref (p, tok[1]) : -1;
        if (n == -1)
            s_error (p, p->line,
                     "a copy rule reads 'copy NODE CONDITION ...' with the node id "
                     "to copy to, for example 'copy fr-pn from FR to foreign type mla-request'");
        if (n < 0)
            return;
        u.node = (uint32_t) n;
        start = 2;
    }
    for (int i = start; i < ntok; i += 2) {
        int k = -1;
        for (int j = 0; j < K_COUNT; j++)
            if (strcmp (tok[i], s_keys[j]) == 0)
                k = j;
        if (k < 0) {
            char buf[NAME_MAX_LEN + 32];
            s_error (p, p->line,
                     "unknown condition '%.*s'%s: conditions are from, to, type, "
                     "priority, tlp, handling, source, accuracy, basis and reply, each followed "
                     "by its value(s)",
                     TOK (tok[i]), s_mean (buf, sizeof buf, s_nearest (tok[i], s_keys, K_COUNT)));
            ok = false;
            continue;
        }
        if (i + 1 >= ntok) {
            s_error (p, p->line, "'%s' needs a value (for example '%s %s')", tok[i], tok[i],
                     k == K_FROM || k == K_TO ? "FR"
                     : k == K_BASIS           ? "eio"
                                              : s_dims[k - K_DIM0].values[0]);
            ok = false;
            break;
        }
        if (u.keys & KEY (k)) {
            s_error (p, p->line,
                     "'%s' is given twice in this rule: give it once with the values "
                     "comma-separated (%s a,b)",
                     tok[i], tok[i]);
            ok = false;
            continue;
        }
        u.keys |= KEY (k);
        // "from FR, DE": the rest of the line is out of step; one error is enough.
        bool split = tok[i + 1][strlen (tok[i + 1]) - 1] == ',';
        ok &= s_condition (p, &u, k, tok[i + 1]);
        if (split)
            break;
    }
    if (!ok) {
        s_rule_free (&u);
        return;
    }
    rule_t **list = verb == V_COPY ? &p->copies : &p->rules;
    size_t *n = verb == V_COPY ? &p->ncopies : &p->nrules;
    size_t *cap = verb == V_COPY ? &p->ccap : &p->rcap;
    if (*n >= MAX_RULES) {
        if (!p->too_many)
            s_error (p, p->line,
                     "more than %d %s rules: use groups and lists to say the same "
                     "in fewer rules",
                     MAX_RULES, verb == V_COPY ? "copy" : "allow/deny");
        p->too_many = true;
        s_rule_free (&u);
        return;
    }
    if (GROW (*list, *cap, *n)) {
        s_oom (p);
        s_rule_free (&u);
        return;
    }
    (*list)[(*n)++] = u;
}

// Splits a line (already checked) into tokens in place; returns the count.
static int
s_tokens (char *buf, char **tok)
{
    int n = 0;
    char *hash = strchr (buf, '#');
    if (hash)
        *hash = 0;
    for (char *s = buf; *s;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        tok[n++] = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        if (*s)
            *s++ = 0;
    }
    return n;
}

// Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid.
static size_t
s_utf8 (const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (!len || len > n || s[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    // Overlong forms, surrogates and code points above U+10FFFF.
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0)
        || (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

// Checks a line's bytes; false if reported.
static bool
s_line_ok (parser_t *p, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char) s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            s_error (p, p->line,
                     "control character (code %d) in column %zu: a rules file is "
                     "plain text",
                     c, i + 1);
            return false;
        }
        size_t k = s_utf8 ((const unsigned char *) s + i, n - i);
        if (!k) {
            s_error (p, p->line, "not valid UTF-8 in column %zu: save the file as UTF-8", i + 1);
            return false;
        }
        i += k;
    }
    return true;
}

// Parses one line (without its newline).
static void
s_line (parser_t *p, const char *s, size_t n)
{
    if (n > RULES_MAX_LINE) {
        s_error (p, p->line,
                 "line longer than %d bytes: split the rule, or name the list once "
                 "with a group",
                 RULES_MAX_LINE);
        return;
    }
    if (n && s[n - 1] == '\r')
        n--;
    if (!s_line_ok (p, s, n))
        return;
    char buf[RULES_MAX_LINE + 1];
    char *tok[RULES_MAX_LINE / 2 + 1];
    memcpy (buf, s, n);
    buf[n] = 0;
    int ntok = s_tokens (buf, tok);
    if (!ntok)
        return;
    p->r->statements++;
    const char *verb = tok[0];
    if (strcmp (verb, "group") == 0)
        s_named_statement (p, tok, ntok, true);
    else if (strcmp (verb, "instrument") == 0)
        s_named_statement (p, tok, ntok, false);
    else if (strcmp (verb, "contact") == 0)
        s_contact (p, tok, ntok);
    else if (strcmp (verb, "allow") == 0)
        s_rule (p, tok, ntok, V_ALLOW);
    else if (strcmp (verb, "deny") == 0)
        s_rule (p, tok, ntok, V_DENY);
    else if (strcmp (verb, "copy") == 0)
        s_rule (p, tok, ntok, V_COPY);
    else {
        p->r->statements--;
        char buf2[NAME_MAX_LEN + 32];
        s_error (
            p, p->line,
            "unknown statement '%.*s'%s: a line begins with group, instrument, "
            "contact, allow, deny or copy ('#' starts a comment)",
            TOK (verb),
            s_mean (buf2, sizeof buf2,
                    s_nearest (verb, s_statements, sizeof s_statements / sizeof *s_statements)));
    }
}

// Records where groups and instruments are defined, so that a use before
// the definition can say so instead of "unknown".
static void
s_prescan_line (parser_t *p, const char *s, size_t n)
{
    if (n > RULES_MAX_LINE)
        return;
    char buf[RULES_MAX_LINE + 1];
    char *tok[RULES_MAX_LINE / 2 + 1];
    memcpy (buf, s, n);
    buf[n] = 0;
    int ntok = s_tokens (buf, tok);
    bool group = ntok >= 3 && strcmp (tok[0], "group") == 0 && strcmp (tok[2], "=") == 0;
    bool inst = ntok >= 3 && strcmp (tok[0], "instrument") == 0 && strcmp (tok[2], "between") == 0;
    if ((!group && !inst) || !wire_codec_group_valid (tok[1]))
        return;
    uint64_t h = s_hash (tok[1]);
    if (s_htab_get (&p->later, tok[1], h) >= 0)
        return;
    char *key = strdup (tok[1]);
    if (!key || GROW (p->later_keys, p->lcap, p->nlater)
        || s_htab_put (&p->later, key, h, (uint32_t) p->line | (inst ? INST_BIT : 0))) {
        free (key);
        return; /* only costs a less precise message */
    }
    p->later_keys[p->nlater++] = key;
}

// Calls fn for every line of text, with p->line set.
static void
s_each_line (parser_t *p, const char *text, size_t size,
             void (*fn) (parser_t *p, const char *s, size_t n))
{
    size_t pos = 0;
    // A byte order mark is not part of the first statement.
    if (size >= 3 && memcmp (text, "\xef\xbb\xbf", 3) == 0)
        pos = 3;
    p->line = 0;
    while (pos < size) {
        const char *s = text + pos;
        const char *eol = memchr (s, '\n', size - pos);
        size_t n = eol ? (size_t) (eol - s) : size - pos;
        p->line++;
        fn (p, s, n);
        pos += n + 1;
    }
}

// --------------------------------------------------------------------------
// Compilation

static void
s_rset_free (rset_t *rs)
{
    free (rs->arena);
    free (rs->s_node);
    free (rs->r_node[0]);
    free (rs->r_node[1]);
    free (rs->b_inst);
    memset (rs, 0, sizeof *rs);
}

// Row i of arena (words long), handed out in order.
static uint64_t *
s_row (rset_t *rs, size_t *next)
{
    return rs->arena + (*next)++ * rs->words;
}

static void
s_row_or (uint64_t *a, const uint64_t *b, size_t words)
{
    for (size_t i = 0; i < words; i++)
        a[i] |= b[i];
}

// Makes countries whose rows are equal share the first such row, and
// numbers the distinct rows in ids. Members of a group that rules name
// together get equal rows: fewer rows to keep in cache, fewer to AND when
// checking a rule that names the group.
static void
s_dedupe (uint64_t **a, uint64_t **b, size_t words, uint16_t *ids)
{
    enum { SLOTS = 2048 }; /* > 2 * CC_COUNT */
    int slot[SLOTS];
    uint64_t hash[CC_COUNT];
    memset (slot, -1, sizeof slot);
    uint16_t next = 0;
    for (int c = 0; c < CC_COUNT; c++) {
        uint64_t h = 0xcbf29ce484222325u;
        for (size_t i = 0; i < words; i++)
            h = (h ^ a[c][i] ^ (b ? b[c][i] << 1 : 0)) * 0x100000001b3u;
        hash[c] = h;
        size_t k = h % SLOTS;
        for (; slot[k] >= 0; k = (k + 1) % SLOTS) {
            int f = slot[k];
            if (hash[f] == h && (a[f] == a[c] || !memcmp (a[f], a[c], words * 8))
                && (!b || b[f] == b[c] || !memcmp (b[f], b[c], words * 8)))
                break;
        }
        if (slot[k] < 0) {
            slot[k] = c;
            ids[c] = next++;
            continue;
        }
        a[c] = a[slot[k]];
        if (b)
            b[c] = b[slot[k]];
        ids[c] = ids[slot[k]];
    }
}

// Compiles a rule list into rows. 0, or -1 (reported).
static int
s_compile (parser_t *p, rset_t *rs, const rule_t *rules, size_t n)
{
    const rules_t *r = p->r;
    memset (rs, 0, sizeof *rs);
    rs->n = n;
    rs->words = n ? (n + 63) / 64 : 1;
    size_t nn = r->nnodes;
    rs->s_node = calloc (nn + 1, sizeof *rs->s_node);
    rs->r_node[0] = calloc (nn + 1, sizeof *rs->r_node[0]);
    rs->r_node[1] = calloc (nn + 1, sizeof *rs->r_node[1]);
    rs->b_inst = calloc (r->ninsts + 1, sizeof *rs->b_inst);
    bool *s_named = calloc (CC_COUNT * 2 + 2 * (nn + 1), 1);
    if (!rs->s_node || !rs->r_node[0] || !rs->r_node[1] || !rs->b_inst || !s_named) {
        free (s_named);
        s_oom (p);
        return -1;
    }
    bool *r_named = s_named + CC_COUNT, *sn_named = r_named + CC_COUNT,
         *rn_named = sn_named + nn + 1;
    // Countries and nodes named by the rules each get their own rows.
    for (size_t i = 0; i < n; i++) {
        const rule_t *u = &rules[i];
        for (int c = s_cc_next (&u->from.cc, 0); c >= 0; c = s_cc_next (&u->from.cc, c + 1))
            s_named[c] = true;
        for (int c = s_cc_next (&u->to.cc, 0); c >= 0; c = s_cc_next (&u->to.cc, c + 1))
            r_named[c] = true;
        for (size_t j = 0; j < u->from.nnodes; j++)
            sn_named[u->from.nodes[j]] = true;
        for (size_t j = 0; j < u->to.nnodes; j++)
            rn_named[u->to.nodes[j]] = true;
    }
    size_t ns = 1, nr = 1, nsn = 0, nrn = 0;
    for (int c = 0; c < CC_COUNT; c++) {
        ns += s_named[c];
        nr += r_named[c];
    }
    for (size_t j = 0; j < nn; j++) {
        nsn += sn_named[j];
        nrn += rn_named[j];
    }
    size_t dims = 0;
    for (int d = 0; d < D_COUNT; d++)
        dims += (size_t) s_dims[d].nvalues;
    // s_any r_any r_anyfor r_anydom b_binding b_nocond b_none, then instruments.
    size_t rows = ns + nsn + 2 * (nr + nrn) + dims + 7 + r->ninsts;
    if (rows > MAX_TABLE_BYTES / 8 / rs->words) {
        s_error (p, 0,
                 "the policy is too large to compile (%zu rules, %zu named nodes): "
                 "address jurisdictions or groups rather than individual nodes",
                 n, nn);
        free (s_named);
        return -1;
    }
    rs->arena = calloc (rows * rs->words, sizeof *rs->arena);
    if (!rs->arena) {
        free (s_named);
        s_oom (p);
        return -1;
    }
    size_t next = 0, W = rs->words;
    uint64_t *s_first = rs->arena;
    uint64_t *s_def = s_row (rs, &next);
    for (int c = 0; c < CC_COUNT; c++)
        rs->s_cc[c] = s_named[c] ? s_row (rs, &next) : s_def;
    size_t s_rows = next;
    uint64_t *r_first = rs->arena + next * W;
    uint64_t *r_def0 = s_row (rs, &next), *r_def1 = s_row (rs, &next);
    for (int c = 0; c < CC_COUNT; c++) {
        rs->r_cc[0][c] = r_named[c] ? s_row (rs, &next) : r_def0;
        rs->r_cc[1][c] = r_named[c] ? s_row (rs, &next) : r_def1;
    }
    size_t r_rows = next - s_rows;
    for (size_t j = 0; j < nn; j++) {
        if (sn_named[j])
            rs->s_node[j] = s_row (rs, &next);
        if (rn_named[j]) {
            rs->r_node[0][j] = s_row (rs, &next);
            rs->r_node[1][j] = s_row (rs, &next);
        }
    }
    for (int d = 0; d < D_COUNT; d++)
        for (int v = 0; v < s_dims[d].nvalues; v++)
            rs->dim[d][v] = s_row (rs, &next);
    uint64_t *s_any = s_row (rs, &next), *r_any = s_row (rs, &next);
    uint64_t *r_for = s_row (rs, &next), *r_dom = s_row (rs, &next);
    uint64_t *b_bind = s_row (rs, &next), *b_nocond = s_row (rs, &next);
    uint64_t *b_none = s_row (rs, &next);
    for (size_t k = 0; k < r->ninsts; k++)
        rs->b_inst[k] = s_row (rs, &next);
    free (s_named);

    for (size_t i = 0; i < n; i++) {
        const rule_t *u = &rules[i];
        if (u->from.any)
            s_bit_set (s_any, i);
        else {
            for (int c = s_cc_next (&u->from.cc, 0); c >= 0; c = s_cc_next (&u->from.cc, c + 1))
                s_bit_set (rs->s_cc[c], i);
            for (size_t j = 0; j < u->from.nnodes; j++)
                s_bit_set (rs->s_node[u->from.nodes[j]], i);
        }
        if (u->to.any)
            s_bit_set (r_any, i);
        else {
            if (u->to.foreign)
                s_bit_set (r_for, i);
            if (u->to.domestic)
                s_bit_set (r_dom, i);
            for (int c = s_cc_next (&u->to.cc, 0); c >= 0; c = s_cc_next (&u->to.cc, c + 1)) {
                s_bit_set (rs->r_cc[0][c], i);
                s_bit_set (rs->r_cc[1][c], i);
            }
            for (size_t j = 0; j < u->to.nnodes; j++) {
                s_bit_set (rs->r_node[0][u->to.nodes[j]], i);
                s_bit_set (rs->r_node[1][u->to.nodes[j]], i);
            }
        }
        for (int d = 0; d < D_COUNT; d++)
            for (int v = 0; v < s_dims[d].nvalues; v++)
                if (u->mask[d] & (1u << v))
                    s_bit_set (rs->dim[d][v], i);
        if (!(u->keys & KEY (K_BASIS)))
            s_bit_set (b_nocond, i);
        else {
            if (u->basis_none)
                s_bit_set (b_none, i);
            if (u->basis_binding)
                s_bit_set (b_bind, i);
            for (size_t j = 0; j < u->ninsts; j++)
                s_bit_set (rs->b_inst[u->insts[j]], i);
        }
    }
    // Fold the catch-alls into every row they apply to: a decision then
    // reads one row per dimension.
    for (size_t i = 0; i < s_rows; i++)
        s_row_or (s_first + i * W, s_any, W);
    s_row_or (r_for, r_any, W);
    s_row_or (r_dom, r_any, W);
    for (size_t i = 0; i < r_rows; i += 2) {
        s_row_or (r_first + i * W, r_for, W);
        s_row_or (r_first + (i + 1) * W, r_dom, W);
    }
    for (size_t j = 0; j < nn; j++) {
        int c = s_node_cc (r->node_ids[j]);
        if (rs->s_node[j])
            s_row_or (rs->s_node[j], rs->s_cc[c], W);
        for (int dom = 0; dom < 2; dom++)
            if (rs->r_node[dom][j])
                s_row_or (rs->r_node[dom][j], rs->r_cc[dom][c], W);
    }
    s_dedupe (rs->s_cc, NULL, W, rs->s_id);
    s_dedupe (rs->r_cc[0], rs->r_cc[1], W, rs->r_id);
    s_row_or (b_bind, b_nocond, W);
    s_row_or (b_none, b_nocond, W);
    for (size_t k = 0; k < r->ninsts; k++)
        s_row_or (rs->b_inst[k], b_bind, W);
    rs->s_any = s_any;
    rs->r_any = r_any;
    rs->r_anyfor = r_for;
    rs->r_anydom = r_dom;
    rs->b_binding = b_bind;
    rs->b_nocond = b_nocond;
    rs->b_none = b_none;
    return 0;
}

// The rules that may still cover the rule being checked: acc, zero
// outside words [lo, hi), which shrink as rows are ANDed in.
typedef struct {
    uint64_t *acc;
    size_t lo, hi;
    uint32_t *seen_s, *seen_r; /* per distinct country row: epoch last ANDed */
    uint32_t epoch;
} cover_t;

// acc &= row; false when nothing is left.
static bool
s_and (cover_t *cv, const uint64_t *row)
{
    size_t lo = cv->hi, hi = cv->lo;
    for (size_t i = cv->lo; i < cv->hi; i++)
        if ((cv->acc[i] &= row[i])) {
            if (lo == cv->hi)
                lo = i;
            hi = i + 1;
        }
    if (hi <= lo) {
        cv->lo = cv->hi = 0;
        return false;
    }
    cv->lo = lo;
    cv->hi = hi;
    return true;
}

// Leaves in cv the rules before rule j that match every query rule j
// matches; false if there is none. Dimension by dimension, a rule covers j
// when it accepts every value j accepts; this misses a rule covered only by
// several earlier ones together, which is the conservative side.
static bool
s_covered (const rset_t *rs, const rule_t *u, size_t j, cover_t *cv)
{
    cv->lo = 0;
    cv->hi = j / 64 + 1;
    memset (cv->acc, 0xff, cv->hi * sizeof *cv->acc);
    cv->acc[j / 64] = ((uint64_t) 1 << (j % 64)) - 1;
    if (j % 64 == 0 && --cv->hi == 0)
        return false;
    cv->epoch++;
    if (u->from.any) {
        if (!s_and (cv, rs->s_any))
            return false;
    }
    else {
        for (int c = s_cc_next (&u->from.cc, 0); c >= 0; c = s_cc_next (&u->from.cc, c + 1)) {
            if (cv->seen_s[rs->s_id[c]] == cv->epoch)
                continue;
            cv->seen_s[rs->s_id[c]] = cv->epoch;
            if (!s_and (cv, rs->s_cc[c]))
                return false;
        }
        for (size_t i = 0; i < u->from.nnodes; i++)
            if (!s_and (cv, rs->s_node[u->from.nodes[i]]))
                return false;
    }
    if (u->to.any) {
        if (!s_and (cv, rs->r_any))
            return false;
    }
    else {
        if (u->to.foreign && !s_and (cv, rs->r_anyfor))
            return false;
        if (u->to.domestic && !s_and (cv, rs->r_anydom))
            return false;
        for (int c = s_cc_next (&u->to.cc, 0); c >= 0; c = s_cc_next (&u->to.cc, c + 1)) {
            if (cv->seen_r[rs->r_id[c]] == cv->epoch)
                continue;
            cv->seen_r[rs->r_id[c]] = cv->epoch;
            if (!s_and (cv, rs->r_cc[0][c]) || !s_and (cv, rs->r_cc[1][c]))
                return false;
        }
        for (size_t i = 0; i < u->to.nnodes; i++) {
            uint32_t nd = u->to.nodes[i];
            if (!s_and (cv, rs->r_node[0][nd]) || !s_and (cv, rs->r_node[1][nd]))
                return false;
        }
    }
    for (int d = 0; d < D_COUNT; d++)
        for (int v = 0; v < s_dims[d].nvalues; v++)
            if ((u->mask[d] & (1u << v)) && !s_and (cv, rs->dim[d][v]))
                return false;
    if (!(u->keys & KEY (K_BASIS)))
        return s_and (cv, rs->b_nocond);
    if (u->basis_none && !s_and (cv, rs->b_none))
        return false;
    if (u->basis_binding && !s_and (cv, rs->b_binding))
        return false;
    for (size_t i = 0; i < u->ninsts; i++)
        if (!s_and (cv, rs->b_inst[u->insts[i]]))
            return false;
    return true;
}

// Reports every allow/deny rule that an earlier one makes unreachable.
static void
s_check_shadowed (parser_t *p, const rset_t *rs, const rule_t *rules, size_t n)
{
    cover_t cv = {0};
    cv.acc = malloc (rs->words * sizeof *cv.acc);
    cv.seen_s = calloc (2 * CC_COUNT, sizeof *cv.seen_s);
    cv.seen_r = cv.seen_s ? cv.seen_s + CC_COUNT : NULL;
    if (!cv.acc || !cv.seen_s) {
        s_oom (p);
        goto done;
    }
    // Past the error cap nothing more would be shown.
    for (size_t j = 1; j < n && p->errors <= MAX_ERRORS; j++) {
        if (rules[j].never || !s_covered (rs, &rules[j], j, &cv))
            continue;
        size_t i = cv.lo * 64 + (size_t) __builtin_ctzll (cv.acc[cv.lo]);
        s_error (p, rules[j].line,
                 "never matches: the rule at %s:%d already matches everything "
                 "it would; remove it or move it above that rule",
                 p->name, rules[i].line);
    }
done:
    free (cv.acc);
    free (cv.seen_s);
}

// --------------------------------------------------------------------------
// Loading

static void
s_parser_free (parser_t *p)
{
    for (size_t i = 0; i < p->nrules; i++)
        s_rule_free (&p->rules[i]);
    for (size_t i = 0; i < p->ncopies; i++)
        s_rule_free (&p->copies[i]);
    free (p->rules);
    free (p->copies);
    for (size_t i = 0; i < p->nlater; i++)
        free (p->later_keys[i]);
    free (p->later_keys);
    free (p->later.slots);
}

// Compiles both rule lists and keeps what decisions need. 0 or -1.
static int
s_finish (parser_t *p)
{
    rules_t *r = p->r;
    // Once the whole file is read: 'basis binding' counts every instrument.
    for (size_t i = 0; i < p->nrules; i++)
        p->rules[i].never = s_check_never (p, &p->rules[i]);
    for (size_t i = 0; i < p->ncopies; i++)
        p->copies[i].never = s_check_never (p, &p->copies[i]);
    if (s_compile (p, &r->main, p->rules, p->nrules)
        || s_compile (p, &r->copy, p->copies, p->ncopies))
        return -1;
    s_check_shadowed (p, &r->main, p->rules, p->nrules);
    r->main_line = calloc (p->nrules + 1, sizeof *r->main_line);
    r->main_allow = calloc (p->nrules + 1, sizeof *r->main_allow);
    r->copy_line = calloc (p->ncopies + 1, sizeof *r->copy_line);
    r->copy_node = calloc (p->ncopies + 1, sizeof *r->copy_node);
    r->copy_prev = calloc (p->ncopies + 1, sizeof *r->copy_prev);
    if (!r->main_line || !r->main_allow || !r->copy_line || !r->copy_node || !r->copy_prev) {
        s_oom (p);
        return -1;
    }
    for (size_t i = 0; i < p->nrules; i++) {
        r->main_line[i] = p->rules[i].line;
        r->main_allow[i] = p->rules[i].verb == V_ALLOW;
    }
    for (size_t i = 0; i < p->ncopies; i++) {
        r->copy_line[i] = p->copies[i].line;
        r->copy_node[i] = p->copies[i].node;
        r->copy_prev[i] = -1;
        for (size_t j = i; j-- > 0;)
            if (p->copies[j].node == p->copies[i].node) {
                r->copy_prev[i] = (int32_t) j;
                break;
            }
    }
    return 0;
}

rules_t *
rules_parse (const char *name, const char *text, size_t size, rules_error_fn *fn, void *arg)
{
    parser_t p;
    memset (&p, 0, sizeof p);
    p.name = name ? name : "rules";
    p.fn = fn;
    p.arg = arg;
    rules_t *self = NULL;
    const char *nul = size && text ? memchr (text, 0, size) : NULL;
    if (size > RULES_MAX_FILE) {
        s_error (&p, 0, "larger than 16 MiB (%zu bytes): a rules file may hold at most %u bytes",
                 size, RULES_MAX_FILE);
        goto done;
    }
    if (size && !text) {
        s_error (&p, 0, "no text to load");
        goto done;
    }
    if (nul) {
        int line = 1;
        for (const char *c = text; c < nul; c++)
            line += *c == '\n';
        s_error (&p, 0, "contains a NUL byte (line %d): a rules file is UTF-8 text", line);
        goto done;
    }
    self = calloc (1, sizeof *self);
    p.r = self;
    if (!self || !(self->file = strdup (p.name))) {
        s_oom (&p);
        goto done;
    }
    unsigned char md[32];
    if (!EVP_Digest (size ? text : "", size, md, NULL, EVP_sha256 (), NULL)) {
        s_error (&p, 0, "cannot compute the rules hash (SHA-256)");
        goto done;
    }
    for (int i = 0; i < 6; i++)
        snprintf (self->hash + 2 * i, 3, "%02x", md[i]);
    s_each_line (&p, text, size, s_prescan_line);
    s_each_line (&p, text, size, s_line);
    p.line = 0;
    s_finish (&p);
done:
    if (p.errors)
        rules_destroy (&self);
    s_parser_free (&p);
    s_flush (&p);
    return self;
}

rules_t *
rules_load (const char *path, rules_error_fn *fn, void *arg)
{
    parser_t p;
    memset (&p, 0, sizeof p);
    p.name = path ? path : "(no file)";
    p.fn = fn;
    p.arg = arg;
    rules_t *self = NULL;
    char *text = NULL;
    FILE *f = path ? fopen (path, "rb") : NULL;
    if (!f) {
        s_error (&p, 0, "cannot open: %s", path ? strerror (errno) : "no file name given");
        goto done;
    }
    // Read at most one byte more than the limit: the size stat reports
    // is not trusted (pipes, /proc) and the file may grow meanwhile.
    size_t cap = 65536, size = 0;
    struct stat st;
    if (fstat (fileno (f), &st) == 0 && S_ISREG (st.st_mode) && st.st_size > 0)
        cap = (size_t) st.st_size < RULES_MAX_FILE ? (size_t) st.st_size + 1 : RULES_MAX_FILE + 1;
    text = malloc (cap);
    if (!text) {
        s_error (&p, 0, "out of memory reading the file");
        goto done;
    }
    for (;;) {
        if (size == cap) {
            if (cap > RULES_MAX_FILE)
                break;
            size_t ncap = cap * 2 > RULES_MAX_FILE + 1 ? RULES_MAX_FILE + 1 : cap * 2;
            char *t = realloc (text, ncap);
            if (!t) {
                s_error (&p, 0, "out of memory reading the file");
                goto done;
            }
            text = t;
            cap = ncap;
        }
        size_t got = fread (text + size, 1, cap - size, f);
        size += got;
        if (got == 0)
            break;
    }
    if (ferror (f)) {
        s_error (&p, 0, "cannot read: %s", strerror (errno));
        goto done;
    }
    self = rules_parse (path, text, size, fn, arg);
done:
    if (f)
        fclose (f);
    free (text);
    s_flush (&p);
    return self;
}

void
rules_destroy (rules_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rules_t *self = *self_p;
    free (self->file);
    free (self->names.slots);
    for (size_t i = 0; i < self->ngroups; i++)
        free (self->groups[i].name);
    for (size_t i = 0; i < self->ninsts; i++)
        free (self->insts[i].name);
    free (self->groups);
    free (self->insts);
    free (self->nodes.slots);
    for (size_t i = 0; i < self->nnodes; i++)
        free (self->node_ids[i]);
    free (self->node_ids);
    for (int c = 0; c < CC_COUNT; c++) {
        for (size_t i = 0; i < self->ncontact[c]; i++)
            free (self->contact[c][i]);
        free (self->contact[c]);
    }
    s_rset_free (&self->main);
    s_rset_free (&self->copy);
    free (self->main_line);
    free (self->main_allow);
    free (self->copy_line);
    free (self->copy_node);
    free (self->copy_prev);
    free (self);
    *self_p = NULL;
}

// --------------------------------------------------------------------------
// Decisions

// Validates a node id while hashing it: its country, or -1 if it is not
// ^[a-z]{2}-[a-z0-9-]{1,30}$.
static int
s_node_scan (const char *id, uint64_t *hash)
{
    if (!id || !s_node_like (id))
        return -1;
    uint64_t h = 0xcbf29ce484222325u;
    size_t n = 0;
    for (; id[n]; n++) {
        unsigned char c = (unsigned char) id[n];
        if (n >= 3 && !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return -1;
        if (n > 32)
            return -1;
        h = (h ^ c) * 0x100000001b3u;
    }
    if (n < 4)
        return -1;
    *hash = h;
    return s_node_cc (id);
}

// Resolves a query against the file's names; false if it is malformed.
static bool
s_resolve (const rules_t *r, const rules_query_t *q, qctx_t *c)
{
    if (!r || !q)
        return false;
    uint64_t hs, hr;
    c->cs = s_node_scan (q->sender, &hs);
    c->cr = s_node_scan (q->recipient, &hr);
    if (c->cs < 0 || c->cr < 0)
        return false;
    c->v[D_TYPE] = q->type - LIAISON__MESSAGE_TYPE__MLA_REQUEST;
    c->v[D_PRIORITY] = q->priority - LIAISON__PRIORITY__ROUTINE;
    c->v[D_TLP] = q->tlp - LIAISON__TLP__TLP_CLEAR;
    c->v[D_HANDLING] = q->handling - LIAISON__HANDLING_CODE__H0;
    c->v[D_SOURCE] = q->source == 'A'   ? 0
                     : q->source == 'B' ? 1
                     : q->source == 'C' ? 2
                     : q->source == 'X' ? 3
                     : q->source == 0   ? 4
                                        : -1;
    c->v[D_ACCURACY] = q->accuracy == 0                       ? 4
                       : q->accuracy >= 1 && q->accuracy <= 4 ? q->accuracy - 1
                                                              : -1;
    c->v[D_REPLY] = q->reply ? 1 : 0;
    for (int d = 0; d < D_COUNT; d++)
        if (c->v[d] < 0 || c->v[d] >= s_dims[d].nvalues)
            return false;
    // The codec refuses an MLA reply that replies to nothing; so does the
    // loader a rule that would match one.
    if (q->type == LIAISON__MESSAGE_TYPE__MLA_REPLY && !q->reply)
        return false;
    c->sn = s_htab_get (&r->nodes, q->sender, hs);
    c->rn = s_htab_get (&r->nodes, q->recipient, hr);
    c->basis = BASIS_NONE;
    if (q->basis && q->basis[0]) {
        c->basis = BASIS_OTHER;
        int64_t v = s_htab_get (&r->names, q->basis, s_hash (q->basis));
        if (v >= 0 && (v & INST_BIT)) {
            const ccset_t *parties = &r->insts[v & ~(int64_t) INST_BIT].cc;
            if (s_bit_get (parties->w, (size_t) c->cs) && s_bit_get (parties->w, (size_t) c->cr))
                c->basis = (int) (v & ~(int64_t) INST_BIT);
        }
    }
    return true;
}

#define NROWS (3 + D_COUNT)

// The row of each dimension that this query selects.
static void
s_select (const rset_t *rs, const qctx_t *c, const uint64_t *row[NROWS])
{
    row[0] = c->sn >= 0 && rs->s_node[c->sn] ? rs->s_node[c->sn] : rs->s_cc[c->cs];
    int dom = c->cs == c->cr;
    row[1] = c->rn >= 0 && rs->r_node[dom][c->rn] ? rs->r_node[dom][c->rn] : rs->r_cc[dom][c->cr];
    row[2] = c->basis >= 0            ? rs->b_inst[c->basis]
             : c->basis == BASIS_NONE ? rs->b_none
                                      : rs->b_nocond;
    for (int d = 0; d < D_COUNT; d++)
        row[3 + d] = rs->dim[d][c->v[d]];
}

static inline uint64_t
s_word (const uint64_t *const row[NROWS], size_t w)
{
    return row[0][w] & row[1][w] & row[2][w] & row[3][w] & row[4][w] & row[5][w] & row[6][w]
           & row[7][w] & row[8][w] & row[9][w];
}

void
rules_decide (const rules_t *self, const rules_query_t *q, rules_decision_t *out)
{
    out->allow = false;
    out->line = 0;
    qctx_t c;
    if (!s_resolve (self, q, &c))
        return;
    const uint64_t *row[NROWS];
    s_select (&self->main, &c, row);
    size_t words = self->main.words;
    for (size_t w = 0; w < words; w++) {
        uint64_t x = s_word (row, w);
        if (x) {
            size_t i = w * 64 + (size_t) __builtin_ctzll (x);
            out->allow = self->main_allow[i];
            out->line = self->main_line[i];
            return;
        }
    }
}

int
rules_expand (const rules_t *self, int kind, const char *name, const char *sender,
              void (*fn) (void *arg, const char *node), void *arg)
{
    if (!self || !name)
        return -1;
    if (kind == LIAISON__RECIPIENT_KIND__NODE) {
        if (!wire_node_id_valid (name))
            return -1;
        if (sender && strcmp (sender, name) == 0)
            return 0;
        if (fn)
            fn (arg, name);
        return 1;
    }
    ccset_t one = {{0}};
    const ccset_t *set = &one;
    if (kind == LIAISON__RECIPIENT_KIND__JURISDICTION) {
        if (!wire_codec_country_valid (name) || s_reserved_hint (name[0], name[1]))
            return -1;
        s_bit_set (one.w, (size_t) ((name[0] - 'A') * 26 + (name[1] - 'A')));
    }
    else if (kind == LIAISON__RECIPIENT_KIND__GROUP) {
        int64_t v =
            wire_codec_group_valid (name) ? s_htab_get (&self->names, name, s_hash (name)) : -1;
        if (v < 0 || (v & INST_BIT))
            return -1;
        set = &self->groups[v].cc;
    }
    else
        return -1;
    int count = 0;
    for (int c = 0; c < CC_COUNT; c++) {
        if (!s_bit_get (set->w, (size_t) c))
            continue;
        for (size_t i = 0; i < self->ncontact[c]; i++) {
            const char *node = self->contact[c][i];
            if (sender && strcmp (sender, node) == 0)
                continue;
            if (fn)
                fn (arg, node);
            count++;
        }
    }
    return count;
}

int
rules_copies (const rules_t *self, const rules_query_t *q,
              void (*fn) (void *arg, const char *node, int line), void *arg)
{
    qctx_t c;
    if (!self || !self->copy.n || !s_resolve (self, q, &c))
        return 0;
    const uint64_t *row[NROWS];
    s_select (&self->copy, &c, row);
    int count = 0;
    for (size_t w = 0; w < self->copy.words; w++) {
        for (uint64_t x = s_word (row, w); x; x &= x - 1) {
            size_t i = w * 64 + (size_t) __builtin_ctzll (x);
            const char *node = self->node_ids[self->copy_node[i]];
            if (strcmp (node, q->sender) == 0 || strcmp (node, q->recipient) == 0)
                continue;
            // A node several copy rules require is required once, by the first.
            bool seen = false;
            for (int32_t j = self->copy_prev[i]; j >= 0 && !seen; j = self->copy_prev[j])
                seen = (s_word (row, (size_t) j / 64) >> (j % 64)) & 1;
            if (seen)
                continue;
            if (fn)
                fn (arg, node, self->copy_line[i]);
            count++;
        }
    }
    return count;
}

const char *
rules_file (const rules_t *self)
{
    return self ? self->file : "";
}

const char *
rules_hash (const rules_t *self)
{
    return self ? self->hash : "";
}

size_t
rules_count (const rules_t *self)
{
    return self ? self->statements : 0;
}

const char *
rules_explain (const rules_t *self, const rules_decision_t *d, char *buf, size_t size)
{
    if (!buf || !size)
        return buf;
    if (!d || d->line <= 0)
        snprintf (buf, size, "deny default");
    else
        snprintf (buf, size, "%s %s:%d", d->allow ? "allow" : "deny", rules_file (self), d->line);
    return buf;
}
