/*  Broker configuration, read from a ZPL file with CZMQ's zconfig.          */
#ifndef LIAISON_CONFIG_H
#define LIAISON_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *endpoint;            /* ZeroMQ endpoint to bind, tcp://host:port */
    char *state_dir;           /* ready file, store (liaison.db) and lock */
    char *cert, *key, *ca, *crl_dir;
    char *rules;               /* routing rules file */
    uint32_t max_frame;
    uint32_t max_connections;
    uint32_t credit_frames;
    uint64_t credit_bytes;
    uint32_t heartbeat_ms;
    uint32_t handshake_timeout_ms;
    uint64_t max_pending_bytes;
    uint64_t reassembly_budget;
    uint32_t max_handshakes;
    uint32_t max_sessions_per_node;
    uint32_t queries_per_s;         /* Query frames one session may send per second */
    uint32_t acks_per_s;            /* Ack frames likewise */
    uint64_t store_max_bytes;       /* refuse new messages past this; 0: no bound */
    uint64_t store_wal_limit_bytes; /* truncate the WAL at checkpoint past this */
    uint64_t retention_s;           /* keep delivered/expired messages this long */
    uint32_t purge_interval_s;      /* how often the purge runs */
    uint32_t remind_percent;        /* remind when this share of a deadline is left */
} config_t;

/* Loads and validates path. Returns NULL and writes "path: message" (with
   the key at fault) into err on failure. Caller owns the result. */
config_t *config_load (const char *path, char *err, size_t errlen);

/* NULL-safe; sets *self_p to NULL. */
void config_destroy (config_t **self_p);

#endif
