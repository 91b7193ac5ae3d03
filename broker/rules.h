/*  Routing policy: the rules file, compiled at load, and the decisions.

    A rules file is line-oriented (see README, "Routing rules"). It defines
    groups of jurisdictions, legal instruments between jurisdictions,
    contact points for jurisdiction addresses, and rules. Allow and deny
    rules are tried in file order, the first that matches decides, and
    nothing matched means deny ("deny default"). Copy rules are separate:
    every copy rule matching an allowed (sender, recipient) pair requires its
    node as an extra recipient.

    Rules are compiled into per-dimension bitsets over the rule list, so a
    decision is a handful of word-wide ANDs, not a scan of the file. A loaded
    rules_t is immutable and may be shared read-only between threads.       */
#ifndef LIAISON_RULES_H
#define LIAISON_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RULES_MAX_FILE (16u * 1024 * 1024)
#define RULES_MAX_LINE 4096

typedef struct rules rules_t;

/* Called once per problem found while loading: `line` is 0 for problems of
   the file as a whole. Loading goes on after an error to report them all. */
typedef void (rules_error_fn) (void *arg, const char *file, int line, const char *message);

/* Loads and compiles a rules file. Returns NULL if there was any error
   (each reported through fn, which may be NULL). Caller owns the result. */
rules_t *rules_load (const char *path, rules_error_fn *fn, void *arg);

/* The same from memory; `name` is used in messages and explanations. */
rules_t *rules_parse (const char *name, const char *text, size_t size, rules_error_fn *fn,
                      void *arg);

/* NULL-safe; sets *self_p to NULL. */
void rules_destroy (rules_t **self_p);

/* What a decision is about. Strings are borrowed. Enum values are those of
   liaison.proto (LIAISON__MESSAGE_TYPE__*, LIAISON__PRIORITY__*, ...). */
typedef struct {
    const char *sender;     /* node id of the sender (from its certificate) */
    const char *recipient;  /* node id of one recipient */
    int type;               /* 1..4: mla-request, mla-reply, evidence-handoff, case-lead */
    int priority;           /* 0..2: routine, urgent, emergency */
    int tlp;                /* 1..5: clear, green, amber, amber+strict, red */
    int handling;           /* 1..4: h0..h3 */
    char source;            /* evaluation: 'A', 'B', 'C', 'X', or 0 when none */
    int accuracy;           /* evaluation: 1..4, or 0 when none */
    const char *basis;      /* legal basis as the envelope names it; "" for none */
    bool reply;             /* the message replies to an earlier one */
} rules_query_t;

typedef struct {
    bool allow;
    int line;               /* line of the deciding rule; 0 for the default */
} rules_decision_t;

/* Decides one (message, recipient) pair. Never fails: malformed queries
   (unknown enum values, a node id without a country) are denied by
   default. */
void rules_decide (const rules_t *self, const rules_query_t *q, rules_decision_t *out);

/* Calls fn for every node an address stands for: a node id stands for
   itself; a jurisdiction code (kind 2) for its contact points; a group
   (kind 3) for the contact points of its member jurisdictions. The sender
   itself is never included. Kinds are LIAISON__RECIPIENT_KIND__*. Returns
   the number of nodes, or -1 if the address is unknown (a group that is
   not defined) — a jurisdiction without contact points gives 0. */
int rules_expand (const rules_t *self, int kind, const char *name, const char *sender,
                  void (*fn) (void *arg, const char *node), void *arg);

/* Calls fn for every copy required by copy rules matching the query (an
   allowed pair), with the rule's line. The sender and q->recipient are
   never required copies of themselves. Returns the number of calls. */
int rules_copies (const rules_t *self, const rules_query_t *q,
                  void (*fn) (void *arg, const char *node, int line), void *arg);

/* The file name given at load (for FILE:LINE in explanations). */
const char *rules_file (const rules_t *self);

/* First 12 hex digits of the SHA-256 of the file's bytes: every decision
   carries it, so a decision can be tied to one version of the rules. */
const char *rules_hash (const rules_t *self);

/* Number of allow/deny rules, copy rules, groups, instruments, contacts. */
size_t rules_count (const rules_t *self);

/* Formats a decision as "allow FILE:LINE", "deny FILE:LINE" or
   "deny default" into buf; returns buf. */
const char *rules_explain (const rules_t *self, const rules_decision_t *d, char *buf,
                           size_t size);

#endif
