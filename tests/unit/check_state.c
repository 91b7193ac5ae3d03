/*  Placeholder: the state suite is being written.                          */
#include "suites.h"

Suite *
state_suite (void)
{
    return suite_create ("state");
}
