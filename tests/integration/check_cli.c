/*  The liaison and liaisond command lines: exit codes and output.          */
#include "harness.h"
#include "store.h"
#include "suites.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// Runs a command with the node's LIAISON_* environment, capturing stdout.
static int
s_run (broker_t *b, const char *node, char *out, size_t outlen, const char *args)
{
    char cmd[4096];
    snprintf (cmd, sizeof cmd,
              "LIAISON_ENDPOINT='%s' LIAISON_CERT='%s/nodes/%s/node.pem' "
              "LIAISON_KEY='%s/nodes/%s/node.key' LIAISON_CA='%s/root/ca.pem' "
              "LIAISON_HUB_CA='%s/hub/ca.pem' LIAISON_STATE_DIR='%s/cli-%s' %s/liaison %s 2>&1",
              b ? b->endpoint : "", b ? b->pki : "", node, b ? b->pki : "", node,
              b ? b->pki : "", b ? b->pki : "", b ? b->dir : "/tmp", node, harness_build (),
              args);
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    size_t n = fread (out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose (p);
    return WIFEXITED (st) ? WEXITSTATUS (st) : -1;
}

START_TEST (test_cli_send_recv_json)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    char cmd[4096], out[8192];
    // A receiver in the background, writing to a file.
    snprintf (cmd, sizeof cmd,
              "LIAISON_ENDPOINT='%s' LIAISON_CERT='%s/nodes/de-bka/node.pem' "
              "LIAISON_KEY='%s/nodes/de-bka/node.key' LIAISON_CA='%s/root/ca.pem' "
              "LIAISON_HUB_CA='%s/hub/ca.pem' LIAISON_STATE_DIR='%s/cli-de-bka' "
              "%s/liaison recv --json --count 1 --wait-ms 8000 "
              "> '%s/recv.out' 2>&1; echo $? > '%s/recv.rc'",
              b.endpoint, b.pki, b.pki, b.pki, b.pki, b.dir, harness_build (), b.dir, b.dir);
    FILE *bg = popen (cmd, "w");
    ck_assert (harness_log_wait (&b, "event=receiver node=de-bka", 0, 5000));
    int rc = s_run (&b, "fr-pn", out, sizeof out,
                    "send --to de-bka --type case-lead --tlp green --handling h1 --basis "
                    "eu-2023-977 --case-ref 'FR \"lead\" 7' --body 'IBAN FR76 3000' --json");
    ck_assert_msg (rc == 0, "send exit %d: %s", rc, out);
    // Durable at the broker: accepted for de-bka, nothing refused.
    ck_assert_msg (strstr (out, "{\"recipient\":\"de-bka\",\"status\":\"accepted\"") != NULL,
                   "%s", out);
    ck_assert_msg (strstr (out, "rejected") == NULL, "%s", out);
    pclose (bg);
    char path[400];
    snprintf (path, sizeof path, "%s/recv.out", b.dir);
    FILE *f = fopen (path, "r");
    ck_assert_ptr_nonnull (f);
    size_t n = fread (out, 1, sizeof out - 1, f);
    out[n] = 0;
    fclose (f);
    ck_assert_msg (strstr (out, "\"sender\":\"fr-pn\"") != NULL, "%s", out);
    ck_assert_msg (strstr (out, "\"type\":\"case-lead\"") != NULL, "%s", out);
    ck_assert_msg (strstr (out, "\"tlp\":\"green\"") != NULL, "%s", out);
    ck_assert_msg (strstr (out, "\"handling\":\"h1\"") != NULL, "%s", out);
    ck_assert_msg (strstr (out, "\"case_ref\":\"FR \\\"lead\\\" 7\"") != NULL, "%s", out);
    ck_assert_msg (strstr (out, "\"body\":\"IBAN FR76 3000\"") != NULL, "%s", out);
    snprintf (path, sizeof path, "%s/recv.rc", b.dir);
    f = fopen (path, "r");
    ck_assert_ptr_nonnull (f);
    ck_assert_int_eq (fgetc (f), '0');
    fclose (f);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_cli_exit_codes)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    char out[8192];
    // A recipient that is offline is no refusal: accepted, 0.
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "send --to it-ps --body x"), 0);
    ck_assert_msg (strstr (out, "accepted it-ps\n") != NULL, "%s", out);
    // Rejected by the broker: 3, with the reason (a claimed sender that is
    // not the certificate's).
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out,
                             "send --to it-ps --sender de-bka --body x"), 3);
    ck_assert_msg (strstr (out, "rejected it-ps: sender-mismatch") != NULL, "%s", out);
    // Refused by the policy: 3, with the rule.
    ck_assert_int_eq (s_run (&b, "es-cnp", out, sizeof out,
                             "send --to it-ps --type case-lead --body x"), 3);
    ck_assert_msg (strstr (out, "rejected it-ps: denied (") != NULL, "%s", out);
    // No such message in the trail: 3.
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out,
                             "trail 000102030405060708090a0b0c0d0e0f"), 3);
    // Usage errors: 2.
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "send --body x"), 2);
    ck_assert (strstr (out, "--to") != NULL);
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "send --to 'not an address!'"), 2);
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "send --to de-bka --tlp purple"), 2);
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "send --to de-bka --bogus"), 2);
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "send --to de-bka --type mla-reply"), 2);
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "frobnicate"), 2);
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "send --help"), 0);
    ck_assert (strstr (out, "--deadline-in") != NULL);
    // Nothing to receive: 4.
    ck_assert_int_eq (s_run (&b, "de-bka", out, sizeof out, "recv --wait-ms 300"), 4);
    // A node the broker refuses: 1.
    char args[2100];
    snprintf (args, sizeof args, "send --cert '%s/bad/revoked/node.pem' --key '%s/bad/revoked/node.key' --to de-bka --body x",
              b.pki, b.pki);
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, args), 1);
    ck_assert_msg (strstr (out, "refused this node's certificate") != NULL, "%s", out);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// An officer's look at the mailbox and the trail: mailbox and fetch show a
// waiting message without taking it, deadlines shows its clock, recv
// --read takes it, and trail shows accepted, delivered and read, each
// signature verified against the PKI.
START_TEST (test_cli_mailbox_fetch_trail)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    char out[8192], args[1024];
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out,
                             "send --to it-ps --deadline 3d --body 'subscriber data' --json"),
                      0);
    char id[33] = "";
    const char *p = strstr (out, "\"id\":\"");
    ck_assert_ptr_nonnull (p);
    memcpy (id, p + 6, 32);
    ck_assert_int_eq (s_run (&b, "it-ps", out, sizeof out, "mailbox --json"), 0);
    ck_assert_msg (strstr (out, id) && strstr (out, "\"sender\":\"fr-pn\""), "%s", out);
    snprintf (args, sizeof args, "fetch fr-pn %s", id);
    ck_assert_int_eq (s_run (&b, "it-ps", out, sizeof out, args), 0);
    ck_assert_msg (strstr (out, "subscriber data") != NULL, "%s", out);
    snprintf (args, sizeof args, "fetch fr-pn %s", id);
    ck_assert_int_eq (s_run (&b, "de-bka", out, sizeof out, args), 3);  // not de-bka's
    ck_assert_int_eq (s_run (&b, "fr-pn", out, sizeof out, "deadlines"), 0);
    ck_assert_msg (strstr (out, id) && strstr (out, "open"), "%s", out);
    ck_assert_int_eq (s_run (&b, "it-ps", out, sizeof out, "recv --count 1 --wait-ms 5000 --read"),
                      0);
    ck_assert_msg (strstr (out, "subscriber data") != NULL, "%s", out);
    ck_assert_int_eq (s_run (&b, "it-ps", out, sizeof out, "mailbox"), 0);
    ck_assert_msg (strstr (out, id) == NULL, "still listed after delivery: %s", out);
    snprintf (args, sizeof args, "trail %s --verify-dir '%s/nodes'", id, b.pki);
    int rc = -1;
    for (int i = 0; i < 50 && !strstr (out, "read it-ps"); i++) {
        rc = s_run (&b, "fr-pn", out, sizeof out, args);
        if (!strstr (out, "read it-ps"))
            usleep (100000);
    }
    ck_assert_int_eq (rc, 0);
    ck_assert_msg (strstr (out, "accepted it-ps") && strstr (out, "delivered it-ps verified")
                       && strstr (out, "read it-ps verified"),
                   "%s", out);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_cli_missing_environment)
{
    char out[4096];
    FILE *p = popen ("env -u LIAISON_ENDPOINT build/liaison send --to de-bka --body x 2>&1; echo rc=$?", "r");
    ck_assert_ptr_nonnull (p);
    size_t n = fread (out, 1, sizeof out - 1, p);
    out[n] = 0;
    pclose (p);
    ck_assert_msg (strstr (out, "--endpoint is required (or set LIAISON_ENDPOINT)") != NULL, "%s", out);
    ck_assert (strstr (out, "rc=2") != NULL);
}
END_TEST

START_TEST (test_liaisond_usage)
{
    char cmd[512];
    snprintf (cmd, sizeof cmd, "%s/liaisond --help >/dev/null", harness_build ());
    ck_assert_int_eq (harness_sh ("%s", cmd), 0);
    snprintf (cmd, sizeof cmd, "%s/liaisond 2>/dev/null", harness_build ());
    ck_assert_int_eq (harness_sh ("%s", cmd), 2);
    snprintf (cmd, sizeof cmd, "%s/liaisond -c /nonexistent.cfg 2>/dev/null", harness_build ());
    ck_assert_int_eq (harness_sh ("%s", cmd), 2);
}
END_TEST

START_TEST (test_liaisond_store_check)
{
    char dir[] = "/tmp/liaison-storecheck-XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    char path[128], err[256];
    snprintf (path, sizeof path, "%s/liaison.db", dir);
    store_config_t cfg = {path, 0, 0};
    store_t *st = store_open (&cfg, err, sizeof err);
    ck_assert_msg (st != NULL, "%s", err);
    store_close (&st);
    ck_assert_int_eq (harness_sh ("%s/liaisond store-check '%s' >/dev/null", harness_build (), path), 0);
    // Not a database at all: 2 (cannot open), never a crash.
    ck_assert_int_eq (harness_sh ("%s/liaisond store-check /nonexistent.db >/dev/null", harness_build ()), 2);
    ck_assert_int_eq (harness_sh ("%s/liaisond store-check >/dev/null 2>&1", harness_build ()), 2);
    harness_sh ("rm -rf '%s'", dir);
}
END_TEST

Suite *
cli_suite (void)
{
    Suite *s = suite_create ("cli");
    TCase *tc = tcase_create ("commands");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_cli_send_recv_json);
    tcase_add_test (tc, test_cli_exit_codes);
    tcase_add_test (tc, test_cli_mailbox_fetch_trail);
    tcase_add_test (tc, test_cli_missing_environment);
    tcase_add_test (tc, test_liaisond_usage);
    tcase_add_test (tc, test_liaisond_store_check);
    suite_add_tcase (s, tc);
    return s;
}
