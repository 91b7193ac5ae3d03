/*  liaison: the command-line client for liaison officers.                  */
#include "cli.h"

#include <string.h>

static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: liaison COMMAND [FLAGS]\n"
             "commands:\n"
             "  send     send a message (MLA request or reply, case lead, evidence handoff)\n"
             "  recv     receive messages for this node\n"
             "  resolve  show which nodes may receive a message, under the broker's rules\n"
             "  trail    the receipts of a message this node sent\n"
             "  mailbox  the messages waiting for this node at the broker\n"
             "  fetch    show one message of the mailbox without taking delivery\n"
             "  deadlines  the legal deadlines this node is party to\n"
             "  help     this text; 'liaison COMMAND --help' for a command\n"
             "exit codes: 0 ok, 1 failure, 2 usage, 3 rejected by the broker (or not found,\n"
             "            or a signature that does not verify), 4 timed out\n");
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        s_usage (stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp (cmd, "send"))
        return cmd_send (argc - 1, argv + 1);
    if (!strcmp (cmd, "recv"))
        return cmd_recv (argc - 1, argv + 1);
    if (!strcmp (cmd, "resolve"))
        return cmd_resolve (argc - 1, argv + 1);
    if (!strcmp (cmd, "trail"))
        return cmd_trail (argc - 1, argv + 1);
    if (!strcmp (cmd, "mailbox"))
        return cmd_mailbox (argc - 1, argv + 1);
    if (!strcmp (cmd, "fetch"))
        return cmd_fetch (argc - 1, argv + 1);
    if (!strcmp (cmd, "deadlines"))
        return cmd_deadlines (argc - 1, argv + 1);
    if (!strcmp (cmd, "help") || !strcmp (cmd, "--help") || !strcmp (cmd, "-h")) {
        s_usage (stdout);
        return CLI_OK;
    }
    if (!strcmp (cmd, "--version")) {
        printf ("liaison 0.1.0\n");
        return CLI_OK;
    }
    fprintf (stderr, "liaison: unknown command '%s'\n", cmd);
    s_usage (stderr);
    return CLI_USAGE;
}
