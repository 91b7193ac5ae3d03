/*  liaisond check-rules and liaisond explain: the routing policy from the
    command line, without a running broker.                                 */
#include "policy_cli.h"

#include "codec.h"
#include "rules.h"
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void
s_print_error (void *arg, const char *file, int line, const char *message)
{
    int *count = arg;
    (*count)++;
    if (line > 0)
        fprintf (stderr, "%s:%d: %s\n", file, line, message);
    else
        fprintf (stderr, "%s: %s\n", file, message);
}

int
policy_check_rules (int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf (stderr, "usage: liaisond check-rules FILE\n"
                         "Exit codes: 0 valid, 2 invalid (each error printed as FILE:LINE: message)\n");
        return 2;
    }
    int errors = 0;
    rules_t *rules = rules_load (argv[1], s_print_error, &errors);
    if (!rules) {
        fprintf (stderr, "%s: %d error%s; the file is not valid\n", argv[1], errors,
                 errors == 1 ? "" : "s");
        return 2;
    }
    printf ("%s: valid, %zu statements, hash %s\n", argv[1], rules_count (rules),
            rules_hash (rules));
    rules_destroy (&rules);
    return 0;
}

// Value names, as in rules files and on the liaison command line.
static int
s_lookup (const char *const *names, int n, const char *value)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcasecmp (names[i], value) == 0)
            return i;
    return -1;
}

static const char *const s_types[] = {NULL, "mla-request", "mla-reply", "evidence-handoff",
                                      "case-lead"};
static const char *const s_prios[] = {"routine", "urgent", "emergency"};
static const char *const s_tlps[] = {NULL, "clear", "green", "amber", "amber+strict", "red"};
static const char *const s_handl[] = {NULL, "h0", "h1", "h2", "h3"};

static int
s_usage (void)
{
    fprintf (stderr,
             "usage: liaisond explain --rules FILE --from NODE --to ADDRESS --type TYPE\n"
             "                        [--handling H0..H3] [--tlp T] [--basis INSTRUMENT]\n"
             "                        [--priority P] [--source A|B|C|X] [--accuracy 1-4] [--reply]\n"
             "ADDRESS is a node id (de-bka), a jurisdiction (DE) or a group (eu);\n"
             "node:, jurisdiction: or group: makes the kind explicit.\n"
             "Prints 'allow FILE:LINE', 'deny FILE:LINE' or 'deny default' (one line per node\n"
             "when the address stands for several, with the node), then 'copy NODE FILE:LINE'\n"
             "for each required copy. Exit codes: 0 allowed, 1 denied, 2 usage or rules error.\n");
    return 2;
}

typedef struct {
    const rules_t *rules;
    rules_query_t q;
    const char *nodes[1024];
    int n;
} explain_t;

static void
s_collect (void *arg, const char *node)
{
    explain_t *x = arg;
    if (x->n < 1024)
        x->nodes[x->n++] = node;
}

static void
s_print_copy (void *arg, const char *node, int line)
{
    const rules_t *rules = arg;
    printf ("copy %s %s:%d\n", node, rules_file (rules), line);
}

int
policy_explain (int argc, char **argv)
{
    const char *file = NULL, *from = NULL, *to = NULL, *type = NULL, *handling = "h0";
    const char *tlp = "amber", *basis = "", *priority = "routine", *source = NULL;
    const char *accuracy = NULL;
    bool reply = false;
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (!strcmp (argv[i], "--reply")) {
            reply = true;
            continue;
        }
        if (!strcmp (argv[i], "--rules")) slot = &file;
        else if (!strcmp (argv[i], "--from")) slot = &from;
        else if (!strcmp (argv[i], "--to")) slot = &to;
        else if (!strcmp (argv[i], "--type")) slot = &type;
        else if (!strcmp (argv[i], "--handling")) slot = &handling;
        else if (!strcmp (argv[i], "--tlp")) slot = &tlp;
        else if (!strcmp (argv[i], "--basis")) slot = &basis;
        else if (!strcmp (argv[i], "--priority")) slot = &priority;
        else if (!strcmp (argv[i], "--source")) slot = &source;
        else if (!strcmp (argv[i], "--accuracy")) slot = &accuracy;
        if (!slot || i + 1 >= argc) {
            fprintf (stderr, "liaisond explain: unknown flag or missing value: %s\n", argv[i]);
            return s_usage ();
        }
        *slot = argv[++i];
    }
    if (!file || !from || !to || !type)
        return s_usage ();
    if (!wire_node_id_valid (from)) {
        fprintf (stderr, "liaisond explain: --from takes a node id such as fr-pn, not '%s'\n", from);
        return 2;
    }
    explain_t x = {0};
    x.q.sender = from;
    x.q.type = s_lookup (s_types, 5, type);
    x.q.priority = s_lookup (s_prios, 3, priority);
    x.q.tlp = s_lookup (s_tlps, 6, strncasecmp (tlp, "tlp:", 4) ? tlp : tlp + 4);
    x.q.handling = s_lookup (s_handl, 5, handling);
    x.q.basis = basis;
    // A reply is by definition a reply: --reply is implied for mla-reply.
    x.q.reply = reply || x.q.type == LIAISON__MESSAGE_TYPE__MLA_REPLY;
    x.q.source = source ? source[0] : 0;
    x.q.accuracy = accuracy ? atoi (accuracy) : 0;
    if (x.q.type < 0 || x.q.priority < 0 || x.q.tlp < 0 || x.q.handling < 0
        || (source && (strlen (source) != 1 || !strchr ("ABCX", source[0])))
        || (accuracy && (x.q.accuracy < 1 || x.q.accuracy > 4 || strlen (accuracy) != 1))) {
        fprintf (stderr, "liaisond explain: a value is not one of those listed in the usage\n");
        return s_usage ();
    }
    int kind;
    const char *name;
    if (wire_codec_parse_address (to, &kind, &name)) {
        fprintf (stderr, "liaisond explain: '%s' is not a node id, country code or group name\n", to);
        return 2;
    }
    int errors = 0;
    rules_t *rules = rules_load (file, s_print_error, &errors);
    if (!rules)
        return 2;
    x.rules = rules;
    int rc = 0;
    bool restricted = x.q.tlp == LIAISON__TLP__TLP_RED || x.q.handling == LIAISON__HANDLING_CODE__H2;
    if (kind == LIAISON__RECIPIENT_KIND__NODE)
        x.nodes[x.n++] = name;
    else if (restricted) {
        printf ("deny handling-restricts-addressing\n");
        rc = 1;
    }
    else {
        int n = rules_expand (rules, kind, name, from, s_collect, &x);
        if (n <= 0) {
            printf ("deny %s\n", n < 0 ? "unknown-address" : "no-contact-point");
            rc = 1;
        }
    }
    for (int i = 0; i < x.n; i++) {
        rules_decision_t d;
        x.q.recipient = x.nodes[i];
        rules_decide (rules, &x.q, &d);
        char buf[512];
        if (kind == LIAISON__RECIPIENT_KIND__NODE)
            printf ("%s\n", rules_explain (rules, &d, buf, sizeof buf));
        else
            printf ("%s %s\n", rules_explain (rules, &d, buf, sizeof buf), x.nodes[i]);
        if (!d.allow)
            rc = 1;
        else
            rules_copies (rules, &x.q, s_print_copy, rules);
    }
    rules_destroy (&rules);
    return rc;
}
