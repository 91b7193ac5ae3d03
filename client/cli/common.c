/*  Flags shared by every command, and output helpers.                      */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *cli_common_usage =
    "connection (flags, or the environment variables in brackets):\n"
    "  --endpoint URL      broker, tcp://HOST:PORT            [LIAISON_ENDPOINT]\n"
    "  --cert FILE         node certificate chain (node.pem)  [LIAISON_CERT]\n"
    "  --key FILE          node private key (node.key)        [LIAISON_KEY]\n"
    "  --ca FILE           federation root certificate        [LIAISON_CA]\n"
    "  --hub-ca FILE       hub CA certificate                 [LIAISON_HUB_CA]\n"
    "  --server-name NAME  name on the broker certificate     [LIAISON_SERVER_NAME]\n"
    "                      (default: the endpoint's host)\n"
    "  --state-dir DIR     this node's outbox and inbox       [LIAISON_STATE_DIR]\n"
    "                      (one process at a time; created 0700 if absent;\n"
    "                      default: ~/.local/state/liaison/COMMAND-CERTHASH)\n"
    "  --timeout-ms N      connect and send timeout (10000)\n"
    "  --json              machine-readable output, one JSON object per line\n";

static const char **
s_slot (cli_common_t *c, const char *flag)
{
    if (!strcmp (flag, "--endpoint")) return &c->opts.endpoint;
    if (!strcmp (flag, "--cert")) return &c->opts.cert;
    if (!strcmp (flag, "--key")) return &c->opts.key;
    if (!strcmp (flag, "--ca")) return &c->opts.ca;
    if (!strcmp (flag, "--hub-ca")) return &c->opts.hub_ca;
    if (!strcmp (flag, "--server-name")) return &c->opts.server_name;
    if (!strcmp (flag, "--state-dir")) return &c->opts.state_dir;
    return NULL;
}

int
cli_common_flag (cli_common_t *c, int argc, char **argv, int *i)
{
    const char *flag = argv[*i];
    if (!strcmp (flag, "--json")) {
        c->json = 1;
        return 1;
    }
    const char **slot = s_slot (c, flag);
    int is_timeout = !strcmp (flag, "--timeout-ms");
    if (!slot && !is_timeout)
        return 0;
    if (*i + 1 >= argc) {
        fprintf (stderr, "liaison: %s needs a value\n", flag);
        return -1;
    }
    const char *value = argv[++*i];
    if (is_timeout) {
        char *end;
        long v = strtol (value, &end, 10);
        if (*end || v <= 0 || v > 3600000) {
            fprintf (stderr, "liaison: --timeout-ms takes milliseconds from 1 to 3600000\n");
            return -1;
        }
        c->opts.timeout_ms = (int) v;
    }
    else
        *slot = value;
    return 1;
}

// FNV-1a of the certificate path: one default state directory per node
// (certificate) and command, so a receiving terminal and a sending one do
// not contend for one directory, and nodes never share one.
static unsigned long long
s_path_hash (const char *path)
{
    unsigned long long h = 1469598103934665603ULL;
    for (const char *p = path; *p; p++)
        h = (h ^ (unsigned char) *p) * 1099511628211ULL;
    return h;
}

// mkdir -p for the parents of the default state directory (mode 0700).
static int
s_mkdirs (char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int rc = mkdir (path, 0700);
        *p = '/';
        if (rc && errno != EEXIST)
            return -1;
    }
    return 0;
}

static int
s_default_state (cli_common_t *c, const char *cmd)
{
    const char *xdg = getenv ("XDG_STATE_HOME");
    const char *home = getenv ("HOME");
    char cert[4096];
    if (!realpath (c->opts.cert, cert))
        snprintf (cert, sizeof cert, "%s", c->opts.cert);
    int n;
    if (xdg && *xdg == '/')
        n = snprintf (c->state_buf, sizeof c->state_buf, "%s/liaison/%s-%016llx", xdg, cmd,
                      s_path_hash (cert));
    else if (home && *home == '/')
        n = snprintf (c->state_buf, sizeof c->state_buf, "%s/.local/state/liaison/%s-%016llx",
                      home, cmd, s_path_hash (cert));
    else {
        fprintf (stderr, "liaison %s: --state-dir is required (or set LIAISON_STATE_DIR): "
                         "neither XDG_STATE_HOME nor HOME is set\n", cmd);
        return -1;
    }
    if (n < 0 || (size_t) n >= sizeof c->state_buf || s_mkdirs (c->state_buf)) {
        fprintf (stderr, "liaison %s: cannot create the state directory %s: %s; pass "
                         "--state-dir\n", cmd, c->state_buf, strerror (errno));
        return -1;
    }
    c->opts.state_dir = c->state_buf;
    return 0;
}

int
cli_common_finish (cli_common_t *c, const char *cmd)
{
    static const struct { const char *flag, *env; } map[] = {
        {"--endpoint", "LIAISON_ENDPOINT"}, {"--cert", "LIAISON_CERT"},
        {"--key", "LIAISON_KEY"},           {"--ca", "LIAISON_CA"},
        {"--hub-ca", "LIAISON_HUB_CA"},     {"--server-name", "LIAISON_SERVER_NAME"},
        {"--state-dir", "LIAISON_STATE_DIR"},
    };
    int missing = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char **slot = s_slot (c, map[i].flag);
        if (!*slot)
            *slot = getenv (map[i].env);
        if (!*slot && strcmp (map[i].flag, "--server-name") != 0
            && strcmp (map[i].flag, "--state-dir") != 0) {
            fprintf (stderr, "liaison %s: %s is required (or set %s)\n", cmd, map[i].flag,
                     map[i].env);
            missing = 1;
        }
    }
    if (missing)
        return -1;
    if (!c->opts.state_dir && s_default_state (c, cmd))
        return -1;
    return 0;
}

liaison_t *
cli_connect (cli_common_t *c)
{
    liaison_t *l = NULL;
    int rc = liaison_connect (&c->opts, &l);
    if (rc != LIAISON_OK) {
        fprintf (stderr, "liaison: cannot connect to %s: %s (%s)\n", c->opts.endpoint,
                 liaison_errmsg (NULL), liaison_strerror (rc));
        return NULL;
    }
    return l;
}

void
cli_json_string (FILE *out, const char *s, size_t len)
{
    fputc ('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) s[i];
        if (ch == '"' || ch == '\\')
            fprintf (out, "\\%c", ch);
        else if (ch == '\n')
            fputs ("\\n", out);
        else if (ch == '\t')
            fputs ("\\t", out);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf (out, "\\u%04x", ch);
        else
            fputc (ch, out);
    }
    fputc ('"', out);
}
