/*  The core actor: sessions and nodes, routing, the store, receipts,
    deadlines.

    It sees decoded, validated frames from the edge (bus.h) and answers with
    packed frames for the edge to send. A Submit the rules allow is staged
    into the store's group transaction; the group commits when the bus
    input drains (one fsync for everything that arrived meanwhile), and only
    then do ACCEPTED receipts go out and do receivers get the new messages,
    read back from their mailboxes at their credit. Acks mark deliveries
    (DELIVERED/READ receipts, signed by the recipient, forwarded to the
    sender's sessions). A one-second tick expires messages, moves deadline
    clocks, checkpoints the WAL and, now and then, purges.                   */
#ifndef LIAISON_CORE_H
#define LIAISON_CORE_H

#include "config.h"

typedef struct {
    const config_t *config;   /* borrowed, outlives the actor */
    const char *bus_endpoint; /* inproc endpoint the core binds */
} core_args_t;

/* CZMQ actor: void core_actor (zsock_t *pipe, void *args). Once started it
   sends "OK" (bound) or "FAILED" on the pipe; stops on $TERM. */
void core_actor (void *pipe, void *args);

#endif
