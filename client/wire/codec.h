/*  Protobuf codec: the one place raw frame bytes from the network become
    structures. Every field, size and enum range is checked after unpacking;
    nothing else in the broker or the library sees bytes from the wire.      */
#ifndef LIAISON_WIRE_CODEC_H
#define LIAISON_WIRE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "liaison.pb-c.h"

#define WIRE_PROTOCOL_VERSION 1
#define WIRE_ID_LEN 16
#define WIRE_MAX_RECIPIENTS 256
#define WIRE_MAX_NAME 64         /* recipient names, legal basis, software */
#define WIRE_MAX_CASE_REF 128
#define WIRE_MAX_TEXT 1024       /* reasons, details, notes */
#define WIRE_MAX_ACK_ITEMS 256   /* messages one Ack covers */
#define WIRE_MAX_SIGNATURE 1024  /* bytes of a receipt signature */

/* Why a frame was refused: an ErrorCode, a reason token, human detail. */
typedef struct {
    int code;                /* LIAISON__ERROR_CODE__ERR_* */
    char reason[48];
    char detail[200];
} wire_codec_error_t;

/* Unpacks and validates one frame. Returns the frame (caller owns; free with
   wire_codec_free) or NULL with err filled in. */
Liaison__Frame *wire_codec_decode (const uint8_t *data, size_t size,
                                   wire_codec_error_t *err);

/* Frees a decoded frame; NULL-safe, sets *frame_p to NULL. */
void wire_codec_free (Liaison__Frame **frame_p);

/* Validates an envelope as a broker or client would accept it.
   need_sender: the sender field must be a valid node id (deliveries).
   0, or -1 with err filled in. */
int wire_codec_check_envelope (const Liaison__Envelope *env, int need_sender,
                               wire_codec_error_t *err);

/* Packs a frame straight into conn's output buffer. 0, or -1 if the
   connection cannot take it (it is then being closed). */
int wire_codec_send (wire_conn_t *conn, const Liaison__Frame *f);

/* Parses an address as people write it: "de-bka" (a node), "DE" (a
   jurisdiction), "eu" (a group), or with an explicit "node:",
   "jurisdiction:" or "group:" prefix. Sets *kind (RECIPIENT_KIND_*) and
   *name (borrowed from text); 0, or -1 if the name does not fit its kind. */
int wire_codec_parse_address (const char *text, int *kind, const char **name);

/* True for ^[A-Z]{2}$. */
int wire_codec_country_valid (const char *cc);

/* True for a group name: ^[a-z][a-z0-9_-]{0,63}$. */
int wire_codec_group_valid (const char *name);

#endif
