/*  Routing policy (broker/rules.c): decisions across jurisdictions, types,
    handling codes, TLP, priorities, evaluation and legal instruments; the
    explanation text; address expansion; required copies; the rules hash;
    every kind of error with its FILE:LINE; the size limits; and the sample
    policy in deploy/.                                                      */
#include "suites.h"

#include "liaison.pb-c.h"
#include "rules.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME "test.rules"
#define MAX_MSGS 64

// Every problem the loader reported.
typedef struct {
    int n;
    int line[MAX_MSGS];
    char file[MAX_MSGS][128];
    char msg[MAX_MSGS][768];
} errors_t;

static void
s_collect (void *arg, const char *file, int line, const char *message)
{
    errors_t *e = arg;
    if (e->n < MAX_MSGS) {
        e->line[e->n] = line;
        snprintf (e->file[e->n], sizeof e->file[e->n], "%s", file);
        snprintf (e->msg[e->n], sizeof e->msg[e->n], "%s", message);
    }
    e->n++;
}

// All collected messages, one a line, for failure output.
static const char *
s_dump (const errors_t *e)
{
    static char buf[MAX_MSGS * 200];
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < e->n && i < MAX_MSGS && n < sizeof buf; i++)
        n += (size_t) snprintf (buf + n, sizeof buf - n, "\n  %s:%d: %s", e->file[i], e->line[i],
                                e->msg[i]);
    return buf;
}

// Loads text that must be valid; fails the test with the errors otherwise.
static rules_t *
s_load (const char *text)
{
    errors_t e = {0};
    rules_t *r = rules_parse (NAME, text, strlen (text), s_collect, &e);
    ck_assert_msg (r != NULL && e.n == 0, "rules refused:%s", s_dump (&e));
    return r;
}

// The line of text holding "# @tag" (tags end at a space or newline).
static int
s_line_of (const char *text, const char *tag)
{
    int line = 1;
    size_t n = strlen (tag);
    for (const char *p = text; *p; p++) {
        if (*p == '\n')
            line++;
        else if (p[0] == '@' && strncmp (p + 1, tag, n) == 0
                 && (p[1 + n] == '\n' || p[1 + n] == ' ' || !p[1 + n]))
            return line;
    }
    ck_abort_msg ("no tag @%s in the policy", tag);
    return 0;
}

// Asserts that text is refused with an error on `line` naming the file and
// holding both fragments (the second may be NULL).
static void
s_assert_error (const char *text, int line, const char *frag, const char *frag2)
{
    errors_t e = {0};
    rules_t *r = rules_parse (NAME, text, strlen (text), s_collect, &e);
    if (r) {
        rules_destroy (&r);
        ck_abort_msg ("accepted; expected an error at line %d with '%s'", line, frag);
    }
    for (int i = 0; i < e.n && i < MAX_MSGS; i++)
        if (e.line[i] == line && strcmp (e.file[i], NAME) == 0 && strstr (e.msg[i], frag)
            && (!frag2 || strstr (e.msg[i], frag2)))
            return;
    ck_abort_msg ("no error at %s:%d with '%s'%s%s; got:%s", NAME, line, frag, frag2 ? " and " : "",
                  frag2 ? frag2 : "", s_dump (&e));
}

// --------------------------------------------------------------------------
// Decisions

// A policy exercising every dimension; "@tag" comments name the lines the
// table below expects.
static const char s_policy[] =
    "# test policy\n"
    "group eu = AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI "
    "SK\n"
    "group eio_states = AT BE BG CY CZ DE EE ES FI FR GR HR HU IT LT LU LV MT NL PL PT RO SE "
    "SI SK\n"
    "group budapest = eu US GB JP CA\n"
    "instrument eio between eio_states\n"
    "instrument budapest-29 between budapest\n"
    "instrument budapest-30 between budapest\n"
    "instrument fr-us-mlat between FR US\n"
    "contact FR = fr-pn fr-gn\n"
    "contact DE = de-bka\n"
    "contact IT = it-ps\n"
    "contact ES = es-cnp\n"
    "\n"
    "deny from KP  # @kp-from\n"
    "deny to KP    # @kp-to\n"
    "deny handling h3 to foreign  # @h3\n"
    "deny from fr-rogue  # @rogue\n"
    "allow from de-bka to it-ps type case-lead  # @bka-ps\n"
    "deny tlp TLP:RED to foreign type case-lead  # @red\n"
    "allow from eio_states to eio_states type mla-request,evidence-handoff basis eio  # @eio\n"
    "allow from budapest to budapest type mla-request basis budapest-29,budapest-30 "
    "priority urgent,emergency  # @budapest\n"
    "allow from FR to US type mla-request basis fr-us-mlat  # @fr-us\n"
    "allow from US to FR type mla-request basis fr-us-mlat  # @us-fr\n"
    "allow type mla-reply reply yes basis binding  # @reply\n"
    "allow from eu to domestic type case-lead source A,B accuracy 1,2  # @dom-eval\n"
    "deny from eu to domestic type case-lead  # @dom-other\n"
    "allow from FR to eu type case-lead basis none  # @case-none\n"
    "allow from fr-pn to foreign type evidence-handoff priority emergency  # @fr-emergency\n"
    "copy fr-pn from FR to foreign type mla-request  # @copy\n";

#define REQ LIAISON__MESSAGE_TYPE__MLA_REQUEST
#define REP LIAISON__MESSAGE_TYPE__MLA_REPLY
#define EVI LIAISON__MESSAGE_TYPE__EVIDENCE_HANDOFF
#define LEAD LIAISON__MESSAGE_TYPE__CASE_LEAD
#define ROU LIAISON__PRIORITY__ROUTINE
#define URG LIAISON__PRIORITY__URGENT
#define EME LIAISON__PRIORITY__EMERGENCY
#define CLEAR LIAISON__TLP__TLP_CLEAR
#define AMBER LIAISON__TLP__TLP_AMBER
#define RED LIAISON__TLP__TLP_RED
#define H0 LIAISON__HANDLING_CODE__H0
#define H1 LIAISON__HANDLING_CODE__H1
#define H2 LIAISON__HANDLING_CODE__H2
#define H3 LIAISON__HANDLING_CODE__H3

// One decision: the query and the expected explanation, where "@tag"
// stands for the tagged line ("allow @eio" -> "allow test.rules:20").
static const struct {
    const char *why;
    rules_query_t q;
    const char *expect;
} s_cases[] = {
    {"EIO among EU states",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false},
     "allow @eio"},
    {"EIO evidence handoff",
     {"de-bka", "fr-gn", EVI, ROU, AMBER, H1, 0, 0, "eio", false},
     "allow @eio"},
    {"MLA request without legal basis",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "", false},
     "deny default"},
    {"NULL basis is no basis",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, NULL, false},
     "deny default"},
    {"unknown instrument",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eoi", false},
     "deny default"},
    {"Denmark is not bound by the EIO",
     {"dk-pol", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false},
     "deny default"},
    {"EIO does not bind the US",
     {"fr-pn", "us-doj", REQ, ROU, AMBER, H1, 0, 0, "eio", false},
     "deny default"},
    {"Budapest Art. 29 routine is not enough",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "budapest-29", false},
     "deny default"},
    {"Budapest Art. 29 urgent",
     {"fr-pn", "de-bka", REQ, URG, AMBER, H1, 0, 0, "budapest-29", false},
     "allow @budapest"},
    {"Budapest Art. 30 emergency, non-EU parties",
     {"us-doj", "jp-npa", REQ, EME, AMBER, H1, 0, 0, "budapest-30", false},
     "allow @budapest"},
    {"Budapest, non-party sender",
     {"ru-mvd", "fr-pn", REQ, URG, AMBER, H1, 0, 0, "budapest-29", false},
     "deny default"},
    {"Budapest, case lead is not a preservation request",
     {"us-doj", "jp-npa", LEAD, URG, AMBER, H1, 0, 0, "budapest-29", false},
     "deny default"},
    {"bilateral treaty FR to US",
     {"fr-gn", "us-doj", REQ, ROU, AMBER, H1, 0, 0, "fr-us-mlat", false},
     "allow @fr-us"},
    {"bilateral treaty US to FR",
     {"us-doj", "fr-pn", REQ, ROU, AMBER, H1, 0, 0, "fr-us-mlat", false},
     "allow @us-fr"},
    {"bilateral treaty does not bind DE",
     {"de-bka", "us-doj", REQ, ROU, AMBER, H1, 0, 0, "fr-us-mlat", false},
     "deny default"},
    {"embargoed sender",
     {"kp-mps", "fr-pn", REQ, URG, AMBER, H1, 0, 0, "budapest-29", false},
     "deny @kp-from"},
    {"embargoed recipient",
     {"fr-pn", "kp-mps", REP, ROU, CLEAR, H0, 0, 0, "eio", true},
     "deny @kp-to"},
    {"reply along a bound path",
     {"de-bka", "fr-pn", REP, ROU, AMBER, H1, 0, 0, "eio", true},
     "allow @reply"},
    {"reply under the bilateral treaty",
     {"us-doj", "fr-gn", REP, ROU, AMBER, H1, 0, 0, "fr-us-mlat", true},
     "allow @reply"},
    {"reply without the reply relationship",
     {"de-bka", "fr-pn", REP, ROU, AMBER, H1, 0, 0, "eio", false},
     "deny default"},
    {"reply citing an instrument that does not bind",
     {"de-bka", "us-doj", REP, ROU, AMBER, H1, 0, 0, "eio", true},
     "deny default"},
    {"H3 never abroad", {"fr-pn", "de-bka", REQ, ROU, AMBER, H3, 0, 0, "eio", false}, "deny @h3"},
    {"H3 at home falls through",
     {"fr-pn", "fr-gn", REQ, ROU, AMBER, H3, 0, 0, "eio", false},
     "allow @eio"},
    {"H2 abroad is not H3",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H2, 0, 0, "eio", false},
     "allow @eio"},
    {"node-specific deny",
     {"fr-rogue", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false},
     "deny @rogue"},
    {"node-specific allow comes first",
     {"de-bka", "it-ps", LEAD, ROU, RED, H1, 0, 0, "", false},
     "allow @bka-ps"},
    {"another German node is not de-bka",
     {"de-lka-by", "it-ps", LEAD, ROU, AMBER, H1, 0, 0, "", false},
     "deny default"},
    {"TLP:RED case lead abroad",
     {"fr-pn", "de-bka", LEAD, ROU, RED, H1, 0, 0, "", false},
     "deny @red"},
    {"TLP:AMBER case lead without basis",
     {"fr-pn", "de-bka", LEAD, ROU, AMBER, H1, 0, 0, "", false},
     "allow @case-none"},
    {"basis none refuses a message with a basis",
     {"fr-pn", "de-bka", LEAD, ROU, AMBER, H1, 0, 0, "eio", false},
     "deny default"},
    {"domestic case lead, evaluated A2",
     {"fr-pn", "fr-gn", LEAD, ROU, AMBER, H1, 'A', 2, "", false},
     "allow @dom-eval"},
    {"domestic case lead, evaluated C1",
     {"fr-pn", "fr-gn", LEAD, ROU, AMBER, H1, 'C', 1, "", false},
     "deny @dom-other"},
    {"domestic case lead, evaluated B4",
     {"fr-gn", "fr-pn", LEAD, ROU, AMBER, H1, 'B', 4, "", false},
     "deny @dom-other"},
    {"domestic case lead, not evaluated",
     {"de-bka", "de-lka-by", LEAD, ROU, CLEAR, H0, 0, 0, "", false},
     "deny @dom-other"},
    {"emergency handoff from one node",
     {"fr-pn", "it-ps", EVI, EME, AMBER, H1, 0, 0, "", false},
     "allow @fr-emergency"},
    {"urgent handoff from that node",
     {"fr-pn", "it-ps", EVI, URG, AMBER, H1, 0, 0, "", false},
     "deny default"},
    {"emergency handoff from another node",
     {"fr-gn", "it-ps", EVI, EME, AMBER, H1, 0, 0, "", false},
     "deny default"},
    {"malformed sender", {"FR", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false}, "deny default"},
    {"NULL recipient", {"fr-pn", NULL, REQ, ROU, AMBER, H1, 0, 0, "eio", false}, "deny default"},
    {"unknown type", {"fr-pn", "de-bka", 0, ROU, AMBER, H1, 0, 0, "eio", false}, "deny default"},
    {"unknown priority",
     {"fr-pn", "de-bka", REQ, 3, AMBER, H1, 0, 0, "eio", false},
     "deny default"},
    {"unknown TLP", {"fr-pn", "de-bka", REQ, ROU, 6, H1, 0, 0, "eio", false}, "deny default"},
    {"unknown handling",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, 0, 0, 0, "eio", false},
     "deny default"},
    {"unknown source",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 'D', 0, "eio", false},
     "deny default"},
    {"unknown accuracy",
     {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 'A', 5, "eio", false},
     "deny default"},
};

// "allow @eio" with the tag replaced by FILE:LINE.
static void
s_expected (const char *policy, const char *expect, char *buf, size_t size)
{
    const char *at = strchr (expect, '@');
    if (!at) {
        snprintf (buf, size, "%s", expect);
        return;
    }
    snprintf (buf, size, "%.*s%s:%d", (int) (at - expect), expect, NAME,
              s_line_of (policy, at + 1));
}

START_TEST (test_rules_decide)
{
    rules_t *r = s_load (s_policy);
    rules_decision_t d = {true, 99};
    rules_decide (r, &s_cases[_i].q, &d);
    char want[128], got[128];
    s_expected (s_policy, s_cases[_i].expect, want, sizeof want);
    ck_assert_ptr_eq (rules_explain (r, &d, got, sizeof got), got);
    ck_assert_msg (strcmp (got, want) == 0, "%s: got '%s', want '%s'", s_cases[_i].why, got, want);
    ck_assert_int_eq (d.allow, strncmp (want, "allow", 5) == 0);
    if (strcmp (want, "deny default") == 0)
        ck_assert_int_eq (d.line, 0);
    rules_destroy (&r);
}
END_TEST

// A decision without rules, or with an empty file, is the default.
START_TEST (test_rules_default)
{
    rules_decision_t d = {true, 7};
    rules_query_t q = {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false};
    rules_decide (NULL, &q, &d);
    ck_assert (!d.allow);
    ck_assert_int_eq (d.line, 0);
    rules_t *r = s_load ("# nothing but a comment\n\n   \t\n");
    d = (rules_decision_t){true, 7};
    rules_decide (r, &q, &d);
    ck_assert (!d.allow);
    ck_assert_int_eq (d.line, 0);
    char buf[64];
    ck_assert_str_eq (rules_explain (r, &d, buf, sizeof buf), "deny default");
    ck_assert_int_eq (rules_count (r), 0);
    rules_destroy (&r);
    ck_assert_ptr_null (r);
    rules_destroy (&r);
    rules_destroy (NULL);
}
END_TEST

// First match decides, in file order, both ways round.
START_TEST (test_rules_first_match)
{
    rules_query_t q = {"fr-pn", "de-bka", REQ, URG, AMBER, H1, 0, 0, "", false};
    rules_decision_t d;
    char buf[64];
    rules_t *r = s_load ("allow from FR priority urgent\n"
                         "deny to DE\n");
    rules_decide (r, &q, &d);
    ck_assert_str_eq (rules_explain (r, &d, buf, sizeof buf), "allow test.rules:1");
    q.priority = ROU;
    rules_decide (r, &q, &d);
    ck_assert_str_eq (rules_explain (r, &d, buf, sizeof buf), "deny test.rules:2");
    rules_destroy (&r);

    r = s_load ("deny to DE\n"
                "\n"
                "allow from FR priority urgent\n");
    q.priority = URG;
    rules_decide (r, &q, &d);
    ck_assert_str_eq (rules_explain (r, &d, buf, sizeof buf), "deny test.rules:1");
    q.recipient = "it-ps";
    rules_decide (r, &q, &d);
    ck_assert_str_eq (rules_explain (r, &d, buf, sizeof buf), "allow test.rules:3");
    rules_destroy (&r);
}
END_TEST

// A rule without conditions matches everything; foreign and domestic
// compare the two countries; lists are unions.
START_TEST (test_rules_conditions)
{
    rules_t *r = s_load ("group nordic = SE FI DK\n"
                         "deny from SE to domestic\n"
                         "allow from nordic,NL to foreign,IT tlp clear,Green,TLP:amber+strict "
                         "handling H0,h1\n"
                         "allow to it-ps,es-cnp type case-lead\n"
                         "deny from any to any source X\n"
                         "allow\n");
    rules_decision_t d;
    rules_query_t q = {"se-nod", "se-pol", LEAD, ROU, CLEAR, H0, 0, 0, "", false};
    rules_decide (r, &q, &d);
    ck_assert (!d.allow);
    ck_assert_int_eq (d.line, 2);
    q.recipient = "fi-krp"; /* foreign */
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 3);
    q.tlp = LIAISON__TLP__TLP_GREEN;
    q.handling = H1;
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 3);
    q.tlp = LIAISON__TLP__TLP_AMBER_STRICT;
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 3);
    q.tlp = AMBER; /* not listed: falls to the catch-all */
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    ck_assert_int_eq (d.line, 6);
    q = (rules_query_t){"nl-politie", "nl-kmar", LEAD, ROU, CLEAR, H0, 0, 0, "", false};
    rules_decide (r, &q, &d); /* NL to NL is not foreign, not IT */
    ck_assert_int_eq (d.line, 6);
    q.recipient = "it-cc"; /* IT listed by code */
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 3);
    q = (rules_query_t){"de-bka", "es-cnp", LEAD, ROU, RED, H3, 'X', 0, "", false};
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 4);
    q.recipient = "es-gc";
    rules_decide (r, &q, &d);
    ck_assert (!d.allow);
    ck_assert_int_eq (d.line, 5);
    q.source = 'A';
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    ck_assert_int_eq (d.line, 6);
    rules_destroy (&r);

    // DE and an unnamed country see the same rules abroad but not at home.
    r = s_load ("deny to foreign,DE\n"
                "allow\n");
    q = (rules_query_t){"de-a", "de-b", LEAD, ROU, CLEAR, H0, 0, 0, "", false};
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 1);
    q = (rules_query_t){"se-a", "se-b", LEAD, ROU, CLEAR, H0, 0, 0, "", false};
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 2);
    q.recipient = "de-b";
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, 1);
    rules_destroy (&r);
}
END_TEST

// More rules than one 64-bit word holds: first match across words, and
// shadowing found across words.
START_TEST (test_rules_many)
{
    static const char *reserved = "AC CP DG EA EU EZ FX IC SU TA UK UN";
    char codes[320][3];
    int n = 0, de = -1;
    for (char a = 'A'; a <= 'Z' && n < 320; a++)
        for (char b = 'A'; b <= 'Z' && n < 320; b++) {
            char cc[3] = {a, b, 0};
            if (strstr (reserved, cc))
                continue;
            if (strcmp (cc, "DE") == 0)
                de = n;
            memcpy (codes[n++], cc, 3);
        }
    ck_assert_int_gt (de, 1);
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc (cap);
    ck_assert_ptr_nonnull (text);
    len += (size_t) snprintf (text + len, cap - len, "allow to DE type case-lead\n");
    for (int i = 0; i < 300; i++) /* line i + 2 */
        len += (size_t) snprintf (text + len, cap - len, "deny from %s to %s\n", codes[i],
                                  codes[i + 1]);
    len += (size_t) snprintf (text + len, cap - len, "allow\n"); /* line 302 */
    rules_t *r = s_load (text);
    char from[8], to[8];
    rules_decision_t d;
    rules_query_t q = {from, to, REQ, ROU, AMBER, H1, 0, 0, "", false};
    const int ks[] = {0, 62, 63, 64, 127, 128, 250, 299};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        snprintf (from, sizeof from, "%c%c-x", codes[ks[i]][0] + 32, codes[ks[i]][1] + 32);
        snprintf (to, sizeof to, "%c%c-y", codes[ks[i] + 1][0] + 32, codes[ks[i] + 1][1] + 32);
        rules_decide (r, &q, &d);
        ck_assert_msg (d.line == ks[i] + 2 && !d.allow, "rule %d: line %d", ks[i], d.line);
    }
    // Rule 1 and a later rule both match: the first decides.
    snprintf (from, sizeof from, "%c%c-x", codes[de - 1][0] + 32, codes[de - 1][1] + 32);
    snprintf (to, sizeof to, "de-bka");
    q.type = LEAD;
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    ck_assert_int_eq (d.line, 1);
    q.type = REQ;
    rules_decide (r, &q, &d);
    ck_assert_int_eq (d.line, de + 1);
    // Nothing specific: the catch-all in the last word.
    q.sender = "zz-a";
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    ck_assert_int_eq (d.line, 302);
    rules_destroy (&r);
    // Rule 200 again, after the catch-all too: both shadowed, by their
    // earliest cover.
    len += (size_t) snprintf (text + len, cap - len, "deny from %s to %s type case-lead\n",
                              codes[200], codes[201]);
    s_assert_error (text, 303, "the rule at test.rules:202", NULL);
    free (text);
}
END_TEST

// Evaluation codes: source reliability and information accuracy, with
// "none" for a message that carries no evaluation.
static const struct {
    char source;
    int accuracy;
    int line; /* 0: deny default */
} s_evaluations[] = {
    {'A', 1, 1}, {0, 0, 2},   {'A', 0, 0}, {0, 1, 0}, {'X', 4, 3},
    {'X', 0, 3}, {'B', 4, 4}, {'C', 2, 0}, {0, 3, 4}, {'A', 2, 0},
};

START_TEST (test_rules_evaluation)
{
    rules_t *r = s_load ("allow source A accuracy 1\n"
                         "allow source none accuracy none\n"
                         "deny source X\n"
                         "allow accuracy 4,3\n");
    rules_query_t q = {"fr-pn",
                       "de-bka",
                       LEAD,
                       ROU,
                       AMBER,
                       H1,
                       s_evaluations[_i].source,
                       s_evaluations[_i].accuracy,
                       "",
                       false};
    rules_decision_t d;
    rules_decide (r, &q, &d);
    ck_assert_msg (d.line == s_evaluations[_i].line, "source '%c' accuracy %d: line %d, want %d",
                   q.source ? q.source : '-', q.accuracy, d.line, s_evaluations[_i].line);
    ck_assert_int_eq (d.allow, d.line && d.line != 3);
    rules_destroy (&r);
}
END_TEST

// --------------------------------------------------------------------------
// Expansion and copies

typedef struct {
    int n;
    char node[16][40];
    int line[16];
} calls_t;

static void
s_node (void *arg, const char *node)
{
    calls_t *c = arg;
    if (c->n < 16)
        snprintf (c->node[c->n], sizeof c->node[c->n], "%s", node);
    c->n++;
}

static void
s_copy (void *arg, const char *node, int line)
{
    calls_t *c = arg;
    if (c->n < 16) {
        snprintf (c->node[c->n], sizeof c->node[c->n], "%s", node);
        c->line[c->n] = line;
    }
    c->n++;
}

// The nodes an address stands for, comma-separated, and the return value.
static int
s_expand (const rules_t *r, int kind, const char *name, const char *sender, char *out, size_t len)
{
    calls_t c = {0};
    int n = rules_expand (r, kind, name, sender, s_node, &c);
    ck_assert (n < 0 || n == c.n);
    out[0] = 0;
    for (int i = 0; i < c.n && i < 16; i++)
        snprintf (out + strlen (out), len - strlen (out), "%s%s", i ? "," : "", c.node[i]);
    return n;
}

#define NODE LIAISON__RECIPIENT_KIND__NODE
#define JUR LIAISON__RECIPIENT_KIND__JURISDICTION
#define GROUP LIAISON__RECIPIENT_KIND__GROUP

static const struct {
    int kind;
    const char *name, *sender;
    int n;
    const char *nodes;
} s_expansions[] = {
    {NODE, "de-bka", "fr-pn", 1, "de-bka"},
    {NODE, "se-nod", "fr-pn", 1, "se-nod"},
    {NODE, "fr-pn", "fr-pn", 0, ""},
    {NODE, "DE", "fr-pn", -1, ""},
    {JUR, "FR", "de-bka", 2, "fr-pn,fr-gn"},
    {JUR, "FR", "fr-pn", 1, "fr-gn"},
    {JUR, "FR", NULL, 2, "fr-pn,fr-gn"},
    {JUR, "DE", "fr-pn", 1, "de-bka"},
    {JUR, "SE", "fr-pn", 0, ""},
    {JUR, "EU", "fr-pn", -1, ""},
    {JUR, "fr", "fr-pn", -1, ""},
    {GROUP, "eu", "fr-pn", 4, "de-bka,es-cnp,fr-gn,it-ps"},
    {GROUP, "eu", "it-ps", 4, "de-bka,es-cnp,fr-pn,fr-gn"},
    {GROUP, "budapest", "us-doj", 5, "de-bka,es-cnp,fr-pn,fr-gn,it-ps"},
    {GROUP, "nosuch", "fr-pn", -1, ""},
    {GROUP, "eio", "fr-pn", -1, ""},
    {GROUP, "EU", "fr-pn", -1, ""},
    {LIAISON__RECIPIENT_KIND__RECIPIENT_UNSPECIFIED, "de-bka", "fr-pn", -1, ""},
    {7, "de-bka", "fr-pn", -1, ""},
};

START_TEST (test_rules_expand)
{
    rules_t *r = s_load (s_policy);
    char got[256];
    int n = s_expand (r, s_expansions[_i].kind, s_expansions[_i].name, s_expansions[_i].sender, got,
                      sizeof got);
    ck_assert_msg (n == s_expansions[_i].n, "%s: %d nodes, want %d", s_expansions[_i].name, n,
                   s_expansions[_i].n);
    ck_assert_str_eq (got, s_expansions[_i].nodes);
    // Counting without a callback gives the same number.
    ck_assert_int_eq (rules_expand (r, s_expansions[_i].kind, s_expansions[_i].name,
                                    s_expansions[_i].sender, NULL, NULL),
                      s_expansions[_i].n);
    rules_destroy (&r);
}
END_TEST

START_TEST (test_rules_copies)
{
    rules_t *r = s_load (s_policy);
    int line = s_line_of (s_policy, "copy");
    calls_t c = {0};
    rules_query_t q = {"fr-gn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false};
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 1);
    ck_assert_int_eq (c.n, 1);
    ck_assert_str_eq (c.node[0], "fr-pn");
    ck_assert_int_eq (c.line[0], line);
    // The sender is never its own copy.
    memset (&c, 0, sizeof c);
    q.sender = "fr-pn";
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 0);
    ck_assert_int_eq (c.n, 0);
    // Domestic, other types, other senders: no copy.
    q = (rules_query_t){"fr-gn", "fr-pn", REQ, ROU, AMBER, H1, 0, 0, "eio", false};
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 0);
    q = (rules_query_t){"fr-gn", "de-bka", LEAD, ROU, AMBER, H1, 0, 0, "", false};
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 0);
    q = (rules_query_t){"de-bka", "it-ps", REQ, ROU, AMBER, H1, 0, 0, "eio", false};
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 0);
    q.sender = "bad id";
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 0);
    ck_assert_int_eq (c.n, 0);
    rules_destroy (&r);

    // Several copy rules: each node once (from the first rule that
    // requires it), the recipient never, in rule order.
    r = s_load ("allow\n"
                "copy de-bka from FR type mla-request\n"
                "copy nl-x-unused from DE\n"
                "copy it-ps from FR,ES\n"
                "copy de-bka from fr-gn\n"
                "copy es-cnp from FR priority emergency\n");
    memset (&c, 0, sizeof c);
    q = (rules_query_t){"fr-gn", "nl-politie", REQ, ROU, AMBER, H1, 0, 0, "", false};
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 2);
    ck_assert_str_eq (c.node[0], "de-bka");
    ck_assert_int_eq (c.line[0], 2);
    ck_assert_str_eq (c.node[1], "it-ps");
    ck_assert_int_eq (c.line[1], 4);
    memset (&c, 0, sizeof c);
    q.type = LEAD; /* rule 2 no longer matches: rule 5 requires de-bka */
    q.priority = EME;
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 3);
    ck_assert_str_eq (c.node[0], "it-ps");
    ck_assert_str_eq (c.node[1], "de-bka");
    ck_assert_int_eq (c.line[1], 5);
    ck_assert_str_eq (c.node[2], "es-cnp");
    memset (&c, 0, sizeof c);
    q.recipient = "it-ps";
    ck_assert_int_eq (rules_copies (r, &q, NULL, NULL), 2);
    rules_destroy (&r);
}
END_TEST

// --------------------------------------------------------------------------
// Hash, file name, counts

START_TEST (test_rules_hash)
{
    const char *text = "allow from FR\n";
    rules_t *a = s_load (text);
    const char *h = rules_hash (a);
    ck_assert_uint_eq (strlen (h), 12);
    for (int i = 0; i < 12; i++)
        ck_assert_msg (strchr ("0123456789abcdef", h[i]), "hash '%s' is not lower-case hex", h);
    unsigned char md[32];
    char want[13];
    ck_assert (EVP_Digest (text, strlen (text), md, NULL, EVP_sha256 (), NULL));
    for (int i = 0; i < 6; i++)
        snprintf (want + 2 * i, 3, "%02x", md[i]);
    ck_assert_str_eq (h, want);
    rules_t *b = s_load (text);
    ck_assert_str_eq (rules_hash (b), h);
    rules_destroy (&b);
    // One byte more (a comment) is another version of the rules.
    b = s_load ("allow from FR \n");
    ck_assert_str_ne (rules_hash (b), h);
    rules_destroy (&b);
    ck_assert_str_eq (rules_file (a), NAME);
    rules_destroy (&a);
}
END_TEST

START_TEST (test_rules_count)
{
    rules_t *r = s_load ("group g = FR DE\n"
                         "instrument i between g\n"
                         "contact FR = fr-pn\n"
                         "# comment\n"
                         "allow from g\n"
                         "deny to FR\n"
                         "copy fr-pn from DE\n");
    ck_assert_uint_eq (rules_count (r), 6);
    rules_destroy (&r);
}
END_TEST

// --------------------------------------------------------------------------
// Errors

static const struct {
    const char *text;
    int line;
    const char *frag, *frag2;
} s_errors[] = {
    // Statements and tokens.
    {"allow\npermit from FR\n", 2, "unknown statement 'permit'", "allow, deny"},
    {"Allow from FR\n", 1, "unknown statement", "did you mean 'allow'"},
    {"group\n", 1, "group NAME = ITEM", NULL},
    {"group g FR DE\n", 1, "group NAME = ITEM", NULL},
    {"instrument eio = FR DE\n", 1, "instrument NAME between", NULL},
    {"instrument eio between\n", 1, "has no parties", NULL},
    {"contact FR fr-pn\n", 1, "contact CC = NODE", NULL},
    {"contact FR =\n", 1, "lists no node", NULL},
    {"contact France = fr-pn\n", 1, "not a jurisdiction code", NULL},
    {"contact FR = FR-PN\n", 1, "'FR-PN' is not a node id", NULL},
    {"copy\n", 1, "copy NODE CONDITION", NULL},
    {"copy FR from DE\n", 1, "copy NODE CONDITION", NULL},
    {"allow from Fr\n", 1, "two upper-case letters", "FR"},
    {"allow from FRA\n", 1, "'FRA' in 'from' is not a jurisdiction", NULL},
    {"allow from FR, DE\n", 1, "no spaces", NULL},
    {"allow from FR,,DE\n", 1, "single commas", NULL},
    {"allow from FR type\n", 1, "'type' needs a value", NULL},
    {"group g = FR,DE\n", 1, "separated by spaces", NULL},
    {"group g = fr-pn\n", 1, "is a node id", "not nodes"},
    {"allow to FR\x01\n", 1, "control character", NULL},
    {"# caf\xc3\n", 1, "not valid UTF-8", NULL},
    {"allow from FR\r\ndeny from DE\r\nbogus\r\n", 3, "unknown statement 'bogus'", NULL},
    // Keys.
    {"allow form FR\n", 1, "unknown condition 'form'", "did you mean 'from'"},
    {"allow from FR colour red\n", 1, "unknown condition 'colour'", NULL},
    {"allow from FR from DE\n", 1, "'from' is given twice", NULL},
    {"deny type case-lead tlp red type mla-request\n", 1, "'type' is given twice", NULL},
    // Values.
    {"allow type mla_request\n", 1, "not a valid type", "did you mean 'mla-request'"},
    {"allow priority high\n", 1, "not a valid priority", "routine, urgent or emergency"},
    {"allow tlp white\n", 1, "not a valid tlp", "did you mean 'clear'"},
    {"allow tlp TLP:purple\n", 1, "not a valid tlp", NULL},
    {"allow handling h4\n", 1, "not a valid handling", "h0, h1, h2 or h3"},
    {"allow source D\n", 1, "not a valid source", "A, B, C, X or none"},
    {"allow accuracy 5\n", 1, "not a valid accuracy", NULL},
    {"allow reply maybe\n", 1, "not a valid reply", "yes or no"},
    {"allow from foreign\n", 1, "'foreign' belongs to 'to'", NULL},
    {"allow to none\n", 1, "has no meaning in 'to'", NULL},
    // Names.
    {"group eu = FR\ngroup eu = DE\n", 2, "group 'eu' is already defined at line 1", NULL},
    {"instrument eio between FR\ninstrument eio between DE\n", 2,
     "instrument 'eio' is already defined at line 1", NULL},
    {"group eio = FR\ninstrument eio between FR\n", 2, "already a group (line 1)", NULL},
    {"instrument eio between FR\ngroup eio = FR\n", 2, "already an instrument (line 1)", NULL},
    {"group eu-members = FR DE\n", 1, "looks like a node id", "eu_members"},
    {"group EU = FR\n", 1, "must be lower case", "'eu'"},
    {"group 9lives = FR\n", 1, "not a valid group name", NULL},
    {"group any = FR\n", 1, "reserved word", NULL},
    {"instrument binding between FR\n", 1, "reserved word", NULL},
    {"allow from nordic\ngroup nordic = SE\n", 1, "used before its definition at line 2", NULL},
    {"allow basis eio\ninstrument eio between FR\n", 1,
     "instrument 'eio' is used before its definition at line 2", NULL},
    {"group a = b\ngroup b = FR\n", 1, "group 'b' is used before its definition at line 2", NULL},
    {"group a = a\n", 1, "cannot name itself", NULL},
    {"group nordic = SE\nallow from nordci\n", 2, "unknown group 'nordci'",
     "did you mean 'nordic'"},
    {"allow to benelux\n", 1, "unknown group 'benelux'", "'group' line"},
    {"allow from fr\n", 1, "unknown group 'fr'", "upper case: FR"},
    {"instrument eio between FR\nallow basis eoi\n", 2, "unknown instrument 'eoi'",
     "did you mean 'eio'"},
    {"group eu = FR\nallow basis eu\n", 2, "'eu' is a group, not an instrument", NULL},
    {"instrument eio between FR\nallow from eio\n", 2, "'eio' is an instrument, not a group", NULL},
    {"allow basis EIO\n", 1, "not an instrument name", NULL},
    {"group g = FR DE\ngroup g = ES\nallow from g\n", 2, "already defined", NULL},
    // Reserved codes and contacts.
    {"allow from EU\n", 1, "'EU' is an exceptionally reserved ISO 3166-1 code",
     "use the group 'eu'"},
    {"deny to UK\n", 1, "'UK' is an exceptionally reserved", "GB"},
    {"group g = FR FX\n", 1, "'FX' is an exceptionally reserved", NULL},
    {"instrument i between EU\n", 1, "'EU' is an exceptionally reserved", NULL},
    {"contact EU = eu-x\n", 1, "'EU' is an exceptionally reserved", NULL},
    {"allow from eu-members\n", 1, "not a jurisdiction", "eu_members"},
    {"contact DE = fr-pn\n", 1, "'fr-pn' is not a node of DE", "'de-'"},
    {"contact DE = de-bka\ncontact DE = de-lka\n", 2, "already given at line 1", NULL},
    {"contact DE = de-bka de-bka\n", 1, "lists 'de-bka' twice", NULL},
    // Rules that can never match.
    {"allow type mla-reply reply no\n", 1, "never matches", "mla-reply"},
    {"group empty =\nallow from empty\n", 2, "never matches", "empty group 'empty'"},
    {"group empty =\ncopy fr-pn to empty\n", 2, "never matches", "empty group"},
    {"instrument eio between FR DE\nallow from US basis eio\n", 2, "never matches",
     "no instrument"},
    {"instrument m between FR US\nallow from FR to DE,IT basis m\n", 2, "never matches", NULL},
    {"allow basis binding\n", 1, "never matches", "defines none"},
    {"allow from FR\nallow from FR to DE\n", 2, "never matches: the rule at test.rules:1",
     "already matches everything"},
    {"deny to DE\nallow from FR to de-bka type case-lead\n", 2,
     "never matches: the rule at test.rules:1", NULL},
    {"allow\n\ndeny from KP\n", 3, "the rule at test.rules:1", NULL},
    {"group eu = FR DE\nallow from eu type case-lead,mla-request\n"
     "deny from DE to IT type case-lead\n",
     3, "the rule at test.rules:2", NULL},
    {"allow to foreign,domestic\ndeny to it-ps\n", 2, "the rule at test.rules:1", NULL},
    {"allow to foreign\ndeny to foreign priority urgent\n", 2, "the rule at test.rules:1", NULL},
    {"instrument eio between FR DE\nallow basis binding\ndeny basis eio\n", 3,
     "the rule at test.rules:2", NULL},
    {"instrument eio between FR DE\nallow basis none,eio\ndeny basis none\n", 3,
     "the rule at test.rules:2", NULL},
    {"allow tlp red,amber source A,none\ndeny tlp TLP:RED source none reply yes\n", 2,
     "the rule at test.rules:1", NULL},
    // The earliest covering rule is named.
    {"deny from DE\nallow to IT\ndeny from DE to IT\n", 3, "the rule at test.rules:1", NULL},
    // File-level problems.
    {"allow\0from FR\n", 0, "NUL", NULL},
};

START_TEST (test_rules_error)
{
    const char *text = s_errors[_i].text;
    size_t len = strlen (text);
    // The NUL case: the string goes on after its NUL.
    if (strstr (s_errors[_i].frag, "NUL"))
        len = sizeof "allow\0from FR\n" - 1;
    errors_t e = {0};
    rules_t *r = rules_parse (NAME, text, len, s_collect, &e);
    bool accepted = r != NULL;
    rules_destroy (&r);
    ck_assert_msg (!accepted, "accepted: %s", text);
    if (len != strlen (text)) {
        ck_assert_int_eq (e.n, 1);
        ck_assert_int_eq (e.line[0], 0);
        ck_assert_ptr_nonnull (strstr (e.msg[0], "NUL byte (line 1)"));
        return;
    }
    s_assert_error (text, s_errors[_i].line, s_errors[_i].frag, s_errors[_i].frag2);
}
END_TEST

// Rules that only look alike are not reported as shadowed.
static const char *s_not_shadowed[] = {
    "allow from FR\nallow from FR,DE\n",
    "allow from FR to DE\nallow from FR to DE,IT\n",
    "allow to foreign\nallow to DE\n", /* DE is not foreign to a German sender */
    "allow to domestic\nallow to DE\n",
    "allow to de-bka\nallow to DE\n",
    "allow from de-bka\nallow from DE\n",
    "allow type case-lead\nallow type case-lead,mla-request\n",
    "allow tlp red\nallow\n",
    "instrument eio between FR DE\nallow basis eio\nallow basis binding\n",
    "instrument eio between FR DE\nallow basis none\nallow basis none,eio\n",
    "allow from FR\nallow from DE\nallow from FR,DE\n", /* covered only by two together */
    "allow source A,B\nallow source A,none\n",
    "allow accuracy 1\nallow accuracy none\n",
    "allow reply yes\nallow reply no\n",
    "copy fr-pn from FR\ncopy fr-pn from FR to DE\n", /* copies are not first-match */
    // Not "never matches" either: binding counts instruments defined later.
    "allow from FR basis binding\ninstrument i between FR DE\n",
};

START_TEST (test_rules_not_shadowed)
{
    rules_t *r = s_load (s_not_shadowed[_i]);
    rules_destroy (&r);
}
END_TEST

// Loading goes on after an error and reports every one, in line order,
// each once; the callback may be NULL.
START_TEST (test_rules_all_errors)
{
    const char *text = "allow from FR\n"
                       "allow from FR to DE\n" /* shadowed (found last) */
                       "bogus\n"
                       "allow type mla_request\n"
                       "group eu = DE EU\n"
                       "allow from eu\n"; /* defined despite its bad item */
    errors_t e = {0};
    rules_t *r = rules_parse (NAME, text, strlen (text), s_collect, &e);
    ck_assert_ptr_null (r);
    ck_assert_msg (e.n == 4, "%d errors:%s", e.n, s_dump (&e));
    ck_assert_int_eq (e.line[0], 2);
    ck_assert_int_eq (e.line[1], 3);
    ck_assert_int_eq (e.line[2], 4);
    ck_assert_int_eq (e.line[3], 5);
    ck_assert_ptr_null (rules_parse (NAME, text, strlen (text), NULL, NULL));
    // A rules file that is not one: errors are capped.
    size_t n = 3000;
    char *junk = malloc (n * 4);
    ck_assert_ptr_nonnull (junk);
    for (size_t i = 0; i < n; i++)
        memcpy (junk + 4 * i, "xx \n", 4);
    memset (&e, 0, sizeof e);
    ck_assert_ptr_null (rules_parse (NAME, junk, n * 4, s_collect, &e));
    ck_assert_int_eq (e.n, 1001);
    ck_assert_int_eq (e.line[MAX_MSGS - 1], MAX_MSGS);
    free (junk);
}
END_TEST

// --------------------------------------------------------------------------
// Against a reference: random policies over a small world, decided both by
// the compiled rules and by a plain scan of the rules as generated. Every
// "never matches" claim the loader makes is checked too, with queries
// built to satisfy the rule it names.

#define W_CC 5 /* FR DE IT US and SE, which no rule names */
#define W_ITEMS 16
static const char *s_w_cc[W_CC] = {"FR", "DE", "IT", "US", "SE"};
static const char *s_w_node[W_CC][2] = {
    {"fr-a", "fr-b"}, {"de-a", "de-b"}, {"it-a", "it-b"}, {"us-a", "us-b"}, {"se-a", "se-b"}};
// Groups and instruments, as member bitmasks over s_w_cc.
static const char *s_w_group[3] = {"g1", "g2", "gempty"};
static const unsigned s_w_group_cc[3] = {0x3, 0xe, 0x0};
static const unsigned s_w_inst_cc[3] = {0x3, 0xe, 0x9};
static const char *s_w_bases[5] = {"", "i1", "i2", "i3", "zz"};

// A side's items: 0 any, 1..4 a country, 5..8 node "xx-a", 9..11 a group,
// 12 foreign, 13 domestic.
typedef struct {
    bool given;
    int n, item[2];
} w_side_t;

typedef struct {
    int verb; /* 0 allow, 1 deny, 2 copy */
    int copy; /* copy: country of the node copied to ("xx-a") */
    w_side_t from, to;
    unsigned mask[7]; /* per dimension, all bits when absent */
    bool basis;
    unsigned bmask; /* bit 0 none, 1 binding, 2.. instrument */
} w_rule_t;

typedef struct {
    int s, r;   /* country index of sender and recipient */
    int sn, rn; /* node: 0 "xx-a", 1 "xx-b" */
    int v[7];   /* type, priority, tlp, handling, source, accuracy, reply: indexes */
    int basis;  /* index into s_w_bases */
} w_query_t;

static const int s_w_nvals[7] = {4, 3, 5, 4, 5, 5, 2};
static const char *s_w_vals[7][5] = {
    {"mla-request", "mla-reply", "evidence-handoff", "case-lead"},
    {"routine", "urgent", "emergency"},
    {"clear", "green", "amber", "amber+strict", "red"},
    {"h0", "h1", "h2", "h3"},
    {"A", "B", "C", "X", "none"},
    {"1", "2", "3", "4", "none"},
    {"no", "yes"},
};
static const char *s_w_keys[7] = {"type",   "priority", "tlp",  "handling",
                                  "source", "accuracy", "reply"};

static unsigned s_seed;

static unsigned
s_rand (unsigned n)
{
    s_seed = s_seed * 1103515245u + 12345u;
    return (s_seed >> 16) % n;
}

static bool
s_w_side_match (const w_side_t *sd, int cc, int node, int other_cc)
{
    if (!sd->given)
        return true;
    for (int i = 0; i < sd->n; i++) {
        int it = sd->item[i];
        if (it == 0 || (it >= 1 && it <= 4 && it - 1 == cc)
            || (it >= 5 && it <= 8 && it - 5 == cc && node == 0)
            || (it >= 9 && it <= 11 && (s_w_group_cc[it - 9] >> cc & 1))
            || (it == 12 && cc != other_cc) || (it == 13 && cc == other_cc))
            return true;
    }
    return false;
}

static bool
s_w_match (const w_rule_t *u, const w_query_t *q)
{
    if (q->v[0] == 1 && q->v[6] == 0) /* an MLA reply that replies to nothing */
        return false;
    if (!s_w_side_match (&u->from, q->s, q->sn, -1) || !s_w_side_match (&u->to, q->r, q->rn, q->s))
        return false;
    for (int d = 0; d < 7; d++)
        if (!(u->mask[d] >> q->v[d] & 1))
            return false;
    if (!u->basis)
        return true;
    int k = q->basis >= 1 && q->basis <= 3 ? q->basis - 1 : -1;
    bool binds = k >= 0 && (s_w_inst_cc[k] >> q->s & 1) && (s_w_inst_cc[k] >> q->r & 1);
    return ((u->bmask & 1) && q->basis == 0) || ((u->bmask & 2) && binds)
           || (binds && (u->bmask >> (2 + k) & 1));
}

static void
s_w_item (char *buf, size_t len, int it)
{
    if (it == 0)
        snprintf (buf, len, "any");
    else if (it <= 4)
        snprintf (buf, len, "%s", s_w_cc[it - 1]);
    else if (it <= 8)
        snprintf (buf, len, "%s", s_w_node[it - 5][0]);
    else if (it <= 11)
        snprintf (buf, len, "%s", s_w_group[it - 9]);
    else
        snprintf (buf, len, "%s", it == 12 ? "foreign" : "domestic");
}

// One random rule, appended to text as a line.
static void
s_w_random_rule (w_rule_t *u, char *text, size_t cap)
{
    memset (u, 0, sizeof *u);
    u->verb = (int) s_rand (7) % 3 == 2 ? (int) s_rand (3) : (int) s_rand (2);
    size_t len = strlen (text);
    if (u->verb == 2) {
        u->copy = (int) s_rand (4);
        len += (size_t) snprintf (text + len, cap - len, "copy %s", s_w_node[u->copy][0]);
    }
    else
        len += (size_t) snprintf (text + len, cap - len, "%s", u->verb ? "deny" : "allow");
    w_side_t *sides[2] = {&u->from, &u->to};
    for (int si = 0; si < 2; si++) {
        if (s_rand (2))
            continue;
        w_side_t *sd = sides[si];
        sd->given = true;
        sd->n = 1 + (int) s_rand (2);
        len += (size_t) snprintf (text + len, cap - len, " %s ", si ? "to" : "from");
        for (int i = 0; i < sd->n; i++) {
            int it = (int) s_rand (si ? 14 : 12);
            if (it == 0 && s_rand (3))
                it = 1 + (int) s_rand (4);
            sd->item[i] = it;
            char item[16];
            s_w_item (item, sizeof item, it);
            len += (size_t) snprintf (text + len, cap - len, "%s%s", i ? "," : "", item);
        }
    }
    for (int d = 0; d < 7; d++) {
        u->mask[d] = (1u << s_w_nvals[d]) - 1;
        if (s_rand (3))
            continue;
        unsigned m = 0;
        while (!m)
            m = s_rand (1u << s_w_nvals[d]);
        u->mask[d] = m;
        len += (size_t) snprintf (text + len, cap - len, " %s ", s_w_keys[d]);
        for (int v = 0, first = 1; v < s_w_nvals[d]; v++)
            if (m >> v & 1) {
                len += (size_t) snprintf (text + len, cap - len, "%s%s", first ? "" : ",",
                                          s_w_vals[d][v]);
                first = 0;
            }
    }
    if (!s_rand (3)) {
        u->basis = true;
        while (!u->bmask)
            u->bmask = s_rand (32);
        static const char *names[5] = {"none", "binding", "i1", "i2", "i3"};
        len += (size_t) snprintf (text + len, cap - len, " basis ");
        for (int b = 0, first = 1; b < 5; b++)
            if (u->bmask >> b & 1) {
                len +=
                    (size_t) snprintf (text + len, cap - len, "%s%s", first ? "" : ",", names[b]);
                first = 0;
            }
    }
    snprintf (text + len, cap - len, "\n");
}

static int
s_w_pick_cc (const w_side_t *sd, int other)
{
    if (!sd->given)
        return (int) s_rand (W_CC);
    int it = sd->item[s_rand ((unsigned) sd->n)];
    if (it >= 1 && it <= 4)
        return it - 1;
    if (it >= 5 && it <= 8)
        return it - 5;
    if (it >= 9 && it <= 11 && s_w_group_cc[it - 9]) {
        for (;;) {
            int c = (int) s_rand (W_CC);
            if (s_w_group_cc[it - 9] >> c & 1)
                return c;
        }
    }
    if (it == 13 && other >= 0)
        return other;
    return (int) s_rand (W_CC);
}

// A random query, biased towards those rule u (if any) matches.
static void
s_w_query (w_query_t *q, const w_rule_t *u)
{
    q->s = u ? s_w_pick_cc (&u->from, -1) : (int) s_rand (W_CC);
    q->r = u ? s_w_pick_cc (&u->to, q->s) : (int) s_rand (W_CC);
    q->sn = (int) s_rand (2) && !u ? 1 : (int) s_rand (4) == 0;
    q->rn = (int) s_rand (4) == 0;
    for (int d = 0; d < 7; d++) {
        do
            q->v[d] = (int) s_rand ((unsigned) s_w_nvals[d]);
        while (u && !(u->mask[d] >> q->v[d] & 1) && s_rand (8));
    }
    q->basis = (int) s_rand (5);
    if (u && u->basis && s_rand (4)) {
        unsigned b = s_rand (5);
        if (u->bmask >> b & 1)
            q->basis = b == 0 ? 0 : b == 1 ? 1 + (int) s_rand (3) : (int) b - 1;
    }
}

static rules_query_t
s_w_rq (const w_query_t *q)
{
    static const char src[5] = {'A', 'B', 'C', 'X', 0};
    rules_query_t rq = {
        s_w_node[q->s][q->sn], s_w_node[q->r][q->rn], q->v[0] + 1,  q->v[1],
        q->v[2] + 1,           q->v[3] + 1,           src[q->v[4]], q->v[5] == 4 ? 0 : q->v[5] + 1,
        s_w_bases[q->basis],   q->v[6] == 1};
    return rq;
}

START_TEST (test_rules_reference)
{
    s_seed = 20240611u + (unsigned) _i * 7919u;
    static const char header[] = "group g1 = FR DE\n"
                                 "group g2 = DE IT US\n"
                                 "group gempty =\n"
                                 "instrument i1 between g1\n"
                                 "instrument i2 between g2\n"
                                 "instrument i3 between FR US\n"; /* 6 lines */
    int loaded = 0, claims = 0;
    for (int round = 0; round < 40; round++) {
        char text[16384];
        snprintf (text, sizeof text, "%s", header);
        w_rule_t rules[W_ITEMS];
        int nr = 1 + (int) s_rand (W_ITEMS);
        for (int i = 0; i < nr; i++)
            s_w_random_rule (&rules[i], text, sizeof text);
        errors_t e = {0};
        rules_t *r = rules_parse (NAME, text, strlen (text), s_collect, &e);
        for (int k = 0; k < e.n && k < MAX_MSGS; k++) {
            // Only "never matches" may be reported for these rules.
            ck_assert_msg (strncmp (e.msg[k], "never matches", 13) == 0, "%s:%d: %s\n%s", NAME,
                           e.line[k], e.msg[k], text);
            int j = e.line[k] - 7, by = -1;
            ck_assert (j >= 0 && j < nr);
            const char *at = strstr (e.msg[k], NAME ":");
            if (at)
                by = atoi (at + strlen (NAME) + 1) - 7;
            claims++;
            for (int t = 0; t < 400; t++) {
                w_query_t q;
                s_w_query (&q, &rules[j]);
                if (!s_w_match (&rules[j], &q))
                    continue;
                ck_assert_msg (by >= 0 && by < j && rules[by].verb != 2 && rules[j].verb != 2
                                   && s_w_match (&rules[by], &q),
                               "line %d: '%s' is wrong for a query it matches\n%s", j + 7, e.msg[k],
                               text);
            }
        }
        if (!r)
            continue;
        loaded++;
        for (int t = 0; t < 600; t++) {
            w_query_t q;
            s_w_query (&q, t % 2 ? &rules[s_rand ((unsigned) nr)] : NULL);
            rules_query_t rq = s_w_rq (&q);
            rules_decision_t d;
            rules_decide (r, &rq, &d);
            int want = 0;
            bool allow = false;
            for (int i = 0; i < nr && !want; i++)
                if (rules[i].verb != 2 && s_w_match (&rules[i], &q)) {
                    want = i + 7;
                    allow = rules[i].verb == 0;
                }
            ck_assert_msg (d.line == want && d.allow == allow,
                           "%s -> %s type %d basis '%s': line %d, want %d\n%s", rq.sender,
                           rq.recipient, rq.type, rq.basis, d.line, want, text);
            // Copies: each node once, first rule first, never the two ends.
            calls_t c = {0};
            int n = rules_copies (r, &rq, s_copy, &c);
            int m = 0;
            bool seen[4] = {false};
            for (int i = 0; i < nr; i++) {
                if (rules[i].verb != 2 || !s_w_match (&rules[i], &q) || seen[rules[i].copy])
                    continue;
                const char *node = s_w_node[rules[i].copy][0];
                if (strcmp (node, rq.sender) == 0 || strcmp (node, rq.recipient) == 0)
                    continue;
                seen[rules[i].copy] = true;
                ck_assert_msg (m < n && strcmp (c.node[m], node) == 0 && c.line[m] == i + 7,
                               "copy %d: want %s from line %d\n%s", m, node, i + 7, text);
                m++;
            }
            ck_assert_int_eq (n, m);
        }
        rules_destroy (&r);
    }
    // The generator must produce both kinds of file, or this tests little.
    ck_assert_int_gt (loaded, 5);
    ck_assert_int_gt (claims, 5);
}
END_TEST

// --------------------------------------------------------------------------
// Limits and files

// A temporary file holding size bytes; its path goes into path.
static void
s_write (char *path, size_t len, const char *text, size_t size)
{
    snprintf (path, len, "/tmp/liaison-rules-XXXXXX");
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    size_t done = 0;
    while (done < size) {
        ssize_t n = write (fd, text + done, size - done);
        ck_assert_int_gt (n, 0);
        done += (size_t) n;
    }
    ck_assert_int_eq (close (fd), 0);
}

// size bytes of comment lines (each under 4 KiB), ending in a newline.
static char *
s_comments (size_t size)
{
    char *t = malloc (size + 1);
    ck_assert_ptr_nonnull (t);
    memset (t, '#', size);
    for (size_t i = 1000; i < size; i += 1000)
        t[i] = '\n';
    t[size - 1] = '\n';
    t[size] = 0;
    return t;
}

START_TEST (test_rules_file_limit)
{
    char *t = s_comments (RULES_MAX_FILE + 1);
    errors_t e = {0};
    ck_assert_ptr_null (rules_parse (NAME, t, RULES_MAX_FILE + 1, s_collect, &e));
    ck_assert_int_eq (e.n, 1);
    ck_assert_int_eq (e.line[0], 0);
    ck_assert_ptr_nonnull (strstr (e.msg[0], "16 MiB"));
    // Exactly the limit is allowed.
    memset (&e, 0, sizeof e);
    rules_t *r = rules_parse (NAME, t, RULES_MAX_FILE, s_collect, &e);
    ck_assert_msg (r && e.n == 0, "%s", s_dump (&e));
    rules_destroy (&r);
    // The same through a file.
    char path[64];
    s_write (path, sizeof path, t, RULES_MAX_FILE + 1);
    memset (&e, 0, sizeof e);
    ck_assert_ptr_null (rules_load (path, s_collect, &e));
    ck_assert_int_eq (e.n, 1);
    ck_assert_int_eq (e.line[0], 0);
    ck_assert_str_eq (e.file[0], path);
    ck_assert_ptr_nonnull (strstr (e.msg[0], "16 MiB"));
    unlink (path);
    free (t);
}
END_TEST

START_TEST (test_rules_line_limit)
{
    // "allow from FR" padded with spaces to exactly RULES_MAX_LINE bytes.
    char *t = malloc (3 * RULES_MAX_LINE);
    ck_assert_ptr_nonnull (t);
    memset (t, ' ', RULES_MAX_LINE);
    memcpy (t, "allow from FR", 13);
    t[RULES_MAX_LINE] = '\n';
    strcpy (t + RULES_MAX_LINE + 1, "deny to FR\n");
    rules_t *r = s_load (t);
    rules_decision_t d;
    rules_query_t q = {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "", false};
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    ck_assert_int_eq (d.line, 1);
    rules_destroy (&r);
    // One byte more (a CR counts: the limit is on the bytes before \n).
    memset (t, ' ', RULES_MAX_LINE + 1);
    memcpy (t, "allow from FR", 13);
    t[RULES_MAX_LINE + 1] = '\n';
    strcpy (t + RULES_MAX_LINE + 2, "deny to FR\nbogus\n");
    s_assert_error (t, 1, "longer than 4096 bytes", NULL);
    s_assert_error (t, 3, "unknown statement", NULL);
    free (t);
}
END_TEST

START_TEST (test_rules_load_file)
{
    char path[64];
    const char *text = "\xef\xbb\xbf# policy with a byte order mark\nallow from FR\n";
    s_write (path, sizeof path, text, strlen (text));
    errors_t e = {0};
    rules_t *r = rules_load (path, s_collect, &e);
    ck_assert_msg (r && e.n == 0, "%s", s_dump (&e));
    ck_assert_str_eq (rules_file (r), path);
    rules_t *m = s_load (text);
    ck_assert_str_eq (rules_hash (r), rules_hash (m));
    rules_decision_t d;
    rules_query_t q = {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "", false};
    rules_decide (r, &q, &d);
    char buf[128], want[128];
    snprintf (want, sizeof want, "allow %s:2", path);
    ck_assert_str_eq (rules_explain (r, &d, buf, sizeof buf), want);
    rules_destroy (&m);
    rules_destroy (&r);
    unlink (path);
    // An error names the file given.
    s_write (path, sizeof path, "allow form FR\n", 14);
    memset (&e, 0, sizeof e);
    ck_assert_ptr_null (rules_load (path, s_collect, &e));
    ck_assert_int_eq (e.n, 1);
    ck_assert_str_eq (e.file[0], path);
    ck_assert_int_eq (e.line[0], 1);
    unlink (path);
    // Missing file, directory.
    memset (&e, 0, sizeof e);
    ck_assert_ptr_null (rules_load ("/nonexistent/liaison.rules", s_collect, &e));
    ck_assert_int_eq (e.n, 1);
    ck_assert_int_eq (e.line[0], 0);
    ck_assert_ptr_nonnull (strstr (e.msg[0], "cannot open"));
    memset (&e, 0, sizeof e);
    ck_assert_ptr_null (rules_load ("/tmp", s_collect, &e));
    ck_assert_int_eq (e.n, 1);
    ck_assert_ptr_nonnull (strstr (e.msg[0], "cannot read"));
}
END_TEST

// The sample policy shipped in deploy/ loads without a single error and
// says what its comments say.
START_TEST (test_rules_sample)
{
    errors_t e = {0};
    rules_t *r = rules_load ("deploy/liaison.rules", s_collect, &e);
    ck_assert_msg (r && e.n == 0, "deploy/liaison.rules:%s", s_dump (&e));
    rules_decision_t d;
    rules_query_t q = {"fr-pn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false};
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    q.sender = "kp-mps";
    rules_decide (r, &q, &d);
    ck_assert (!d.allow && d.line > 0);
    q = (rules_query_t){"us-doj-oia", "jp-npa", REQ, URG, AMBER, H1, 0, 0, "budapest-29", false};
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    q.priority = ROU;
    rules_decide (r, &q, &d);
    ck_assert (!d.allow && d.line == 0);
    q = (rules_query_t){"fr-pn", "us-doj-oia", REQ, ROU, AMBER, H1, 0, 0, "fr-us-mlat", false};
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    q = (rules_query_t){"us-doj-oia", "fr-gn", REP, ROU, AMBER, H1, 0, 0, "fr-us-mlat", true};
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    q = (rules_query_t){"dk-pol", "ie-garda", REQ, ROU, AMBER, H1, 0, 0, "eio", false};
    rules_decide (r, &q, &d);
    ck_assert (!d.allow);
    q.basis = "eu-mla-2000";
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    calls_t c = {0};
    q = (rules_query_t){"fr-gn", "de-bka", REQ, ROU, AMBER, H1, 0, 0, "eio", false};
    ck_assert_int_eq (rules_copies (r, &q, s_copy, &c), 1);
    ck_assert_str_eq (c.node[0], "fr-pn");
    ck_assert_int_eq (rules_expand (r, JUR, "FR", "de-bka", NULL, NULL), 2);
    ck_assert_int_eq (rules_expand (r, GROUP, "eu", "fr-pn", NULL, NULL), 6);
    rules_destroy (&r);
}
END_TEST

Suite *
rules_suite (void)
{
    Suite *s = suite_create ("rules");
    TCase *tc = tcase_create ("decide");
    tcase_set_timeout (tc, 10);
    tcase_add_loop_test (tc, test_rules_decide, 0, (int) (sizeof s_cases / sizeof *s_cases));
    tcase_add_test (tc, test_rules_default);
    tcase_add_test (tc, test_rules_first_match);
    tcase_add_test (tc, test_rules_many);
    tcase_add_loop_test (tc, test_rules_evaluation, 0,
                         (int) (sizeof s_evaluations / sizeof *s_evaluations));
    tcase_add_test (tc, test_rules_conditions);
    suite_add_tcase (s, tc);

    tc = tcase_create ("addresses");
    tcase_set_timeout (tc, 10);
    tcase_add_loop_test (tc, test_rules_expand, 0,
                         (int) (sizeof s_expansions / sizeof *s_expansions));
    tcase_add_test (tc, test_rules_copies);
    tcase_add_test (tc, test_rules_hash);
    tcase_add_test (tc, test_rules_count);
    suite_add_tcase (s, tc);

    tc = tcase_create ("errors");
    tcase_set_timeout (tc, 10);
    tcase_add_loop_test (tc, test_rules_error, 0, (int) (sizeof s_errors / sizeof *s_errors));
    tcase_add_loop_test (tc, test_rules_not_shadowed, 0,
                         (int) (sizeof s_not_shadowed / sizeof *s_not_shadowed));
    tcase_add_test (tc, test_rules_all_errors);
    suite_add_tcase (s, tc);

    tc = tcase_create ("reference");
    tcase_set_timeout (tc, 30);
    tcase_add_loop_test (tc, test_rules_reference, 0, 25);
    suite_add_tcase (s, tc);

    tc = tcase_create ("files");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_rules_file_limit);
    tcase_add_test (tc, test_rules_line_limit);
    tcase_add_test (tc, test_rules_load_file);
    tcase_add_test (tc, test_rules_sample);
    suite_add_tcase (s, tc);
    return s;
}
