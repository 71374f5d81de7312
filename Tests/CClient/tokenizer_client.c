/*
 * A C client of the gemma.v1.Tokenizer service, built from the same .proto files with
 * protobuf-c, to show that the wire contract is language-neutral.
 *
 *   protoc-c -I Proto --c_out=OUT Proto/gemma/v1/envelope.proto Proto/gemma/v1/tokenizer.proto
 *   cc -I OUT tokenizer_client.c OUT/gemma/v1/envelope.pb-c.c OUT/gemma/v1/tokenizer.pb-c.c \
 *      -lprotobuf-c -lnng -o tokenizer_client
 *   tokenizer_client URL [--bos] TEXT...
 *
 * Calls Encode once with every TEXT and prints each text's ids on one line, separated by
 * spaces. Exits 1 on a transport or decoding failure, 2 on an error reply (printed to stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "gemma/v1/envelope.pb-c.h"
#include "gemma/v1/tokenizer.pb-c.h"

static int fail(const char *what, int rv) {
    fprintf(stderr, "tokenizer_client: %s: %s\n", what, rv ? nng_strerror(rv) : "failed");
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s URL [--bos] TEXT...\n", argv[0]);
        return 1;
    }
    const char *url = argv[1];
    int first_text = 2;
    protobuf_c_boolean add_bos = 0;
    if (strcmp(argv[2], "--bos") == 0) {
        add_bos = 1;
        first_text = 3;
    }

    nng_socket sock;
    int rv;
    if ((rv = nng_req0_open(&sock)) != 0) return fail("nng_req0_open", rv);
    nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 10000);
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 10000);
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 64u << 20);
    if ((rv = nng_dial(sock, url, NULL, 0)) != 0) return fail("nng_dial", rv);

    /* The method's request... */
    Gemma__V1__EncodeRequest encode = GEMMA__V1__ENCODE_REQUEST__INIT;
    encode.n_texts = (size_t)(argc - first_text);
    encode.texts = argv + first_text;
    encode.add_bos = add_bos;
    size_t payload_len = gemma__v1__encode_request__get_packed_size(&encode);
    uint8_t *payload = malloc(payload_len ? payload_len : 1);
    gemma__v1__encode_request__pack(&encode, payload);

    /* ...inside the envelope, with a deadline 10 s from now. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    Gemma__V1__Request request = GEMMA__V1__REQUEST__INIT;
    request.method = "gemma.v1.Tokenizer/Encode";
    request.request_id = 1;
    request.deadline_unix_micros = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000 + 10000000;
    request.attempt = 1;
    request.trace_id = "c-client";
    request.payload.len = payload_len;
    request.payload.data = payload;
    size_t request_len = gemma__v1__request__get_packed_size(&request);
    uint8_t *request_bytes = malloc(request_len);
    gemma__v1__request__pack(&request, request_bytes);

    if ((rv = nng_send(sock, request_bytes, request_len, 0)) != 0) return fail("nng_send", rv);
    char *reply_bytes = NULL;
    size_t reply_len = 0;
    if ((rv = nng_recv(sock, &reply_bytes, &reply_len, NNG_FLAG_ALLOC)) != 0) return fail("nng_recv", rv);

    Gemma__V1__Reply *reply = gemma__v1__reply__unpack(NULL, reply_len, (const uint8_t *)reply_bytes);
    if (reply == NULL) return fail("unpacking the reply envelope", 0);
    if (reply->request_id != request.request_id) return fail("reply to another request", 0);
    if (reply->status != NULL && reply->status->code != GEMMA__V1__STATUS__CODE__OK) {
        fprintf(stderr, "tokenizer_client: error reply %d: %s\n", (int)reply->status->code, reply->status->message);
        return 2;
    }
    Gemma__V1__EncodeReply *encoded = gemma__v1__encode_reply__unpack(NULL, reply->payload.len, reply->payload.data);
    if (encoded == NULL) return fail("unpacking EncodeReply", 0);
    for (size_t i = 0; i < encoded->n_sequences; i++) {
        Gemma__V1__TokenIds *ids = encoded->sequences[i];
        for (size_t j = 0; j < ids->n_ids; j++) {
            printf(j ? " %d" : "%d", ids->ids[j]);
        }
        printf("\n");
    }

    gemma__v1__encode_reply__free_unpacked(encoded, NULL);
    gemma__v1__reply__free_unpacked(reply, NULL);
    nng_free(reply_bytes, reply_len);
    free(request_bytes);
    free(payload);
    nng_close(sock);
    return 0;
}
