/*  Every Check suite of the test runner. Unit suites test one module;
    integration suites start a real liaisond with the test PKI.             */
#ifndef LIAISON_TEST_SUITES_H
#define LIAISON_TEST_SUITES_H

#include <check.h>

Suite *frame_suite (void);
Suite *conn_suite (void);
Suite *codec_suite (void);
Suite *rules_suite (void);
Suite *tls_suite (void);
Suite *config_suite (void);
Suite *store_suite (void);
Suite *message_suite (void);
Suite *state_suite (void);
Suite *ackproof_suite (void);
Suite *broker_suite (void);
Suite *cli_suite (void);
Suite *policy_suite (void);
Suite *durable_suite (void);

#endif
