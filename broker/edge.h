/*  The edge actor: the broker's ZMQ_STREAM socket, TLS sessions, framing,
    Hello/Welcome, heartbeats, and identity. It passes decoded frames of
    admitted sessions to the core and sends what the core answers.

    Pipe commands: "RELOAD" (reload certificates and CRLs; replies "OK" or
    "FAILED <reason>"), "$TERM" (close every session with a Close frame and
    stop). Once started it sends "OK <bound endpoint>" or "FAILED" on the
    pipe.                                         */
#ifndef LIAISON_EDGE_H
#define LIAISON_EDGE_H

#include "config.h"

typedef struct {
    const config_t *config;   /* borrowed */
    const char *bus_endpoint; /* the core's inproc endpoint */
} edge_args_t;

void edge_actor (void *pipe, void *args);

#endif
