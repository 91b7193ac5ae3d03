/*  liaison trail / mailbox / fetch / deadlines: questions to the broker's
    store. None of them changes delivery.                                    */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *s_trail_usage =
    "usage: liaison trail ID [FLAGS]\n"
    "  The receipts of a message this node sent (ID: 32 hex digits), from the\n"
    "  broker's store: accepted per recipient, then delivered, read, expired.\n"
    "  --verify-dir DIR    check each signed receipt against the recipient's\n"
    "                      certificate, DIR/RECIPIENT.pem or DIR/RECIPIENT/node.pem;\n"
    "                      exit 3 if one does not verify\n";

static const char *s_mailbox_usage =
    "usage: liaison mailbox [--limit N] [FLAGS]\n"
    "  The messages waiting for this node at the broker (not yet delivered to its\n"
    "  receiver), in delivery order: highest priority first, then oldest first;\n"
    "  no message is delivered or acknowledged.\n"
    "  --limit N           at most N entries (default 100)\n";

static const char *s_fetch_usage =
    "usage: liaison fetch SENDER ID [FLAGS]\n"
    "  Shows one message of this node's mailbox without taking delivery of it.\n";

static const char *s_deadlines_usage =
    "usage: liaison deadlines [FLAGS]\n"
    "  The legal deadlines this node is party to, soonest first: open, due soon\n"
    "  (reminded) and missed; answered ones are left out.\n";

/* Parses common flags and up to `npos` positional arguments; handles
   --help. Returns -1 to exit with *rc, else 0. Extra flags are offered to
   `extra` (returns 1 if consumed). */
typedef int (extra_fn) (int argc, char **argv, int *i, void *arg);

static int
s_parse (cli_common_t *c, int argc, char **argv, const char *cmd, const char *usage,
         const char **pos, int npos, extra_fn *extra, void *arg, int *rc)
{
    int got = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--help") || !strcmp (argv[i], "-h")) {
            printf ("%s%s", usage, cli_common_usage);
            *rc = CLI_OK;
            return -1;
        }
        int r = cli_common_flag (c, argc, argv, &i);
        if (r < 0) {
            *rc = CLI_USAGE;
            return -1;
        }
        if (r > 0)
            continue;
        if (extra) {
            r = extra (argc, argv, &i, arg);
            if (r < 0) {
                *rc = CLI_USAGE;
                return -1;
            }
            if (r > 0)
                continue;
        }
        if (argv[i][0] != '-' && got < npos) {
            pos[got++] = argv[i];
            continue;
        }
        fprintf (stderr, "liaison %s: unexpected argument %s\n%s", cmd, argv[i], usage);
        *rc = CLI_USAGE;
        return -1;
    }
    if (got < npos) {
        fprintf (stderr, "liaison %s: missing argument\n%s", cmd, usage);
        *rc = CLI_USAGE;
        return -1;
    }
    if (cli_common_finish (c, cmd)) {
        *rc = CLI_USAGE;
        return -1;
    }
    return 0;
}

static int
s_verify_dir (int argc, char **argv, int *i, void *arg)
{
    if (strcmp (argv[*i], "--verify-dir"))
        return 0;
    if (*i + 1 >= argc) {
        fprintf (stderr, "liaison trail: --verify-dir needs a directory\n");
        return -1;
    }
    *(const char **) arg = argv[++*i];
    return 1;
}

int
cmd_trail (int argc, char **argv)
{
    cli_common_t c = {0};
    const char *pos[1], *verify = NULL;
    int rc;
    if (s_parse (&c, argc, argv, "trail", s_trail_usage, pos, 1, s_verify_dir, &verify, &rc))
        return rc;
    uint8_t id[LIAISON_ID_LEN];
    if (liaison_id_parse (pos[0], id)) {
        fprintf (stderr, "liaison trail: %s is not a message id (32 hex digits)\n", pos[0]);
        return CLI_USAGE;
    }
    liaison_t *l = cli_connect (&c);
    if (!l)
        return CLI_FAIL;
    liaison_trail_t *t = NULL;
    int r = liaison_trail (l, id, &t);
    if (r != LIAISON_OK) {
        fprintf (stderr, "liaison trail: %s (%s)\n", liaison_errmsg (l), liaison_strerror (r));
        liaison_close (&l);
        return r == LIAISON_ENOTFOUND ? CLI_REJECTED : CLI_FAIL;
    }
    rc = CLI_OK;
    if (c.json)
        printf ("{\"id\":\"%s\",\"receipts\":[", pos[0]);
    for (size_t i = 0; i < liaison_trail_count (t); i++) {
        const liaison_receipt_t *x = liaison_trail_get (t, i);
        const char *status = liaison_status_name (liaison_receipt_status (x));
        int signed_ = liaison_receipt_status (x) == LIAISON_DELIVERED
                      || liaison_receipt_status (x) == LIAISON_READ;
        const char *check = signed_ ? "signed" : "";
        if (signed_ && verify) {
            char cert[4096];
            snprintf (cert, sizeof cert, "%s/%s.pem", verify, liaison_receipt_recipient (x));
            FILE *probe = fopen (cert, "r");
            if (probe)
                fclose (probe);
            else  // a PKI tree: DIR/NODE/node.pem
                snprintf (cert, sizeof cert, "%s/%s/node.pem", verify,
                          liaison_receipt_recipient (x));
            int v = liaison_receipt_verify (x, cert);
            check = v == LIAISON_OK ? "verified" : "NOT VERIFIED";
            if (v != LIAISON_OK)
                rc = CLI_REJECTED;
        }
        char when[32];
        cli_time (when, sizeof when, liaison_receipt_time (x));
        if (c.json) {
            printf ("%s{\"recipient\":", i ? "," : "");
            cli_json_string (stdout, liaison_receipt_recipient (x),
                             strlen (liaison_receipt_recipient (x)));
            printf (",\"status\":\"%s\",\"time\":\"%s\",\"reason\":", status ? status : "unknown",
                    when);
            cli_json_string (stdout, liaison_receipt_reason (x), strlen (liaison_receipt_reason (x)));
            printf (",\"signature\":\"%s\"}", check);
        }
        else
            printf ("%s %s %s%s%s%s%s\n", when, status ? status : "unknown",
                    liaison_receipt_recipient (x), liaison_receipt_reason (x)[0] ? ": " : "",
                    liaison_receipt_reason (x), check[0] ? " " : "", check);
    }
    if (c.json)
        printf ("]}\n");
    liaison_trail_destroy (&t);
    liaison_close (&l);
    return rc;
}

static int
s_limit (int argc, char **argv, int *i, void *arg)
{
    if (strcmp (argv[*i], "--limit"))
        return 0;
    char *end = NULL;
    long v = *i + 1 < argc ? strtol (argv[*i + 1], &end, 10) : 0;
    if (!end || *end || v <= 0 || v > 1000000) {
        fprintf (stderr, "liaison mailbox: --limit takes a number from 1 to 1000000\n");
        return -1;
    }
    *(long *) arg = v;
    ++*i;
    return 1;
}

int
cmd_mailbox (int argc, char **argv)
{
    cli_common_t c = {0};
    long limit = 100;
    int rc;
    if (s_parse (&c, argc, argv, "mailbox", s_mailbox_usage, NULL, 0, s_limit, &limit, &rc))
        return rc;
    liaison_t *l = cli_connect (&c);
    if (!l)
        return CLI_FAIL;
    liaison_mailbox_entry_t page[100];
    uint64_t after = 0;
    long shown = 0;
    rc = CLI_OK;
    do {
        size_t n = 0, want = (size_t) (limit - shown < 100 ? limit - shown : 100);
        int r = liaison_mailbox (l, &after, page, want, &n);
        if (r != LIAISON_OK) {
            fprintf (stderr, "liaison mailbox: %s (%s)\n", liaison_errmsg (l), liaison_strerror (r));
            rc = CLI_FAIL;
            break;
        }
        for (size_t i = 0; i < n; i++, shown++) {
            char id[33], when[32], due[32];
            liaison_id_hex (page[i].id, id);
            cli_time (when, sizeof when, page[i].accepted_ms);
            cli_time (due, sizeof due, page[i].deadline_ms);
            const char *type = liaison_type_name (page[i].type);
            const char *prio = liaison_priority_name (page[i].priority);
            if (c.json)
                printf ("{\"seq\":%llu,\"id\":\"%s\",\"sender\":\"%s\",\"type\":\"%s\","
                        "\"priority\":\"%s\",\"accepted\":\"%s\",\"deadline\":\"%s\","
                        "\"size\":%llu}\n",
                        (unsigned long long) page[i].seq, id, page[i].sender, type ? type : "",
                        prio ? prio : "", when, due, (unsigned long long) page[i].size);
            else
                printf ("%s %s from %s  %s  accepted %s  deadline %s  %llu bytes\n", id,
                        type ? type : "?", page[i].sender, prio ? prio : "?", when, due,
                        (unsigned long long) page[i].size);
        }
        if (n == 0)
            break;
    } while (after && shown < limit);
    liaison_close (&l);
    return rc;
}

int
cmd_fetch (int argc, char **argv)
{
    cli_common_t c = {0};
    const char *pos[2];
    int rc;
    if (s_parse (&c, argc, argv, "fetch", s_fetch_usage, pos, 2, NULL, NULL, &rc))
        return rc;
    uint8_t id[LIAISON_ID_LEN];
    if (liaison_id_parse (pos[1], id)) {
        fprintf (stderr, "liaison fetch: %s is not a message id (32 hex digits)\n", pos[1]);
        return CLI_USAGE;
    }
    liaison_t *l = cli_connect (&c);
    if (!l)
        return CLI_FAIL;
    liaison_message_t *m = NULL;
    int r = liaison_fetch (l, pos[0], id, &m);
    if (r == LIAISON_OK) {
        cli_print_message (m, c.json);
        liaison_message_destroy (&m);
        rc = CLI_OK;
    }
    else {
        fprintf (stderr, "liaison fetch: %s (%s)\n", liaison_errmsg (l), liaison_strerror (r));
        rc = r == LIAISON_ENOTFOUND || r == LIAISON_EINVAL ? CLI_REJECTED : CLI_FAIL;
    }
    liaison_close (&l);
    return rc;
}

int
cmd_deadlines (int argc, char **argv)
{
    cli_common_t c = {0};
    int rc;
    if (s_parse (&c, argc, argv, "deadlines", s_deadlines_usage, NULL, 0, NULL, NULL, &rc))
        return rc;
    liaison_t *l = cli_connect (&c);
    if (!l)
        return CLI_FAIL;
    static liaison_deadline_t list[1000];
    size_t n = 0;
    int r = liaison_deadlines (l, list, 1000, &n);
    if (r != LIAISON_OK) {
        fprintf (stderr, "liaison deadlines: %s (%s)\n", liaison_errmsg (l), liaison_strerror (r));
        liaison_close (&l);
        return CLI_FAIL;
    }
    static const char *states[] = {"?", "open", "due-soon", "missed"};
    for (size_t i = 0; i < n; i++) {
        char id[33], due[32];
        liaison_id_hex (list[i].id, id);
        cli_time (due, sizeof due, list[i].deadline_ms);
        const char *state = list[i].state >= 1 && list[i].state <= 3 ? states[list[i].state] : "?";
        if (c.json)
            printf ("{\"id\":\"%s\",\"sender\":\"%s\",\"recipient\":\"%s\",\"deadline\":\"%s\","
                    "\"state\":\"%s\"}\n",
                    id, list[i].sender, list[i].recipient, due, state);
        else
            printf ("%s %-8s %s asked %s\n", due, state, id, list[i].recipient);
    }
    liaison_close (&l);
    return CLI_OK;
}
