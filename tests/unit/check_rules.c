/*  The routing policy module (placeholder until its unit tests land; the
    policy suite tests it through a real broker meanwhile).                */
#include "suites.h"

#include "rules.h"

START_TEST (test_rules_minimal)
{
    static const char text[] = "contact DE = de-bka\nallow type case-lead\n";
    rules_t *r = rules_parse ("t.rules", text, sizeof text - 1, NULL, NULL);
    ck_assert_ptr_nonnull (r);
    rules_query_t q = {"fr-pn", "de-bka", 4, 0, 3, 1, 0, 0, "", false};
    rules_decision_t d;
    rules_decide (r, &q, &d);
    ck_assert (d.allow);
    ck_assert_int_eq (d.line, 2);
    q.type = 1;
    rules_decide (r, &q, &d);
    ck_assert (!d.allow);
    ck_assert_int_eq (d.line, 0);
    rules_destroy (&r);
}
END_TEST

Suite *
rules_suite (void)
{
    Suite *s = suite_create ("rules");
    TCase *tc = tcase_create ("minimal");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_rules_minimal);
    suite_add_tcase (s, tc);
    return s;
}
