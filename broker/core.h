/*  The core actor: sessions and nodes, routing, credit, receipts.

    It sees decoded, validated frames from the edge (bus.h) and answers with
    packed frames for the edge to send. Until the routing-policy and store
    issues land, it relays a Submit to each addressed node's receiver if one
    is connected, and otherwise answers REJECTED: ACCEPTED will always mean
    durable, so it is never sent yet.                                        */
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
