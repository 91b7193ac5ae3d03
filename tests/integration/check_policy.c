/*  Integration tests of the routing policy: a real broker with
    tests/integration/test.rules decides, resolves, requires copies,
    refuses stale recipient lists, and reloads on SIGHUP.                  */
#include "harness.h"
#include "suites.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// Line numbers in tests/integration/test.rules.
#define LINE_DENY_ES_IT 10
#define LINE_COPY_FR_PN 12
#define LINE_ALLOW 15

static liaison_message_t *
s_msg (liaison_type_t type, liaison_recipient_kind_t kind, const char *to)
{
    liaison_message_t *m = liaison_message_new (type);
    ck_assert_int_eq (liaison_message_add_recipient (m, kind, to), LIAISON_OK);
    liaison_message_set_body (m, "policy", 6);
    return m;
}

// "FILE:LINE" for a line of the broker's rules file.
static const char *
s_at (broker_t *b, int line)
{
    static char buf[400];
    snprintf (buf, sizeof buf, "%s:%d", b->rules, line);
    return buf;
}


static void
s_expect_delivery (liaison_t *l, const liaison_message_t *sent)
{
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (l, &got, 5000), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (sent), LIAISON_ID_LEN);
    liaison_message_destroy (&got);
}

START_TEST (test_policy_denies_with_rule)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *it = harness_session (&b, "it-ps", 1);
    liaison_t *es = harness_session (&b, "es-cnp", 0);
    liaison_message_t *m = s_msg (LIAISON_CASE_LEAD, LIAISON_TO_NODE, "it-ps");
    ck_assert_int_eq (liaison_send (es, m, 0), LIAISON_EDENIED);
    harness_expect_rejected (es, NULL, "it-ps", "denied", s_at (&b, LINE_DENY_ES_IT));
    // The same pair, another type: allowed by the last rule.
    liaison_message_t *ok = s_msg (LIAISON_MLA_REQUEST, LIAISON_TO_NODE, "it-ps");
    ck_assert_int_eq (liaison_send (es, ok, 0), LIAISON_OK);
    s_expect_delivery (it, ok);
    // Nothing of the denied message reached it-ps.
    liaison_message_t *none = NULL;
    ck_assert_int_eq (liaison_recv (it, &none, 200), LIAISON_ETIMEOUT);
    liaison_message_destroy (&m);
    liaison_message_destroy (&ok);
    liaison_close (&es);
    liaison_close (&it);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_policy_jurisdiction_and_group_addresses)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *it = harness_session (&b, "it-ps", 1);
    liaison_t *fr = harness_session (&b, "fr-pn", 1);
    liaison_t *de = harness_session (&b, "de-bka", 0);
    // A jurisdiction address reaches its contact point.
    liaison_message_t *m = s_msg (LIAISON_CASE_LEAD, LIAISON_TO_JURISDICTION, "IT");
    ck_assert_int_eq (liaison_send (de, m, 0), LIAISON_OK);
    s_expect_delivery (it, m);
    liaison_message_destroy (&m);
    // A group: every member's contact points but the sender; the offline
    // ones (fr-gn, es-cnp) are accepted too and get it when they connect.
    m = s_msg (LIAISON_CASE_LEAD, LIAISON_TO_GROUP, "eu");
    liaison_resolution_t *res = NULL;
    ck_assert_int_eq (liaison_resolve (de, m, &res), LIAISON_OK);
    ck_assert_uint_eq (liaison_resolution_count (res), 4);
    for (size_t i = 0; i < 4; i++) {
        ck_assert (liaison_resolution_allowed (res, i));
        ck_assert_str_eq (liaison_resolution_address (res, i), "eu");
        ck_assert_str_ne (liaison_resolution_node (res, i), "de-bka");
        ck_assert_str_eq (liaison_resolution_rule (res, i), s_at (&b, LINE_ALLOW));
    }
    ck_assert_uint_eq (strlen (liaison_resolution_rules_hash (res)), 12);
    liaison_resolution_destroy (&res);
    ck_assert_int_eq (liaison_send (de, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (de, 5000), LIAISON_OK);
    s_expect_delivery (it, m);
    s_expect_delivery (fr, m);
    // ACCEPTED for each of the four, DELIVERED from the two online ones;
    // nothing refused.
    const char *nodes[] = {"it-ps", "fr-pn", "fr-gn", "es-cnp"};
    int accepted[4] = {0}, delivered[4] = {0}, total = 0;
    liaison_receipt_t *r;
    while (total < 6 && liaison_next_receipt (de, &r, 5000) == LIAISON_OK) {
        ck_assert_msg (liaison_receipt_status (r) != LIAISON_REJECTED, "rejected %s: %s",
                       liaison_receipt_recipient (r), liaison_receipt_reason (r));
        if (memcmp (liaison_receipt_id (r), liaison_message_id (m), LIAISON_ID_LEN) != 0) {
            liaison_receipt_destroy (&r);  // the first message's ACCEPTED and DELIVERED
            continue;
        }
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp (liaison_receipt_recipient (r), nodes[i]) == 0)
                k = i;
        ck_assert_msg (k >= 0, "receipt for %s", liaison_receipt_recipient (r));
        if (liaison_receipt_status (r) == LIAISON_ACCEPTED)
            accepted[k]++;
        else if (liaison_receipt_status (r) == LIAISON_DELIVERED)
            delivered[k]++;
        else
            ck_abort_msg ("%s for %s: %s", liaison_status_name (liaison_receipt_status (r)),
                          nodes[k], liaison_receipt_reason (r));
        total++;
        liaison_receipt_destroy (&r);
    }
    ck_assert_int_eq (total, 6);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq (accepted[i], 1);
        ck_assert_int_eq (delivered[i], i < 2);
    }
    // An offline member comes online and gets it.
    liaison_t *es = harness_session (&b, "es-cnp", 1);
    s_expect_delivery (es, m);
    liaison_close (&es);
    liaison_message_destroy (&m);
    liaison_close (&de);
    liaison_close (&fr);
    liaison_close (&it);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_policy_required_copy)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = harness_session (&b, "de-bka", 1);
    liaison_t *pn = harness_session (&b, "fr-pn", 1);
    liaison_t *gn = harness_session (&b, "fr-gn", 0);
    liaison_message_t *m = s_msg (LIAISON_MLA_REQUEST, LIAISON_TO_NODE, "de-bka");
    liaison_resolution_t *res = NULL;
    ck_assert_int_eq (liaison_resolve (gn, m, &res), LIAISON_OK);
    ck_assert_uint_eq (liaison_resolution_count (res), 2);
    ck_assert_str_eq (liaison_resolution_node (res, 1), "fr-pn");
    ck_assert_str_eq (liaison_resolution_reason (res, 1), "required-copy");
    ck_assert_str_eq (liaison_resolution_rule (res, 1), s_at (&b, LINE_COPY_FR_PN));
    liaison_resolution_destroy (&res);
    ck_assert_int_eq (liaison_send (gn, m, 0), LIAISON_OK);
    s_expect_delivery (de, m);
    s_expect_delivery (pn, m);
    // A domestic request needs no copy.
    liaison_message_t *dom = s_msg (LIAISON_MLA_REQUEST, LIAISON_TO_NODE, "fr-pn");
    ck_assert_int_eq (liaison_resolve (gn, dom, &res), LIAISON_OK);
    ck_assert_uint_eq (liaison_resolution_count (res), 1);
    liaison_resolution_destroy (&res);
    liaison_message_destroy (&dom);
    liaison_message_destroy (&m);
    liaison_close (&gn);
    liaison_close (&pn);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_policy_handling_restricts_addressing)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = harness_session (&b, "de-bka", 0);
    liaison_message_t *m = s_msg (LIAISON_CASE_LEAD, LIAISON_TO_GROUP, "eu");
    liaison_message_set_tlp (m, LIAISON_TLP_RED);
    ck_assert_int_eq (liaison_send (de, m, 0), LIAISON_EDENIED);
    harness_expect_rejected (de, NULL, "eu", "handling-restricts-addressing", NULL);
    liaison_message_destroy (&m);
    m = s_msg (LIAISON_CASE_LEAD, LIAISON_TO_JURISDICTION, "IT");
    liaison_message_set_handling (m, LIAISON_H2, NULL);
    ck_assert_int_eq (liaison_send (de, m, 0), LIAISON_EDENIED);
    harness_expect_rejected (de, NULL, "IT", "handling-restricts-addressing", NULL);
    liaison_message_destroy (&m);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// A raw Submit whose recipients do not match the rules is refused whole.
static void
s_raw_submit (raw_t *r, const char *to, int kind, int type)
{
    static uint8_t id[16] = {9, 9, 9};
    id[3]++;
    Liaison__Recipient rcpt = LIAISON__RECIPIENT__INIT;
    rcpt.kind = (Liaison__RecipientKind) kind;
    rcpt.name = (char *) to;
    Liaison__Recipient *rcpts[] = {&rcpt};
    Liaison__Envelope env = LIAISON__ENVELOPE__INIT;
    env.id.data = id;
    env.id.len = 16;
    env.n_recipients = 1;
    env.recipients = rcpts;
    env.type = (Liaison__MessageType) type;
    env.tlp = LIAISON__TLP__TLP_GREEN;
    env.handling = LIAISON__HANDLING_CODE__H0;
    Liaison__Submit sub = LIAISON__SUBMIT__INIT;
    sub.envelope = &env;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_SUBMIT;
    f.submit = &sub;
    ck_assert_int_eq (raw_send_frame (r, &f), 0);
}

static Liaison__Frame *
s_raw_receipt (raw_t *r)
{
    for (;;) {
        Liaison__Frame *f = raw_read_frame (r, 5000, NULL);
        ck_assert_ptr_nonnull (f);
        if (f->kind_case == LIAISON__FRAME__KIND_RECEIPT)
            return f;
        liaison__frame__free_unpacked (f, NULL);
    }
}

START_TEST (test_policy_stale_recipients_refused)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/fr-gn"), 0);
    ck_assert_int_eq (raw_hello (&r), 0);
    // The required copy to fr-pn is missing.
    s_raw_submit (&r, "de-bka", LIAISON__RECIPIENT_KIND__NODE, LIAISON__MESSAGE_TYPE__MLA_REQUEST);
    int seen_copy = 0;
    for (int i = 0; i < 2; i++) {
        Liaison__Frame *f = s_raw_receipt (&r);
        ck_assert_str_eq (f->receipt->reason, "recipients-changed");
        ck_assert_uint_eq (strlen (f->receipt->rules_hash), 12);
        if (strcmp (f->receipt->recipient, "fr-pn") == 0) {
            seen_copy = 1;
            ck_assert_str_eq (f->receipt->rule, s_at (&b, LINE_COPY_FR_PN));
        }
        liaison__frame__free_unpacked (f, NULL);
    }
    ck_assert (seen_copy);
    // An address a Submit may not carry: it must be resolved first.
    s_raw_submit (&r, "IT", LIAISON__RECIPIENT_KIND__JURISDICTION, LIAISON__MESSAGE_TYPE__CASE_LEAD);
    Liaison__Frame *f = s_raw_receipt (&r);
    ck_assert_str_eq (f->receipt->reason, "recipients-changed");
    liaison__frame__free_unpacked (f, NULL);
    raw_close (&r);
    ck_assert (harness_log_wait (&b, "reason=recipients-changed", 0, 2000));
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_policy_reload_and_resolve_again)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = harness_session (&b, "de-bka", 1);
    liaison_t *it = harness_session (&b, "it-ps", 1);
    liaison_t *pn = harness_session (&b, "fr-pn", 0);
    liaison_message_t *m1 = s_msg (LIAISON_MLA_REQUEST, LIAISON_TO_NODE, "de-bka");
    ck_assert_int_eq (liaison_send (pn, m1, 0), LIAISON_OK);  // resolution remembered
    s_expect_delivery (de, m1);
    // New rules: every MLA request of fr-pn is copied to it-ps.
    FILE *f = fopen (b.rules, "a");
    ck_assert_ptr_nonnull (f);
    fprintf (f, "copy it-ps from fr-pn type mla-request\n");
    fclose (f);
    size_t from = harness_log_size (&b);
    harness_signal (&b, SIGHUP);
    ck_assert (harness_log_wait (&b, "event=rules-reloaded", from, 5000));
    // The library's remembered resolution is stale: the broker refuses the
    // Submit as recipients-changed, the library resolves and sends again.
    liaison_message_t *m2 = s_msg (LIAISON_MLA_REQUEST, LIAISON_TO_NODE, "de-bka");
    ck_assert_int_eq (liaison_send (pn, m2, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (pn, 5000), LIAISON_OK);
    s_expect_delivery (de, m2);
    s_expect_delivery (it, m2);
    // The refusal was the library's business, not the application's: m2
    // is ACCEPTED for de-bka and the new copy it-ps, and nothing is REJECTED.
    int m2_accepted = 0;
    liaison_receipt_t *r = NULL;
    ck_assert_int_eq (liaison_flush (pn, 5000), LIAISON_OK);
    while (liaison_next_receipt (pn, &r, 0) == LIAISON_OK) {
        ck_assert_msg (liaison_receipt_status (r) != LIAISON_REJECTED, "rejected %s: %s",
                       liaison_receipt_recipient (r), liaison_receipt_reason (r));
        if (liaison_receipt_status (r) == LIAISON_ACCEPTED
            && memcmp (liaison_receipt_id (r), liaison_message_id (m2), LIAISON_ID_LEN) == 0)
            m2_accepted++;
        liaison_receipt_destroy (&r);
    }
    ck_assert_int_eq (m2_accepted, 2);
    ck_assert (harness_log_wait (&b, "reason=recipients-changed", from, 1000));
    // A file that does not load changes nothing.
    f = fopen (b.rules, "a");
    fprintf (f, "allow from nowhere-land\n");
    fclose (f);
    from = harness_log_size (&b);
    harness_signal (&b, SIGHUP);
    ck_assert (harness_log_wait (&b, "event=rules-reload-failed", from, 5000));
    ck_assert (harness_log_wait (&b, "event=rules-error", from, 1000));
    liaison_message_t *m3 = s_msg (LIAISON_MLA_REQUEST, LIAISON_TO_NODE, "de-bka");
    ck_assert_int_eq (liaison_send (pn, m3, 0), LIAISON_OK);
    s_expect_delivery (de, m3);
    s_expect_delivery (it, m3);  // the copy rule of the good reload still holds
    liaison_message_destroy (&m1);
    liaison_message_destroy (&m2);
    liaison_message_destroy (&m3);
    liaison_close (&pn);
    liaison_close (&it);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// Runs a command, capturing output; returns its exit status.
static int
s_cmd (char *out, size_t len, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (cmd, sizeof cmd, fmt, ap);
    va_end (ap);
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    size_t n = fread (out, 1, len - 1, p);
    out[n] = 0;
    int st = pclose (p);
    return WIFEXITED (st) ? WEXITSTATUS (st) : -1;
}

START_TEST (test_check_rules_and_explain)
{
    char out[8192];
    const char *bin = harness_build ();
    const char *rules = "tests/integration/test.rules";
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond check-rules %s 2>&1", bin, rules), 0);
    ck_assert_msg (strstr (out, "valid") != NULL, "%s", out);
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond check-rules deploy/liaison.rules 2>&1",
                             bin), 0);
    // A broken file: exit 2 and FILE:LINE for each error.
    ck_assert_int_eq (system ("printf 'group eu = FR\\nallow from mars\\nfrobnicate\\n' "
                              "> /tmp/liaison-bad.rules"), 0);
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond check-rules /tmp/liaison-bad.rules 2>&1",
                             bin), 2);
    ck_assert_msg (strstr (out, "/tmp/liaison-bad.rules:2: ") != NULL, "%s", out);
    ck_assert_msg (strstr (out, "/tmp/liaison-bad.rules:3: ") != NULL, "%s", out);
    unlink ("/tmp/liaison-bad.rules");
    // explain: allow (0), deny by a rule (1), deny by default (1).
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond explain --rules %s --from fr-pn --to "
                             "de-bka --type mla-request 2>&1", bin, rules), 0);
    ck_assert_str_eq (out, "allow tests/integration/test.rules:15\n");
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond explain --rules %s --from es-cnp --to "
                             "it-ps --type case-lead 2>&1", bin, rules), 1);
    ck_assert_str_eq (out, "deny tests/integration/test.rules:10\n");
    ck_assert_int_eq (system ("printf 'contact DE = de-bka\\nallow type case-lead\\n' "
                              "> /tmp/liaison-narrow.rules"), 0);
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond explain --rules /tmp/liaison-narrow.rules "
                             "--from fr-pn --to de-bka --type mla-request 2>&1", bin), 1);
    ck_assert_str_eq (out, "deny default\n");
    // A jurisdiction address: one line per contact point, with the node.
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond explain --rules /tmp/liaison-narrow.rules "
                             "--from fr-pn --to DE --type case-lead 2>&1", bin), 0);
    ck_assert_str_eq (out, "allow /tmp/liaison-narrow.rules:2 de-bka\n");
    unlink ("/tmp/liaison-narrow.rules");
    // Required copies are listed after the decision.
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond explain --rules %s --from fr-gn --to "
                             "de-bka --type mla-request 2>&1", bin, rules), 0);
    ck_assert_str_eq (out, "allow tests/integration/test.rules:15\n"
                           "copy fr-pn tests/integration/test.rules:12\n");
    // Usage errors: 2.
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond explain --rules %s --from fr-pn 2>&1",
                             bin, rules), 2);
    ck_assert_int_eq (s_cmd (out, sizeof out, "%s/liaisond explain --rules %s --from fr-pn --to "
                             "de-bka --type bogus 2>&1", bin, rules), 2);
}
END_TEST

START_TEST (test_cli_resolve)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    char out[8192];
    ck_assert_int_eq (s_cmd (out, sizeof out,
                             "LIAISON_ENDPOINT='%s' LIAISON_CERT='%s/nodes/es-cnp/node.pem' "
                             "LIAISON_KEY='%s/nodes/es-cnp/node.key' LIAISON_CA='%s/root/ca.pem' "
                             "LIAISON_HUB_CA='%s/hub/ca.pem' %s/liaison resolve --to eu "
                             "--type case-lead 2>&1",
                             b.endpoint, b.pki, b.pki, b.pki, b.pki, harness_build ()), 3);
    char want[512];
    snprintf (want, sizeof want, "deny it-ps via eu: %s\n", s_at (&b, LINE_DENY_ES_IT));
    ck_assert_msg (strstr (out, want) != NULL, "%s", out);
    snprintf (want, sizeof want, "allow de-bka via eu: %s\n", s_at (&b, LINE_ALLOW));
    ck_assert_msg (strstr (out, want) != NULL, "%s", out);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

Suite *
policy_suite (void)
{
    Suite *s = suite_create ("policy");
    TCase *tc = tcase_create ("broker");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_policy_denies_with_rule);
    tcase_add_test (tc, test_policy_jurisdiction_and_group_addresses);
    tcase_add_test (tc, test_policy_required_copy);
    tcase_add_test (tc, test_policy_handling_restricts_addressing);
    tcase_add_test (tc, test_policy_stale_recipients_refused);
    tcase_add_test (tc, test_policy_reload_and_resolve_again);
    tcase_add_test (tc, test_cli_resolve);
    suite_add_tcase (s, tc);
    tc = tcase_create ("commands");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_check_rules_and_explain);
    suite_add_tcase (s, tc);
    return s;
}
