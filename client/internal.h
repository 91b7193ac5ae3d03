/*  Library-internal declarations shared by message.c and session.c.        */
#ifndef LIAISON_INTERNAL_H
#define LIAISON_INTERNAL_H

#include "liaison.h"
#include "liaison.pb-c.h"

struct liaison_message {
    Liaison__Envelope *env;  /* every field heap-owned (free_unpacked frees) */
    liaison_message_t *next; /* inbox queue */
    unsigned conn_seq;       /* the connection that delivered it (credit) */
};

struct liaison_receipt {
    Liaison__Receipt *r;     /* unpacked from the wire */
    liaison_receipt_t *next;
};

struct liaison_resolution {
    Liaison__Resolved *r;    /* unpacked from the wire */
};

/* Wraps an envelope (taken) as a message. NULL when out of memory. */
liaison_message_t *message_wrap (Liaison__Envelope *env);

/* Wraps a receipt (taken). */
liaison_receipt_t *receipt_wrap (Liaison__Receipt *r);

#endif
