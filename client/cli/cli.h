/*  The liaison command-line client: shared helpers for the commands.      */
#ifndef LIAISON_CLI_H
#define LIAISON_CLI_H

#include <stdio.h>

#include "liaison.h"

/* Exit codes, documented in README. */
enum {
    CLI_OK = 0,
    CLI_FAIL = 1,      /* connection, TLS or broker failure */
    CLI_USAGE = 2,     /* bad command line */
    CLI_REJECTED = 3,  /* the broker refused the message for some recipient */
    CLI_TIMEOUT = 4    /* nothing arrived in time */
};

/* Connection options gathered from flags and LIAISON_* variables. */
typedef struct {
    liaison_options_t opts;
    int json;
    char state_buf[4096];  /* the default state directory, when none is given */
} cli_common_t;

/* Consumes a common flag at argv[*i] (advancing *i past its value).
   Returns 1 if consumed, 0 if not a common flag, -1 on a missing value. */
int cli_common_flag (cli_common_t *c, int argc, char **argv, int *i);

/* Fills unset options from the environment; prints what is missing. */
int cli_common_finish (cli_common_t *c, const char *cmd);

/* Connects or prints why not. NULL on failure. */
liaison_t *cli_connect (cli_common_t *c);

/* Writes s as a JSON string literal. */
void cli_json_string (FILE *out, const char *s, size_t len);

/* A UTC time as 2026-11-22T10:00:00Z, or "-" for 0. */
void cli_time (char *out, size_t len, int64_t ms);

/* Prints a message, as text or one JSON object. */
void cli_print_message (const liaison_message_t *m, int json);

/* Usage text of the common flags. */
extern const char *cli_common_usage;

int cmd_send (int argc, char **argv);
int cmd_trail (int argc, char **argv);
int cmd_mailbox (int argc, char **argv);
int cmd_fetch (int argc, char **argv);
int cmd_deadlines (int argc, char **argv);
int cmd_recv (int argc, char **argv);
int cmd_resolve (int argc, char **argv);

#endif
