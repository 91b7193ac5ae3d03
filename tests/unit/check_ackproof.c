/*  Placeholder: the ackproof suite is being written.                          */
#include "suites.h"

Suite *
ackproof_suite (void)
{
    return suite_create ("ackproof");
}
