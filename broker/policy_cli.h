/*  liaisond's policy subcommands (check-rules, explain).                   */
#ifndef LIAISON_POLICY_CLI_H
#define LIAISON_POLICY_CLI_H

/* liaisond check-rules FILE: 0 valid, 2 invalid (errors on stderr as
   FILE:LINE: message). argv[0] is "check-rules". */
int policy_check_rules (int argc, char **argv);

/* liaisond explain ...: prints the decision; 0 allow, 1 deny, 2 usage or
   rules error. argv[0] is "explain". */
int policy_explain (int argc, char **argv);

#endif
