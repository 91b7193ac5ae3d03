/*  liaison send / liaison recv.                                             */
#include "cli.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_BODY (64u * 1024 * 1024)

static const char *s_send_usage =
    "usage: liaison send --to ADDRESS [--to ADDRESS ...] [FLAGS]\n"
    "  --to ADDRESS        a node id (de-bka), a jurisdiction (DE) or a group (eu);\n"
    "                      prefix node:, jurisdiction: or group: to be explicit\n"
    "  --type TYPE         mla-request (default), mla-reply, case-lead, evidence-handoff\n"
    "  --priority P        routine (default), urgent, emergency\n"
    "  --tlp T             clear, green, amber (default), amber+strict, red\n"
    "  --handling H        h0 (default), h1, h2, h3\n"
    "  --handling-note T   restrictions, for h3\n"
    "  --evaluation XN     source reliability A/B/C/X and accuracy 1-4, e.g. B2\n"
    "  --basis NAME        legal basis (instrument name, e.g. eio)\n"
    "  --case-ref REF      your case reference\n"
    "  --reply-to ID       id (32 hex digits) of the message this replies to\n"
    "  --deadline CLASS    legal deadline class, kept by the broker from its acceptance:\n"
    "                      8h, 3d or 7d (EU 2023/977 Art. 5)\n"
    "  --deadline-in D     legal deadline at a date: this long from now (8h, 3d, 90m)\n"
    "  --expires-in D      time to live from now, same units\n"
    "  --body TEXT         the body; or --body-file FILE ('-' reads standard input)\n"
    "  --sender NODE       claim a sender (the broker refuses one that is not yours)\n";

static const char *s_resolve_usage =
    "liaison resolve: shows what the addresses stand for under the broker's rules\n"
    "(one line per node: allow/deny, the reason and the rule) without sending;\n"
    "exit 0 when every recipient is allowed, 3 otherwise. Flags as for send:\n";

static const char *s_recv_usage =
    "usage: liaison recv [--count N] [--wait-ms MS] [FLAGS]\n"
    "  Becomes this node's receiver and prints each message delivered.\n"
    "  --count N           stop after N messages (default: run until interrupted)\n"
    "  --wait-ms MS        give up (exit 4) if no message arrives for MS milliseconds\n"
    "  --read              also tell each sender its message was read (a signed READ\n"
    "                      receipt); otherwise only DELIVERED goes back\n"
    "  Each message printed is acknowledged: it is not printed again, also after a\n"
    "  restart; one the command could not print (a crash) comes again next time.\n";

// Parses 90m, 8h, 3d, 45s into milliseconds; -1 if malformed.
static int64_t
s_duration_ms (const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll (s, &end, 10);
    if (errno || v <= 0 || end == s || end[0] == 0 || end[1] != 0 || v > 100000)
        return -1;
    switch (*end) {
        case 's': return v * 1000;
        case 'm': return v * 60 * 1000;
        case 'h': return v * 3600 * 1000;
        case 'd': return v * 86400 * 1000;
    }
    return -1;
}

// Reads a body file (or stdin) of at most MAX_BODY bytes.
static char *
s_read_body (const char *path, size_t *size)
{
    FILE *f = strcmp (path, "-") ? fopen (path, "rb") : stdin;
    if (!f) {
        fprintf (stderr, "liaison send: cannot open %s: %s\n", path, strerror (errno));
        return NULL;
    }
    struct stat st;
    if (f != stdin && fstat (fileno (f), &st) == 0 && st.st_size > (off_t) MAX_BODY) {
        fprintf (stderr, "liaison send: %s is larger than %u bytes; send it as evidence\n",
                 path, MAX_BODY);
        fclose (f);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc (cap);
    while (buf) {
        size_t n = fread (buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
        if (len == cap) {
            if (cap >= MAX_BODY) {
                fprintf (stderr, "liaison send: body larger than %u bytes\n", MAX_BODY);
                free (buf);
                buf = NULL;
                break;
            }
            char *more = realloc (buf, cap * 2);
            if (!more) {
                free (buf);
                buf = NULL;
                break;
            }
            buf = more;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose (f);
    *size = len;
    return buf;
}

static int
s_bad (const char *what, const char *value)
{
    fprintf (stderr, "liaison send: invalid %s '%s' (see liaison send --help)\n", what, value);
    return CLI_USAGE;
}

static void s_print_receipts (liaison_t *l, int json, int *rejected);
static int s_print_resolution (const liaison_resolution_t *res, int json);

// liaison send, and liaison resolve (the same flags; nothing is sent).
static int
s_send_or_resolve (int argc, char **argv, int resolve)
{
    const char *cmd = resolve ? "resolve" : "send";
    cli_common_t c = {0};
    const char *to[256];
    int nto = 0;
    const char *type = "mla-request", *priority = NULL, *tlp = NULL, *handling = NULL;
    const char *note = NULL, *basis = NULL, *case_ref = NULL, *reply_to = NULL;
    const char *deadline_class = NULL;
    const char *deadline_in = NULL, *expires_in = NULL, *body = NULL, *body_file = NULL;
    const char *sender = NULL, *evaluation = NULL;
    struct { const char *flag; const char **slot; } flags[] = {
        {"--type", &type}, {"--priority", &priority}, {"--tlp", &tlp},
        {"--handling", &handling}, {"--handling-note", &note}, {"--basis", &basis},
        {"--case-ref", &case_ref}, {"--reply-to", &reply_to}, {"--deadline-in", &deadline_in},
        {"--deadline", &deadline_class},
        {"--expires-in", &expires_in}, {"--body", &body}, {"--body-file", &body_file},
        {"--sender", &sender}, {"--evaluation", &evaluation},
    };
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--help") || !strcmp (argv[i], "-h")) {
            if (resolve)
                printf ("%s", s_resolve_usage);
            printf ("%s%s", s_send_usage, cli_common_usage);
            return CLI_OK;
        }
        int rc = cli_common_flag (&c, argc, argv, &i);
        if (rc < 0)
            return CLI_USAGE;
        if (rc > 0)
            continue;
        if (!strcmp (argv[i], "--to") && i + 1 < argc) {
            if (nto == 256) {
                fprintf (stderr, "liaison send: at most 256 --to addresses\n");
                return CLI_USAGE;
            }
            to[nto++] = argv[++i];
            continue;
        }
        size_t k = 0;
        for (; k < sizeof flags / sizeof flags[0]; k++)
            if (!strcmp (argv[i], flags[k].flag))
                break;
        if (k == sizeof flags / sizeof flags[0] || i + 1 >= argc) {
            fprintf (stderr, "liaison send: unknown flag or missing value: %s\n%s", argv[i],
                     s_send_usage);
            return CLI_USAGE;
        }
        *flags[k].slot = argv[++i];
    }
    if (nto == 0) {
        fprintf (stderr, "liaison send: at least one --to ADDRESS is required\n");
        return CLI_USAGE;
    }
    if (body && body_file) {
        fprintf (stderr, "liaison send: give --body or --body-file, not both\n");
        return CLI_USAGE;
    }
    int t = liaison_type_parse (type);
    if (t < 0)
        return s_bad ("--type", type);
    liaison_message_t *m = liaison_message_new ((liaison_type_t) t);
    int rc = CLI_USAGE;
    char *filebody = NULL;
    liaison_t *l = NULL;
    for (int i = 0; i < nto; i++)
        if (liaison_message_add_address (m, to[i]) != LIAISON_OK) {
            s_bad ("address", to[i]);
            goto done;
        }
    if (priority && liaison_message_set_priority (m, (liaison_priority_t) liaison_priority_parse (priority))) {
        s_bad ("--priority", priority);
        goto done;
    }
    if (tlp && liaison_message_set_tlp (m, (liaison_tlp_t) liaison_tlp_parse (tlp))) {
        s_bad ("--tlp", tlp);
        goto done;
    }
    if ((handling || note)
        && liaison_message_set_handling (m, (liaison_handling_t) liaison_handling_parse (handling ? handling : "h0"), note)) {
        s_bad ("--handling", handling ? handling : note);
        goto done;
    }
    if (evaluation && (strlen (evaluation) != 2
                       || liaison_message_set_evaluation (m, (char) toupper ((unsigned char) evaluation[0]),
                                                          evaluation[1] - '0'))) {
        s_bad ("--evaluation", evaluation);
        goto done;
    }
    if (basis && liaison_message_set_legal_basis (m, basis)) {
        s_bad ("--basis", basis);
        goto done;
    }
    if (case_ref && liaison_message_set_case_ref (m, case_ref)) {
        s_bad ("--case-ref", case_ref);
        goto done;
    }
    if (sender && liaison_message_set_sender (m, sender)) {
        s_bad ("--sender", sender);
        goto done;
    }
    if (reply_to) {
        uint8_t id[LIAISON_ID_LEN];
        if (liaison_id_parse (reply_to, id) || liaison_message_set_in_reply_to (m, id)) {
            s_bad ("--reply-to", reply_to);
            goto done;
        }
    }
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (deadline_class) {
        int cls = !strcmp (deadline_class, "8h")   ? LIAISON_DEADLINE_8_HOURS
                  : !strcmp (deadline_class, "3d") ? LIAISON_DEADLINE_3_DAYS
                  : !strcmp (deadline_class, "7d") ? LIAISON_DEADLINE_7_DAYS
                                                   : -1;
        if (cls < 0 || deadline_in
            || liaison_message_set_deadline_class (m, (liaison_deadline_class_t) cls)) {
            fprintf (stderr, "liaison send: --deadline is 8h, 3d or 7d (and excludes "
                             "--deadline-in)\n");
            rc = CLI_USAGE;
            goto done;
        }
    }
    if (deadline_in) {
        int64_t d = s_duration_ms (deadline_in);
        if (d < 0 || liaison_message_set_deadline (m, now_ms + d)) {
            s_bad ("--deadline-in", deadline_in);
            goto done;
        }
    }
    if (expires_in) {
        int64_t d = s_duration_ms (expires_in);
        if (d < 0 || liaison_message_set_expires (m, now_ms + d)) {
            s_bad ("--expires-in", expires_in);
            goto done;
        }
    }
    if (liaison_message_type (m) == LIAISON_MLA_REPLY && !reply_to) {
        fprintf (stderr, "liaison send: an mla-reply needs --reply-to ID\n");
        goto done;
    }
    size_t body_len = body ? strlen (body) : 0;
    if (body_file) {
        filebody = s_read_body (body_file, &body_len);
        if (!filebody) {
            rc = CLI_FAIL;
            goto done;
        }
        body = filebody;
    }
    if (body && liaison_message_set_body (m, body, body_len)) {
        rc = CLI_FAIL;
        goto done;
    }
    if (cli_common_finish (&c, cmd))
        goto done;
    rc = CLI_FAIL;
    if (!(l = cli_connect (&c)))
        goto done;
    if (resolve) {
        liaison_resolution_t *res = NULL;
        int rrc = liaison_resolve (l, m, &res);
        if (rrc != LIAISON_OK) {
            fprintf (stderr, "liaison resolve: %s (%s)\n", liaison_errmsg (l), liaison_strerror (rrc));
            goto done;
        }
        rc = s_print_resolution (res, c.json);
        liaison_resolution_destroy (&res);
        goto done;
    }
    int src = liaison_send (l, m, 0);
    if (src == LIAISON_OK)
        src = liaison_flush (l, c.opts.timeout_ms ? c.opts.timeout_ms : 10000);
    if (src != LIAISON_OK && src != LIAISON_EDENIED) {
        fprintf (stderr, "liaison send: %s (%s)\n", liaison_errmsg (l), liaison_strerror (src));
        goto done;
    }
    char hex[33];
    liaison_id_hex (liaison_message_id (m), hex);
    int rejected = src == LIAISON_EDENIED;
    if (c.json)
        printf ("{\"id\":\"%s\",\"sender\":\"%s\",\"sent\":%s,\"receipts\":[", hex,
                liaison_node_id (l), src == LIAISON_OK ? "true" : "false");
    else if (src == LIAISON_OK)
        printf ("sent %s from %s\n", hex, liaison_node_id (l));
    else
        printf ("not sent %s from %s: no recipient is allowed\n", hex, liaison_node_id (l));
    s_print_receipts (l, c.json, &rejected);
    if (c.json)
        printf ("]}\n");
    rc = rejected ? CLI_REJECTED : CLI_OK;
done:
    liaison_close (&l);
    liaison_message_destroy (&m);
    free (filebody);
    return rc;
}

int
cmd_send (int argc, char **argv)
{
    return s_send_or_resolve (argc, argv, 0);
}

int
cmd_resolve (int argc, char **argv)
{
    return s_send_or_resolve (argc, argv, 1);
}

// Prints (and frees) every receipt queued; sets *rejected if one refuses.
static void
s_print_receipts (liaison_t *l, int json, int *rejected)
{
    liaison_receipt_t *r;
    int first = 1;
    while (liaison_next_receipt (l, &r, 0) == LIAISON_OK) {
        const char *status = liaison_status_name (liaison_receipt_status (r));
        const char *rule = liaison_receipt_rule (r);
        if (liaison_receipt_status (r) == LIAISON_REJECTED)
            *rejected = 1;
        if (json) {
            printf ("%s{\"recipient\":", first ? "" : ",");
            cli_json_string (stdout, liaison_receipt_recipient (r), strlen (liaison_receipt_recipient (r)));
            printf (",\"status\":\"%s\",\"reason\":", status ? status : "unknown");
            cli_json_string (stdout, liaison_receipt_reason (r), strlen (liaison_receipt_reason (r)));
            printf (",\"rule\":");
            cli_json_string (stdout, rule, strlen (rule));
            printf (",\"rules_hash\":\"%s\"}", liaison_receipt_rules_hash (r));
        }
        else if (rule[0])
            printf ("%s %s: %s (%s, rules %s)\n", status ? status : "unknown",
                    liaison_receipt_recipient (r), liaison_receipt_reason (r), rule,
                    liaison_receipt_rules_hash (r));
        else if (liaison_receipt_reason (r)[0])
            printf ("%s %s: %s\n", status ? status : "unknown", liaison_receipt_recipient (r),
                    liaison_receipt_reason (r));
        else
            printf ("%s %s\n", status ? status : "unknown", liaison_receipt_recipient (r));
        first = 0;
        liaison_receipt_destroy (&r);
    }
}

// Prints a resolution; CLI_OK if every entry is allowed, else CLI_REJECTED.
static int
s_print_resolution (const liaison_resolution_t *res, int json)
{
    int refused = 0;
    size_t n = liaison_resolution_count (res);
    if (json)
        printf ("{\"rules_hash\":\"%s\",\"entries\":[", liaison_resolution_rules_hash (res));
    for (size_t i = 0; i < n; i++) {
        int ok = liaison_resolution_allowed (res, i);
        const char *node = liaison_resolution_node (res, i);
        const char *rule = liaison_resolution_rule (res, i);
        if (!ok)
            refused = 1;
        if (json) {
            printf ("%s{\"address\":", i ? "," : "");
            cli_json_string (stdout, liaison_resolution_address (res, i),
                             strlen (liaison_resolution_address (res, i)));
            printf (",\"node\":");
            cli_json_string (stdout, node, strlen (node));
            printf (",\"allowed\":%s,\"reason\":\"%s\",\"rule\":", ok ? "true" : "false",
                    liaison_resolution_reason (res, i));
            cli_json_string (stdout, rule, strlen (rule));
            printf ("}");
        }
        else {
            // "allow de-bka via eu: FILE:LINE", "deny eu: unknown-address",
            // "allow fr-pn: required-copy FILE:LINE".
            const char *addr = liaison_resolution_address (res, i);
            const char *reason = liaison_resolution_reason (res, i);
            bool by_rule = !strcmp (reason, "rule") || !strcmp (reason, "default");
            printf ("%s %s%s%s: %s%s%s\n", ok ? "allow" : "deny", node[0] ? node : addr,
                    node[0] && strcmp (node, addr) ? " via " : "",
                    node[0] && strcmp (node, addr) ? addr : "", by_rule ? "" : reason,
                    !by_rule && rule[0] ? " " : "", rule);
        }
    }
    if (json)
        printf ("]}\n");
    else
        printf ("rules %s\n", liaison_resolution_rules_hash (res));
    return refused ? CLI_REJECTED : CLI_OK;
}

void
cli_time (char *out, size_t len, int64_t ms)
{
    if (!ms) {
        snprintf (out, len, "-");
        return;
    }
    time_t t = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&t, &tm);
    strftime (out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
s_is_text (const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if ((ch < 0x20 && ch != '\n' && ch != '\t' && ch != '\r') || ch == 0x7f)
            return 0;
    }
    return 1;
}

static void
s_base64 (FILE *out, const unsigned char *p, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0)
                     | (i + 2 < n ? p[i + 2] : 0);
        fputc (b64[v >> 18 & 63], out);
        fputc (b64[v >> 12 & 63], out);
        fputc (i + 1 < n ? b64[v >> 6 & 63] : '=', out);
        fputc (i + 2 < n ? b64[v & 63] : '=', out);
    }
}

static void
s_json_field (const char *name, const char *value, int comma)
{
    printf ("%s\"%s\":", comma ? "," : "", name);
    cli_json_string (stdout, value, strlen (value));
}

void
cli_print_message (const liaison_message_t *m, int json)
{
    char id[33], reply[33] = "", created[32], deadline[32], expires[32];
    liaison_id_hex (liaison_message_id (m), id);
    if (liaison_message_in_reply_to (m))
        liaison_id_hex (liaison_message_in_reply_to (m), reply);
    cli_time (created, sizeof created, liaison_message_created (m));
    cli_time (deadline, sizeof deadline, liaison_message_deadline (m));
    cli_time (expires, sizeof expires, liaison_message_expires (m));
    size_t blen;
    const char *body = liaison_message_body (m, &blen);
    const char *type = liaison_type_name (liaison_message_type (m));
    const char *prio = liaison_priority_name (liaison_message_priority (m));
    const char *tlp = liaison_tlp_name (liaison_message_tlp (m));
    const char *hand = liaison_handling_name (liaison_message_handling (m));
    if (json) {
        printf ("{\"id\":\"%s\"", id);
        s_json_field ("sender", liaison_message_sender (m), 1);
        printf (",\"type\":\"%s\",\"priority\":\"%s\",\"tlp\":\"%s\",\"handling\":\"%s\"",
                type, prio, tlp, hand);
        s_json_field ("handling_note", liaison_message_handling_note (m), 1);
        s_json_field ("legal_basis", liaison_message_legal_basis (m), 1);
        s_json_field ("case_ref", liaison_message_case_ref (m), 1);
        char src;
        int info;
        if (liaison_message_evaluation (m, &src, &info) == LIAISON_OK)
            printf (",\"evaluation\":\"%c%d\"", src, info);
        printf (",\"in_reply_to\":\"%s\",\"created\":\"%s\",\"deadline\":\"%s\",\"expires\":\"%s\","
                "\"recipients\":[",
                reply, created, deadline, expires);
        for (size_t i = 0; i < liaison_message_recipient_count (m); i++) {
            liaison_recipient_kind_t k;
            const char *name = liaison_message_recipient (m, i, &k);
            printf ("%s{\"kind\":\"%s\",\"name\":", i ? "," : "",
                    k == LIAISON_TO_NODE ? "node" : k == LIAISON_TO_JURISDICTION ? "jurisdiction" : "group");
            cli_json_string (stdout, name, strlen (name));
            printf ("}");
        }
        printf ("],\"body_size\":%zu", blen);
        if (s_is_text (body, blen)) {
            printf (",\"body\":");
            cli_json_string (stdout, body, blen);
        }
        printf (",\"body_base64\":\"");
        s_base64 (stdout, (const unsigned char *) body, blen);
        printf ("\"}\n");
    }
    else {
        printf ("message %s from %s\n", id, liaison_message_sender (m));
        printf ("  type: %s  priority: %s  tlp: %s  handling: %s\n", type, prio, tlp, hand);
        printf ("  to:");
        for (size_t i = 0; i < liaison_message_recipient_count (m); i++)
            printf (" %s", liaison_message_recipient (m, i, NULL));
        printf ("\n");
        if (liaison_message_legal_basis (m)[0] || liaison_message_case_ref (m)[0])
            printf ("  legal basis: %s  case: %s\n", liaison_message_legal_basis (m),
                    liaison_message_case_ref (m));
        if (reply[0])
            printf ("  in reply to: %s\n", reply);
        char src;
        int info;
        if (liaison_message_evaluation (m, &src, &info) == LIAISON_OK)
            printf ("  evaluation: %c%d\n", src, info);
        printf ("  created: %s  deadline: %s\n", created, deadline);
        if (s_is_text (body, blen))
            printf ("  body (%zu bytes):\n%.*s\n", blen, (int) blen, body);
        else
            printf ("  body: %zu bytes of binary data (use --json for base64)\n", blen);
    }
    fflush (stdout);
}

int
cmd_recv (int argc, char **argv)
{
    cli_common_t c = {0};
    long count = 0, wait_ms = -1;
    int mark_read = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--help") || !strcmp (argv[i], "-h")) {
            printf ("%s%s", s_recv_usage, cli_common_usage);
            return CLI_OK;
        }
        if (!strcmp (argv[i], "--read")) {
            mark_read = 1;
            continue;
        }
        int rc = cli_common_flag (&c, argc, argv, &i);
        if (rc < 0)
            return CLI_USAGE;
        if (rc > 0)
            continue;
        if ((!strcmp (argv[i], "--count") || !strcmp (argv[i], "--wait-ms")) && i + 1 < argc) {
            char *end;
            long v = strtol (argv[i + 1], &end, 10);
            if (*end || v <= 0 || v > 1000000000) {
                fprintf (stderr, "liaison recv: %s takes a positive number\n", argv[i]);
                return CLI_USAGE;
            }
            if (!strcmp (argv[i], "--count"))
                count = v;
            else
                wait_ms = v;
            i++;
            continue;
        }
        fprintf (stderr, "liaison recv: unknown flag or missing value: %s\n%s", argv[i], s_recv_usage);
        return CLI_USAGE;
    }
    if (cli_common_finish (&c, "recv"))
        return CLI_USAGE;
    c.opts.receiver = 1;
    liaison_t *l = cli_connect (&c);
    if (!l)
        return CLI_FAIL;
    int rc = CLI_OK;
    for (long got = 0; count == 0 || got < count; got++) {
        liaison_message_t *m = NULL;
        int r = liaison_recv (l, &m, (int) wait_ms);
        if (r == LIAISON_ETIMEOUT) {
            fprintf (stderr, "liaison recv: no message within %ld ms\n", wait_ms);
            rc = CLI_TIMEOUT;
            break;
        }
        if (r != LIAISON_OK) {
            fprintf (stderr, "liaison recv: %s (%s)\n", liaison_errmsg (l), liaison_strerror (r));
            rc = CLI_FAIL;
            break;
        }
        cli_print_message (m, c.json);
        // Printed (and flushed) is handled: never handed out again.
        fflush (stdout);
        r = mark_read ? liaison_read (l, m) : LIAISON_OK;
        if (r == LIAISON_OK)
            r = liaison_ack (l, m, 0);
        liaison_message_destroy (&m);
        if (r != LIAISON_OK) {
            fprintf (stderr, "liaison recv: %s (%s)\n", liaison_errmsg (l), liaison_strerror (r));
            rc = CLI_FAIL;
            break;
        }
    }
    liaison_close (&l);
    return rc;
}
