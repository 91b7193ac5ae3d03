/*  libFuzzer target: the routing rules parser.                            */
#include <stddef.h>
#include <stdint.h>

#include "rules.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    rules_t *r = rules_parse ("fuzz.rules", (const char *) data, size, NULL, NULL);
    if (r) {
        rules_query_t q = {"fr-pn", "de-bka", 1, 0, 3, 1, 0, 0, "eio", false};
        rules_decision_t d;
        rules_decide (r, &q, &d);
        rules_destroy (&r);
    }
    return 0;
}
