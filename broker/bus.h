/*  Messages between the edge and the core actors over an inproc PAIR.

    Each message is one fixed-size ZeroMQ frame (small enough to travel
    without allocation); a pointer in it hands an object from one thread to
    the other: the receiver owns it. Memory in flight is bounded by the
    credit each session is granted, so the bus itself is unbounded (HWM 0).  */
#ifndef LIAISON_BUS_H
#define LIAISON_BUS_H

#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tls.h"

typedef enum {
    BUS_OPEN = 1,   /* edge->core: session admitted; ptr = bus_peer_t* */
    BUS_FRAME,      /* edge->core: decoded frame; ptr = Liaison__Frame*, code = wire size */
    BUS_CLOSED,     /* edge->core: session gone */
    BUS_SEND,       /* core->edge: ptr = bus_buf_t* (one reference), a packed frame */
    BUS_KICK,       /* core->edge: send Error{code, ptr = bus_kick_t*} and close;
                       code 0 and ptr NULL: close without an Error */
    BUS_CREDIT,     /* core->edge: grant code frames and (uintptr_t) ptr bytes */
    BUS_ADMIT,      /* core->edge: the session may open: send Welcome */
} bus_kind_t;

typedef struct {
    uint32_t kind;
    uint32_t code;
    uint64_t handle;     /* connection handle (wire_conn_handle) */
    void *ptr;
} bus_msg_t;

/* The identity of an admitted session. */
typedef struct {
    char node_id[WIRE_NODE_ID_MAX];
    char jurisdiction[3];
    char org[65];
    char serial[41];
    EVP_PKEY *key;       /* the certificate's public key (one reference), or NULL */
} bus_peer_t;

/* Why the core closes a session. */
typedef struct {
    char reason[48];     /* token, "unexpected-frame" */
    char detail[200];    /* human text */
} bus_kick_t;

/* A packed frame shared by several deliveries: reference counted. */
typedef struct {
    atomic_int refs;     /* one per BUS_SEND in flight or delivery queued */
    uint32_t size;
    uint8_t data[];
} bus_buf_t;

/* Drops one reference; frees the buffer with the last. */
static inline void
bus_buf_unref (bus_buf_t *buf)
{
    if (buf && atomic_fetch_sub (&buf->refs, 1) == 1)
        free (buf);
}

/* Sends one message; 0, or -1 if the other actor is gone (the caller still
   owns ptr then). */
static inline int
bus_send (void *sock, uint32_t kind, uint64_t handle, uint32_t code, void *ptr)
{
    bus_msg_t m = {kind, code, handle, ptr};
    // Never blocks: the bus has no high-water mark, so this fails only when
    // the other actor is gone (at shutdown), and then the message is moot.
    return zmq_send (sock, &m, sizeof m, ZMQ_DONTWAIT) == (int) sizeof m ? 0 : -1;
}

/* Receives one message without blocking; 0 or -1 if none. */
static inline int
bus_recv (void *sock, bus_msg_t *m)
{
    return zmq_recv (sock, m, sizeof *m, ZMQ_DONTWAIT) == (int) sizeof *m ? 0 : -1;
}

#endif
