/*  liaisond: load the configuration, start the core and the edge, wait for
    signals. SIGHUP reloads certificates and CRLs; SIGTERM stops cleanly.    */
#include "config.h"
#include "core.h"
#include "edge.h"
#include "log.h"
#include "policy_cli.h"
#include "store.h"

#include <czmq.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#define LIAISOND_VERSION "0.1.0"

static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: liaisond -c FILE        run the broker with configuration FILE\n"
             "       liaisond check-rules FILE\n"
             "                               check a routing rules file (exit 0 valid, 2 not)\n"
             "       liaisond explain --rules FILE --from NODE --to ADDRESS --type TYPE ...\n"
             "                               decide one message under a rules file\n"
             "                               (exit 0 allow, 1 deny; 'liaisond explain' for flags)\n"
             "       liaisond store-check FILE\n"
             "                               full integrity check of a store database\n"
             "                               (exit 0 sound, 1 damaged, 2 cannot open)\n"
             "       liaisond --version      print the version\n"
             "       liaisond --help         this text\n"
             "Exit codes: 0 stopped cleanly, 1 runtime failure, 2 usage or configuration error.\n");
}

// Writes the bound endpoint to <state_dir>/ready, atomically.
static int
s_write_ready (const char *state_dir, const char *endpoint)
{
    char path[4096], tmp[4200];
    snprintf (path, sizeof path, "%s/ready", state_dir);
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen (tmp, "w");
    if (!f)
        return -1;
    fprintf (f, "%s\n", endpoint);
    if (fflush (f) || fsync (fileno (f)) || fclose (f))
        return -1;
    return rename (tmp, path);
}

static int
s_mkdirs (const char *dir)
{
    char buf[4096];
    snprintf (buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir (buf, 0700) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir (buf, 0700) && errno != EEXIST ? -1 : 0;
}

int
main (int argc, char **argv)
{
    const char *cfg_path = NULL;
    if (argc >= 2 && streq (argv[1], "check-rules"))
        return policy_check_rules (argc - 1, argv + 1);
    if (argc >= 2 && streq (argv[1], "explain"))
        return policy_explain (argc - 1, argv + 1);
    if (argc >= 2 && streq (argv[1], "store-check")) {
        if (argc != 3) {
            fprintf (stderr, "usage: liaisond store-check FILE\n");
            return 2;
        }
        char report[4096];
        int rc = store_check (argv[2], report, sizeof report);
        printf ("%s: %s\n", argv[2], report);
        return rc < 0 ? 2 : rc;
    }
    for (int i = 1; i < argc; i++) {
        if (streq (argv[i], "-c") && i + 1 < argc)
            cfg_path = argv[++i];
        else if (streq (argv[i], "--version")) {
            printf ("liaisond %s\n", LIAISOND_VERSION);
            return 0;
        }
        else if (streq (argv[i], "--help") || streq (argv[i], "-h")) {
            s_usage (stdout);
            return 0;
        }
        else {
            fprintf (stderr, "liaisond: unknown argument '%s'\n", argv[i]);
            s_usage (stderr);
            return 2;
        }
    }
    if (!cfg_path) {
        fprintf (stderr, "liaisond: no configuration: pass -c FILE (see deploy/liaisond.cfg)\n");
        return 2;
    }
    char err[1024];
    config_t *cfg = config_load (cfg_path, err, sizeof err);
    if (!cfg) {
        fprintf (stderr, "liaisond: %s\n", err);
        return 2;
    }
    if (s_mkdirs (cfg->state_dir)) {
        fprintf (stderr, "liaisond: cannot create state_dir %s: %s\n", cfg->state_dir,
                 strerror (errno));
        config_destroy (&cfg);
        return 1;
    }
    char ready[4200];
    snprintf (ready, sizeof ready, "%s/ready", cfg->state_dir);
    unlink (ready);

    // Signals are blocked before any thread starts, so every thread
    // inherits the mask and only the signalfd below sees them.
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGHUP);
    sigaddset (&set, SIGTERM);
    sigaddset (&set, SIGINT);
    sigprocmask (SIG_BLOCK, &set, NULL);
    signal (SIGPIPE, SIG_IGN);
    int sfd = signalfd (-1, &set, SFD_CLOEXEC);
    zsys_handler_set (NULL);
    zsys_set_logstream (stderr);
    zsys_init ();

    char bus[64];
    snprintf (bus, sizeof bus, "inproc://liaison-core-%d", (int) getpid ());
    core_args_t core_args = {cfg, bus};
    edge_args_t edge_args = {cfg, bus};
    int rc = 1;
    zactor_t *edge = NULL;
    zactor_t *core = zactor_new ((zactor_fn *) core_actor, &core_args);
    char *status = core ? zstr_recv (core) : NULL;
    bool ok = status && streq (status, "OK");
    zstr_free (&status);
    if (!ok)
        goto done;
    edge = zactor_new ((zactor_fn *) edge_actor, &edge_args);
    status = edge ? zstr_recv (edge) : NULL;
    if (!status || strncmp (status, "OK ", 3) != 0) {
        zstr_free (&status);
        goto done;
    }
    if (s_write_ready (cfg->state_dir, status + 3)) {
        log_event ("startup-failed", "reason=%s", LOG_Q ("cannot write the ready file"));
        zstr_free (&status);
        goto done;
    }
    log_event ("ready", "endpoint=%s pid=%d", status + 3, (int) getpid ());
    zstr_free (&status);

    zmq_pollitem_t items[] = {{NULL, sfd, ZMQ_POLLIN, 0}};
    for (;;) {
        if (zmq_poll (items, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        struct signalfd_siginfo si;
        if (read (sfd, &si, sizeof si) != sizeof si)
            continue;
        if (si.ssi_signo == SIGHUP) {
            log_event ("reload", "signal=SIGHUP");
            // Certificates and CRLs in the edge, routing rules in the core;
            // each keeps what it had if its part does not load.
            zstr_send (edge, "RELOAD");
            char *reply = zstr_recv (edge);
            zstr_free (&reply);
            zstr_send (core, "RELOAD");
            reply = zstr_recv (core);
            zstr_free (&reply);
        }
        else {
            log_event ("stopping", "signal=%s", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            rc = 0;
            break;
        }
    }
done:
    zactor_destroy (&edge);
    zactor_destroy (&core);
    unlink (ready);
    if (sfd >= 0)
        close (sfd);
    config_destroy (&cfg);
    if (rc != 0)
        fprintf (stderr, "liaisond: could not start; see the events above\n");
    return rc;
}
