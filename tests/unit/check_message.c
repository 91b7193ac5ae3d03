/*  The public message API of libliaison (client/liaison.h, message.c):
    defaults, validation by the setters, getters, enum names and ids.       */
#include "suites.h"

#include "codec.h"
#include "internal.h"
#include "liaison.h"

#include <stdlib.h>
#include <string.h>

static liaison_message_t *
s_new (void)
{
    liaison_message_t *m = liaison_message_new (LIAISON_MLA_REQUEST);
    ck_assert_ptr_nonnull (m);
    return m;
}

START_TEST (test_message_defaults)
{
    for (int t = LIAISON_MLA_REQUEST; t <= LIAISON_CASE_LEAD; t++) {
        liaison_message_t *m = liaison_message_new ((liaison_type_t) t);
        ck_assert_ptr_nonnull (m);
        ck_assert_int_eq (liaison_message_type (m), t);
        ck_assert_int_eq (liaison_message_priority (m), LIAISON_ROUTINE);
        ck_assert_int_eq (liaison_message_tlp (m), LIAISON_TLP_AMBER);
        ck_assert_int_eq (liaison_message_handling (m), LIAISON_H0);
        ck_assert_str_eq (liaison_message_sender (m), "");
        ck_assert_str_eq (liaison_message_handling_note (m), "");
        ck_assert_str_eq (liaison_message_legal_basis (m), "");
        ck_assert_str_eq (liaison_message_case_ref (m), "");
        ck_assert_ptr_null (liaison_message_in_reply_to (m));
        ck_assert_int_eq (liaison_message_created (m), 0);
        ck_assert_int_eq (liaison_message_deadline (m), 0);
        ck_assert_int_eq (liaison_message_expires (m), 0);
        ck_assert_uint_eq (liaison_message_recipient_count (m), 0);
        ck_assert_ptr_null (liaison_message_recipient (m, 0, NULL));
        size_t size = 99;
        ck_assert_ptr_nonnull (liaison_message_body (m, &size));
        ck_assert_uint_eq (size, 0);
        // No id yet: sixteen zero bytes.
        static const uint8_t zero[LIAISON_ID_LEN];
        ck_assert_int_eq (memcmp (liaison_message_id (m), zero, LIAISON_ID_LEN), 0);
        liaison_message_destroy (&m);
        ck_assert_ptr_null (m);
    }
}
END_TEST

START_TEST (test_message_invalid_type)
{
    ck_assert_ptr_null (liaison_message_new ((liaison_type_t) 0));
    ck_assert_ptr_null (liaison_message_new ((liaison_type_t) 5));
    ck_assert_ptr_null (liaison_message_new ((liaison_type_t) -1));
    ck_assert_ptr_null (liaison_message_new ((liaison_type_t) 1000));
}
END_TEST

START_TEST (test_message_destroy_twice)
{
    liaison_message_t *m = s_new ();
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, "de-bka"), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_body (m, "abc", 3), LIAISON_OK);
    liaison_message_destroy (&m);
    ck_assert_ptr_null (m);
    liaison_message_destroy (&m);
    ck_assert_ptr_null (m);
    liaison_message_destroy (NULL);
}
END_TEST

START_TEST (test_message_recipients)
{
    liaison_message_t *m = s_new ();
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, "de-bka"), LIAISON_OK);
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_JURISDICTION, "IT"), LIAISON_OK);
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_GROUP, "eu"), LIAISON_OK);
    ck_assert_uint_eq (liaison_message_recipient_count (m), 3);
    liaison_recipient_kind_t kind = 0;
    ck_assert_str_eq (liaison_message_recipient (m, 0, &kind), "de-bka");
    ck_assert_int_eq (kind, LIAISON_TO_NODE);
    ck_assert_str_eq (liaison_message_recipient (m, 1, &kind), "IT");
    ck_assert_int_eq (kind, LIAISON_TO_JURISDICTION);
    ck_assert_str_eq (liaison_message_recipient (m, 2, &kind), "eu");
    ck_assert_int_eq (kind, LIAISON_TO_GROUP);
    ck_assert_str_eq (liaison_message_recipient (m, 2, NULL), "eu");
    ck_assert_ptr_null (liaison_message_recipient (m, 3, &kind));

    // Each name must fit its kind.
    static const struct {
        liaison_recipient_kind_t kind;
        const char *name;
    } bad[] = {
        {LIAISON_TO_NODE, "DE"},
        {LIAISON_TO_NODE, "eu"},
        {LIAISON_TO_NODE, "De-bka"},
        {LIAISON_TO_NODE, "de_bka"},
        {LIAISON_TO_NODE, "de-"},
        {LIAISON_TO_NODE, ""},
        {LIAISON_TO_NODE, NULL},
        {LIAISON_TO_JURISDICTION, "de-bka"},
        {LIAISON_TO_JURISDICTION, "de"},
        {LIAISON_TO_JURISDICTION, "DEU"},
        {LIAISON_TO_JURISDICTION, ""},
        {LIAISON_TO_GROUP, "DE"},
        {LIAISON_TO_GROUP, "Eu"},
        {LIAISON_TO_GROUP, "1eu"},
        {LIAISON_TO_GROUP, "e u"},
        {LIAISON_TO_GROUP, ""},
        {(liaison_recipient_kind_t) 0, "de-bka"},
        {(liaison_recipient_kind_t) 4, "eu"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg (liaison_message_add_recipient (m, bad[i].kind, bad[i].name)
                           == LIAISON_EINVAL,
                       "case %zu (%s) accepted", i, bad[i].name ? bad[i].name : "NULL");
    ck_assert_uint_eq (liaison_message_recipient_count (m), 3);

    // A node id is valid as a group name only if it fits the group rule.
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_GROUP, "de-bka"), LIAISON_OK);
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_recipient_limit)
{
    liaison_message_t *m = s_new ();
    for (int i = 0; i < WIRE_MAX_RECIPIENTS; i++)
        ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_GROUP, "g"), LIAISON_OK);
    ck_assert_uint_eq (liaison_message_recipient_count (m), 256);
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_GROUP, "g"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, "fr-pn"), LIAISON_EINVAL);
    ck_assert_uint_eq (liaison_message_recipient_count (m), 256);
    ck_assert_str_eq (liaison_message_recipient (m, 255, NULL), "g");
    ck_assert_ptr_null (liaison_message_recipient (m, 256, NULL));
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_enum_setters)
{
    liaison_message_t *m = s_new ();
    for (int p = LIAISON_ROUTINE; p <= LIAISON_EMERGENCY; p++) {
        ck_assert_int_eq (liaison_message_set_priority (m, (liaison_priority_t) p), LIAISON_OK);
        ck_assert_int_eq (liaison_message_priority (m), p);
    }
    ck_assert_int_eq (liaison_message_set_priority (m, (liaison_priority_t) 3), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_priority (m, (liaison_priority_t) -1), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_priority (m), LIAISON_EMERGENCY);

    for (int t = LIAISON_TLP_CLEAR; t <= LIAISON_TLP_RED; t++) {
        ck_assert_int_eq (liaison_message_set_tlp (m, (liaison_tlp_t) t), LIAISON_OK);
        ck_assert_int_eq (liaison_message_tlp (m), t);
    }
    ck_assert_int_eq (liaison_message_set_tlp (m, (liaison_tlp_t) 0), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_tlp (m, (liaison_tlp_t) 6), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_tlp (m, (liaison_tlp_t) -1), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_tlp (m), LIAISON_TLP_RED);

    for (int h = LIAISON_H0; h <= LIAISON_H3; h++) {
        ck_assert_int_eq (liaison_message_set_handling (m, (liaison_handling_t) h, NULL),
                          LIAISON_OK);
        ck_assert_int_eq (liaison_message_handling (m), h);
    }
    ck_assert_int_eq (liaison_message_set_handling (m, (liaison_handling_t) 0, NULL),
                      LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_handling (m, (liaison_handling_t) 5, NULL),
                      LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_handling (m), LIAISON_H3);
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_handling_note)
{
    liaison_message_t *m = s_new ();
    ck_assert_int_eq (liaison_message_set_handling (m, LIAISON_H3, "ask the PN liaison desk"),
                      LIAISON_OK);
    ck_assert_str_eq (liaison_message_handling_note (m), "ask the PN liaison desk");
    char note[300];
    memset (note, 'n', sizeof note);
    note[256] = 0;
    ck_assert_int_eq (liaison_message_set_handling (m, LIAISON_H3, note), LIAISON_OK);
    ck_assert_str_eq (liaison_message_handling_note (m), note);
    note[256] = 'n';
    note[257] = 0;
    ck_assert_int_eq (liaison_message_set_handling (m, LIAISON_H2, note), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_handling (m, LIAISON_H2, "line\nbreak"), LIAISON_EINVAL);
    // A refused call changes neither the code nor the note.
    ck_assert_int_eq (liaison_message_handling (m), LIAISON_H3);
    ck_assert_uint_eq (strlen (liaison_message_handling_note (m)), 256);
    // NULL clears the note.
    ck_assert_int_eq (liaison_message_set_handling (m, LIAISON_H1, NULL), LIAISON_OK);
    ck_assert_str_eq (liaison_message_handling_note (m), "");
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_strings)
{
    liaison_message_t *m = s_new ();
    char text[300];

    ck_assert_int_eq (liaison_message_set_legal_basis (m, "eu-2023/977"), LIAISON_OK);
    ck_assert_str_eq (liaison_message_legal_basis (m), "eu-2023/977");
    memset (text, 'b', sizeof text);
    text[64] = 0;
    ck_assert_int_eq (liaison_message_set_legal_basis (m, text), LIAISON_OK);
    text[64] = 'b';
    text[65] = 0;
    ck_assert_int_eq (liaison_message_set_legal_basis (m, text), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_legal_basis (m, "eu 2023"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_legal_basis (m, "eu\t2023"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_legal_basis (m, "eu\n"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_legal_basis (m, NULL), LIAISON_EINVAL);
    ck_assert_uint_eq (strlen (liaison_message_legal_basis (m)), 64);
    ck_assert_int_eq (liaison_message_set_legal_basis (m, ""), LIAISON_OK);
    ck_assert_str_eq (liaison_message_legal_basis (m), "");

    ck_assert_int_eq (liaison_message_set_case_ref (m, "PN/2026/0042 Opération Sable"), LIAISON_OK);
    ck_assert_str_eq (liaison_message_case_ref (m), "PN/2026/0042 Opération Sable");
    memset (text, 'c', sizeof text);
    text[128] = 0;
    ck_assert_int_eq (liaison_message_set_case_ref (m, text), LIAISON_OK);
    ck_assert_str_eq (liaison_message_case_ref (m), text);
    text[128] = 'c';
    text[129] = 0;
    ck_assert_int_eq (liaison_message_set_case_ref (m, text), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_case_ref (m, "PN\n2026"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_case_ref (m, "PN\x1b[2J"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_case_ref (m, "PN\x7f"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_case_ref (m, NULL), LIAISON_EINVAL);
    ck_assert_uint_eq (strlen (liaison_message_case_ref (m)), 128);

    ck_assert_int_eq (liaison_message_set_sender (m, "fr-pn"), LIAISON_OK);
    ck_assert_str_eq (liaison_message_sender (m), "fr-pn");
    ck_assert_int_eq (liaison_message_set_sender (m, "FR-PN"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_sender (m, "fr-"), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_sender (m, NULL), LIAISON_EINVAL);
    ck_assert_str_eq (liaison_message_sender (m), "fr-pn");
    memcpy (text, "fr-", 3);
    memset (text + 3, 'x', 30);
    text[33] = 0;
    ck_assert_int_eq (liaison_message_set_sender (m, text), LIAISON_OK);
    ck_assert_str_eq (liaison_message_sender (m), text);
    ck_assert_int_eq (liaison_message_set_sender (m, ""), LIAISON_OK);
    ck_assert_str_eq (liaison_message_sender (m), "");
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_times)
{
    liaison_message_t *m = s_new ();
    ck_assert_int_eq (liaison_message_set_deadline (m, 1790000000000), LIAISON_OK);
    ck_assert_int_eq (liaison_message_deadline (m), 1790000000000);
    ck_assert_int_eq (liaison_message_set_deadline (m, -1), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_deadline (m), 1790000000000);
    ck_assert_int_eq (liaison_message_set_deadline (m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_message_deadline (m), 0);
    ck_assert_int_eq (liaison_message_set_expires (m, 1800000000000), LIAISON_OK);
    ck_assert_int_eq (liaison_message_expires (m), 1800000000000);
    ck_assert_int_eq (liaison_message_set_expires (m, INT64_MIN), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_expires (m), 1800000000000);
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_body)
{
    liaison_message_t *m = s_new ();
    static const uint8_t data[] = {0x30, 0x82, 0x00, 0x00, 0xff, 0x01};
    ck_assert_int_eq (liaison_message_set_body (m, data, sizeof data), LIAISON_OK);
    size_t size = 0;
    const uint8_t *got = liaison_message_body (m, &size);
    ck_assert_uint_eq (size, sizeof data);
    ck_assert_int_eq (memcmp (got, data, sizeof data), 0);
    // The body is a copy.
    ck_assert_ptr_ne (got, data);
    ck_assert_ptr_nonnull (liaison_message_body (m, NULL));

    // Replacing it, with something larger.
    size_t n = 100000;
    uint8_t *big = malloc (n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t) i;
    ck_assert_int_eq (liaison_message_set_body (m, big, n), LIAISON_OK);
    memset (big, 0, n);
    got = liaison_message_body (m, &size);
    ck_assert_uint_eq (size, n);
    ck_assert_uint_eq (got[n - 1], (uint8_t) (n - 1));
    free (big);

    ck_assert_int_eq (liaison_message_set_body (m, NULL, 5), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_body (m, NULL, 0), LIAISON_OK);
    liaison_message_body (m, &size);
    ck_assert_uint_eq (size, 0);
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_in_reply_to)
{
    liaison_message_t *m = liaison_message_new (LIAISON_MLA_REPLY);
    uint8_t id[LIAISON_ID_LEN];
    for (int i = 0; i < LIAISON_ID_LEN; i++)
        id[i] = (uint8_t) (0xf0 ^ i);
    ck_assert_ptr_null (liaison_message_in_reply_to (m));
    ck_assert_int_eq (liaison_message_set_in_reply_to (m, id), LIAISON_OK);
    const uint8_t *got = liaison_message_in_reply_to (m);
    ck_assert_ptr_nonnull (got);
    ck_assert_int_eq (memcmp (got, id, sizeof id), 0);
    ck_assert_ptr_ne (got, id);
    id[0] ^= 0xff;
    ck_assert_int_ne (memcmp (liaison_message_in_reply_to (m), id, sizeof id), 0);
    ck_assert_int_eq (liaison_message_set_in_reply_to (m, id), LIAISON_OK);
    ck_assert_int_eq (memcmp (liaison_message_in_reply_to (m), id, sizeof id), 0);
    // NULL clears it.
    ck_assert_int_eq (liaison_message_set_in_reply_to (m, NULL), LIAISON_OK);
    ck_assert_ptr_null (liaison_message_in_reply_to (m));
    liaison_message_destroy (&m);
}
END_TEST

START_TEST (test_message_evaluation)
{
    liaison_message_t *m = s_new ();
    ck_assert_int_eq (liaison_message_evaluation (m, NULL, NULL), LIAISON_ENOTFOUND);
    static const char sources[] = "ABCX";
    for (int s = 0; s < 4; s++)
        for (int i = 1; i <= 4; i++) {
            ck_assert_int_eq (liaison_message_set_evaluation (m, sources[s], i), LIAISON_OK);
            ck_assert_ptr_nonnull (m->env->evaluation);
            ck_assert_int_eq (m->env->evaluation->source[0], sources[s]);
            ck_assert_int_eq (m->env->evaluation->source[1], 0);
            ck_assert_uint_eq (m->env->evaluation->information, (uint32_t) i);
            char src = 0;
            int info = 0;
            ck_assert_int_eq (liaison_message_evaluation (m, &src, &info), LIAISON_OK);
            ck_assert_int_eq (src, sources[s]);
            ck_assert_int_eq (info, i);
        }
    ck_assert_int_eq (liaison_message_set_evaluation (m, 'Z', 1), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_evaluation (m, 'a', 1), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_evaluation (m, 0, 1), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_evaluation (m, 'A', 0), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_evaluation (m, 'A', 5), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_message_set_evaluation (m, 'A', -1), LIAISON_EINVAL);
    // The last good value stands.
    ck_assert_int_eq (m->env->evaluation->source[0], 'X');
    ck_assert_uint_eq (m->env->evaluation->information, 4);
    liaison_message_destroy (&m);
}
END_TEST

// A message made through the API and nothing else passes the codec's
// envelope check once it has an id and a recipient.
START_TEST (test_message_valid_on_the_wire)
{
    liaison_message_t *m = liaison_message_new (LIAISON_MLA_REPLY);
    uint8_t id[LIAISON_ID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, "de-bka"), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_in_reply_to (m, id), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_body (m, "xyz", 3), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_evaluation (m, 'B', 2), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_handling (m, LIAISON_H3, "ask first"), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_legal_basis (m, "eio"), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_case_ref (m, "PN/1"), LIAISON_OK);
    // The library gives the message its id on send; do it here by hand.
    m->env->id.data = malloc (LIAISON_ID_LEN);
    memcpy (m->env->id.data, id, LIAISON_ID_LEN);
    m->env->id.len = LIAISON_ID_LEN;
    ck_assert_int_eq (memcmp (liaison_message_id (m), id, LIAISON_ID_LEN), 0);
    wire_codec_error_t err;
    ck_assert_msg (wire_codec_check_envelope (m->env, 0, &err) == 0, "%s: %s", err.reason,
                   err.detail);
    liaison_message_destroy (&m);
}
END_TEST

// Whatever a setter accepts, the broker's codec accepts too: otherwise the
// library hands the broker an envelope it refuses as malformed, and the
// broker closes the session (the legal basis setter once let through bytes
// >= 0x7f that the codec's token rule refuses).
START_TEST (test_message_setters_match_codec)
{
    static const char *bases[] = {"eio", "eu-2023/977", "décret-2026", "x\x7f", "a\xff"};
    static const char *refs[] = {"PN/1", "Opération Sable", "\u202Eevil"};
    uint8_t id[LIAISON_ID_LEN] = {1};
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++)
        for (size_t r = 0; r < sizeof refs / sizeof refs[0]; r++) {
            liaison_message_t *m = s_new ();
            ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, "de-bka"),
                              LIAISON_OK);
            m->env->id.data = malloc (LIAISON_ID_LEN);
            memcpy (m->env->id.data, id, LIAISON_ID_LEN);
            m->env->id.len = LIAISON_ID_LEN;
            int ok_basis = liaison_message_set_legal_basis (m, bases[b]) == LIAISON_OK;
            int ok_ref = liaison_message_set_case_ref (m, refs[r]) == LIAISON_OK;
            wire_codec_error_t err;
            if (wire_codec_check_envelope (m->env, 0, &err) != 0)
                ck_abort_msg ("setters accepted legal basis '%s' (%d) and case ref '%s' (%d), "
                              "the codec refuses: %s",
                              bases[b], ok_basis, refs[r], ok_ref, err.reason);
            liaison_message_destroy (&m);
        }
}
END_TEST

// ------------------------------------------------------------- names

START_TEST (test_message_enum_names)
{
    for (int t = LIAISON_MLA_REQUEST; t <= LIAISON_CASE_LEAD; t++) {
        const char *name = liaison_type_name (t);
        ck_assert_ptr_nonnull (name);
        ck_assert_int_eq (liaison_type_parse (name), t);
    }
    ck_assert_str_eq (liaison_type_name (LIAISON_MLA_REQUEST), "mla-request");
    ck_assert_str_eq (liaison_type_name (LIAISON_MLA_REPLY), "mla-reply");
    ck_assert_str_eq (liaison_type_name (LIAISON_EVIDENCE_HANDOFF), "evidence-handoff");
    ck_assert_str_eq (liaison_type_name (LIAISON_CASE_LEAD), "case-lead");
    ck_assert_ptr_null (liaison_type_name (0));
    ck_assert_ptr_null (liaison_type_name (5));
    ck_assert_ptr_null (liaison_type_name (-1));

    for (int p = LIAISON_ROUTINE; p <= LIAISON_EMERGENCY; p++)
        ck_assert_int_eq (liaison_priority_parse (liaison_priority_name (p)), p);
    ck_assert_str_eq (liaison_priority_name (LIAISON_URGENT), "urgent");
    ck_assert_ptr_null (liaison_priority_name (3));
    ck_assert_ptr_null (liaison_priority_name (-1));

    for (int t = LIAISON_TLP_CLEAR; t <= LIAISON_TLP_RED; t++)
        ck_assert_int_eq (liaison_tlp_parse (liaison_tlp_name (t)), t);
    ck_assert_str_eq (liaison_tlp_name (LIAISON_TLP_AMBER_STRICT), "amber+strict");
    ck_assert_ptr_null (liaison_tlp_name (0));
    ck_assert_ptr_null (liaison_tlp_name (6));

    for (int h = LIAISON_H0; h <= LIAISON_H3; h++)
        ck_assert_int_eq (liaison_handling_parse (liaison_handling_name (h)), h);
    ck_assert_str_eq (liaison_handling_name (LIAISON_H2), "h2");
    ck_assert_ptr_null (liaison_handling_name (0));
    ck_assert_ptr_null (liaison_handling_name (5));

    static const char *status[] = {NULL, "accepted", "delivered", "read", "rejected", "expired"};
    for (int s = LIAISON_ACCEPTED; s <= LIAISON_EXPIRED; s++)
        ck_assert_str_eq (liaison_status_name (s), status[s]);
    ck_assert_ptr_null (liaison_status_name (0));
    ck_assert_ptr_null (liaison_status_name (6));
}
END_TEST

START_TEST (test_message_enum_parse)
{
    ck_assert_int_eq (liaison_tlp_parse ("TLP:RED"), LIAISON_TLP_RED);
    ck_assert_int_eq (liaison_tlp_parse ("tlp:amber+strict"), LIAISON_TLP_AMBER_STRICT);
    ck_assert_int_eq (liaison_tlp_parse ("amber+strict"), LIAISON_TLP_AMBER_STRICT);
    ck_assert_int_eq (liaison_tlp_parse ("AMBER+STRICT"), LIAISON_TLP_AMBER_STRICT);
    ck_assert_int_eq (liaison_tlp_parse ("Clear"), LIAISON_TLP_CLEAR);
    ck_assert_int_eq (liaison_tlp_parse ("TLP:"), -1);
    ck_assert_int_eq (liaison_tlp_parse ("white"), -1);
    ck_assert_int_eq (liaison_tlp_parse ("amber strict"), -1);
    ck_assert_int_eq (liaison_tlp_parse (""), -1);
    ck_assert_int_eq (liaison_tlp_parse (NULL), -1);

    ck_assert_int_eq (liaison_type_parse ("MLA-Request"), LIAISON_MLA_REQUEST);
    ck_assert_int_eq (liaison_type_parse ("mla_request"), -1);
    ck_assert_int_eq (liaison_type_parse (""), -1);
    ck_assert_int_eq (liaison_type_parse (NULL), -1);
    ck_assert_int_eq (liaison_priority_parse ("EMERGENCY"), LIAISON_EMERGENCY);
    ck_assert_int_eq (liaison_priority_parse ("high"), -1);
    ck_assert_int_eq (liaison_priority_parse (NULL), -1);
    ck_assert_int_eq (liaison_handling_parse ("H0"), LIAISON_H0);
    ck_assert_int_eq (liaison_handling_parse ("h4"), -1);
    ck_assert_int_eq (liaison_handling_parse ("0"), -1);
    ck_assert_int_eq (liaison_handling_parse (NULL), -1);
}
END_TEST

START_TEST (test_message_id_hex)
{
    uint8_t id[LIAISON_ID_LEN], back[LIAISON_ID_LEN];
    for (int i = 0; i < LIAISON_ID_LEN; i++)
        id[i] = (uint8_t) (i * 17 + 0x0f);
    char hex[33];
    memset (hex, 'z', sizeof hex);
    ck_assert_ptr_eq (liaison_id_hex (id, hex), hex);
    ck_assert_uint_eq (strlen (hex), 32);
    ck_assert_str_eq (hex, "0f2031425364758697a8b9cadbecfd0e");
    ck_assert_int_eq (liaison_id_parse (hex, back), LIAISON_OK);
    ck_assert_int_eq (memcmp (id, back, sizeof id), 0);

    // Upper case parses too.
    ck_assert_int_eq (liaison_id_parse ("00112233445566778899AABBCCDDEEFF", back), LIAISON_OK);
    ck_assert_uint_eq (back[0], 0x00);
    ck_assert_uint_eq (back[10], 0xaa);
    ck_assert_uint_eq (back[15], 0xff);
    liaison_id_hex (back, hex);
    ck_assert_str_eq (hex, "00112233445566778899aabbccddeeff");

    memset (back, 0x5a, sizeof back);
    ck_assert_int_eq (liaison_id_parse ("00112233445566778899aabbccddeef", back), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_id_parse ("00112233445566778899aabbccddeeff0", back), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_id_parse ("00112233445566778899aabbccddeefg", back), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_id_parse (" 0112233445566778899aabbccddeeff", back), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_id_parse ("0x112233445566778899aabbccddeeff", back), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_id_parse ("", back), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_id_parse (NULL, back), LIAISON_EINVAL);
}
END_TEST

START_TEST (test_message_strerror)
{
    static const int codes[] = {
        LIAISON_OK,        LIAISON_EINVAL,    LIAISON_EMALFORMED, LIAISON_ETLS,     LIAISON_EAUTH,
        LIAISON_EDENIED,   LIAISON_ENOTFOUND, LIAISON_EEXHAUSTED, LIAISON_ETIMEOUT, LIAISON_ECLOSED,
        LIAISON_EPROTOCOL, LIAISON_EIO,       LIAISON_ECONFIG};
    size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = liaison_strerror (-1000);
    ck_assert_ptr_nonnull (unknown);
    ck_assert_ptr_nonnull (liaison_strerror (1));
    for (size_t i = 0; i < n; i++) {
        const char *s = liaison_strerror (codes[i]);
        ck_assert_ptr_nonnull (s);
        ck_assert_uint_gt (strlen (s), 0);
        ck_assert_str_ne (s, unknown);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne (s, liaison_strerror (codes[j]));
    }
}
END_TEST

// Receipts wrap what the codec unpacked; the getters read it back.
START_TEST (test_message_receipt_getters)
{
    uint8_t id[LIAISON_ID_LEN];
    memset (id, 0x42, sizeof id);
    Liaison__Receipt r = LIAISON__RECEIPT__INIT;
    r.id.data = id;
    r.id.len = sizeof id;
    r.recipient = "de-bka";
    r.status = LIAISON__RECEIPT_STATUS__REJECTED;
    r.reason = "denied";
    r.rule = "rules.zpl:7";
    r.time_ms = 1790000000001;
    uint8_t buf[256];
    size_t n = liaison__receipt__pack (&r, buf);
    liaison_receipt_t *rc = receipt_wrap (liaison__receipt__unpack (NULL, n, buf));
    ck_assert_ptr_nonnull (rc);
    ck_assert_int_eq (memcmp (liaison_receipt_id (rc), id, sizeof id), 0);
    ck_assert_str_eq (liaison_receipt_recipient (rc), "de-bka");
    ck_assert_int_eq (liaison_receipt_status (rc), LIAISON_REJECTED);
    ck_assert_str_eq (liaison_receipt_reason (rc), "denied");
    ck_assert_str_eq (liaison_receipt_rule (rc), "rules.zpl:7");
    ck_assert_int_eq (liaison_receipt_time (rc), 1790000000001);
    liaison_receipt_destroy (&rc);
    ck_assert_ptr_null (rc);
    liaison_receipt_destroy (&rc);
    liaison_receipt_destroy (NULL);
}
END_TEST

// Addresses as officers write them: the spelling, or a prefix, says the kind.
START_TEST (test_message_add_address)
{
    static const struct {
        const char *text;
        int ok;
        liaison_recipient_kind_t kind;
        const char *name;
    } cases[] = {
        {"de-bka", 1, LIAISON_TO_NODE, "de-bka"},
        {"DE", 1, LIAISON_TO_JURISDICTION, "DE"},
        {"eu", 1, LIAISON_TO_GROUP, "eu"},
        {"group:fr-partners", 1, LIAISON_TO_GROUP, "fr-partners"},
        {"jurisdiction:IT", 1, LIAISON_TO_JURISDICTION, "IT"},
        {"node:it-ps", 1, LIAISON_TO_NODE, "it-ps"},
        {"node:DE", 0, 0, NULL},
        {"jurisdiction:de", 0, 0, NULL},
        {"not an address!", 0, 0, NULL},
        {"", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        liaison_message_t *m = liaison_message_new (LIAISON_CASE_LEAD);
        int rc = liaison_message_add_address (m, cases[i].text);
        if (!cases[i].ok) {
            ck_assert_msg (rc == LIAISON_EINVAL, "'%s' accepted", cases[i].text);
            ck_assert_uint_eq (liaison_message_recipient_count (m), 0);
        }
        else {
            ck_assert_msg (rc == LIAISON_OK, "'%s' refused", cases[i].text);
            liaison_recipient_kind_t kind;
            ck_assert_str_eq (liaison_message_recipient (m, 0, &kind), cases[i].name);
            ck_assert_int_eq (kind, cases[i].kind);
        }
        liaison_message_destroy (&m);
    }
}
END_TEST

Suite *
message_suite (void)
{
    Suite *s = suite_create ("message");
    TCase *tc = tcase_create ("message");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_message_defaults);
    tcase_add_test (tc, test_message_add_address);
    tcase_add_test (tc, test_message_invalid_type);
    tcase_add_test (tc, test_message_destroy_twice);
    tcase_add_test (tc, test_message_recipients);
    tcase_add_test (tc, test_message_recipient_limit);
    tcase_add_test (tc, test_message_enum_setters);
    tcase_add_test (tc, test_message_handling_note);
    tcase_add_test (tc, test_message_strings);
    tcase_add_test (tc, test_message_times);
    tcase_add_test (tc, test_message_body);
    tcase_add_test (tc, test_message_in_reply_to);
    tcase_add_test (tc, test_message_evaluation);
    tcase_add_test (tc, test_message_valid_on_the_wire);
    tcase_add_test (tc, test_message_setters_match_codec);
    suite_add_tcase (s, tc);

    tc = tcase_create ("names");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_message_enum_names);
    tcase_add_test (tc, test_message_enum_parse);
    tcase_add_test (tc, test_message_id_hex);
    tcase_add_test (tc, test_message_strerror);
    tcase_add_test (tc, test_message_receipt_getters);
    suite_add_tcase (s, tc);
    return s;
}
