/*  The ZMQ_STREAM connection table (placeholder until its tests land).     */
#include "suites.h"

#include "conn.h"

START_TEST (test_conn_clock)
{
    int64_t a = wire_clock_ms ();
    int64_t b = wire_clock_ms ();
    ck_assert_int_ge (b, a);
    ck_assert_int_gt (wire_time_ms (), 1700000000000LL);
}
END_TEST

Suite *
conn_suite (void)
{
    Suite *s = suite_create ("conn");
    TCase *tc = tcase_create ("clock");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_conn_clock);
    suite_add_tcase (s, tc);
    return s;
}
