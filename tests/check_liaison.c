/*  The test runner: every suite, in Check's fork mode. Set LIAISON_PKI to
    the test PKI (make test does) and LIAISON_BUILD to the build directory.
    CK_RUN_SUITE / CK_RUN_CASE select a subset, as in Check.                */
#include "suites.h"

#include <stdlib.h>

int
main (void)
{
    SRunner *sr = srunner_create (frame_suite ());
    srunner_add_suite (sr, conn_suite ());
    srunner_add_suite (sr, codec_suite ());
    srunner_add_suite (sr, tls_suite ());
    srunner_add_suite (sr, config_suite ());
    srunner_add_suite (sr, rules_suite ());
    srunner_add_suite (sr, store_suite ());
    srunner_add_suite (sr, message_suite ());
    srunner_add_suite (sr, state_suite ());
    srunner_add_suite (sr, ackproof_suite ());
    srunner_add_suite (sr, broker_suite ());
    srunner_add_suite (sr, cli_suite ());
    srunner_add_suite (sr, policy_suite ());
    srunner_add_suite (sr, durable_suite ());
    srunner_set_fork_status (sr, CK_FORK);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
