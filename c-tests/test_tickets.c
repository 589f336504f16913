/* Shared ticket keys (tickets=shared) through the explicit API, with real TLS 1.2 and 1.3
 * handshakes over BIO pairs, linked before -lssl:
 *   - two server contexts with one cache attached open each other's stateless tickets,
 *     where two contexts with OpenSSL's own keys do not (the baseline);
 *   - a program's own ticket keys (set before or after sesscache_attach) and its own ticket
 *     callback win: its tickets carry its key name and the shared keys do not open them;
 *   - with force=1 the shared keys win over both, and the program's callback is never called;
 *   - a resumed TLS 1.3 handshake brings the client a new ticket, as OpenSSL's own keys do.
 * Run under valgrind and AddressSanitizer by the harness, like test_cache. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sesscache.h"
#include "tls_util.h"

static tu_identity id;

/* A server context with stateless tickets on (tu_server_ctx makes stateful ones). */
static SSL_CTX *server(int version) {
    SSL_CTX *ctx = tu_server_ctx(&id, version);
    if (ctx != NULL)
        SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    return ctx;
}

static sesscache *open_cache(const char *url) {
    sesscache *c = sesscache_open(url);
    if (c == NULL)
        fprintf(stderr, "    sesscache_open(%s): %s\n", url, sesscache_last_error());
    return c;
}

/* A ticket issued by `from` (a full handshake), offered to `to`: 1 if `to` resumed it.
 * `name` (16 bytes) gets the ticket's key name, when not NULL. */
static int ticket_resumes(SSL_CTX *from, SSL_CTX *to, int version, unsigned char *name) {
    SSL_CTX *client = tu_client_ctx(version);
    tu_conn_result first = {0}, second = {0};
    int resumed = -1;
    if (client == NULL || !tu_connect(from, client, NULL, &first) || first.session == NULL)
        goto out;
    if (name != NULL) {
        const unsigned char *tick = NULL;
        size_t len = 0;
        SSL_SESSION_get0_ticket(first.session, &tick, &len);
        if (tick == NULL || len < 16)
            goto out;
        memcpy(name, tick, 16);
    }
    tu_conn_opts opts = {.resume = first.session};
    if (!tu_connect(to, client, &opts, &second))
        goto out;
    resumed = second.resumed;
out:
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(second.session);
    SSL_CTX_free(client);
    return resumed;
}

static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};

/* A TLS 1.3 ticket issued by `ctx`, offered back to it: 1 if the resumed handshake brought the
 * client a new ticket (as OpenSSL's own keys do, for clients that use each ticket once), 0 if
 * not, -1 if it did not resume. */
static int tls13_resumption_renews(SSL_CTX *ctx) {
    SSL_CTX *client = tu_client_ctx(TLS1_3_VERSION);
    tu_conn_result first = {0}, second = {0};
    int renewed = -1;
    if (client == NULL || !tu_connect(ctx, client, NULL, &first) || first.session == NULL)
        goto out;
    tu_conn_opts opts = {.resume = first.session};
    if (!tu_connect(ctx, client, &opts, &second) || !second.resumed || second.session == NULL)
        goto out;
    const unsigned char *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;
    SSL_SESSION_get0_ticket(first.session, &t1, &l1);
    SSL_SESSION_get0_ticket(second.session, &t2, &l2);
    renewed = t1 != NULL && t2 != NULL && (l1 != l2 || memcmp(t1, t2, l1) != 0);
out:
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(second.session);
    SSL_CTX_free(client);
    return renewed;
}

static void tls13_resumptions_bring_a_new_ticket_as_without_the_library(void) {
    sesscache *cache = open_cache("memory:?tickets=shared");
    REQUIRE(cache != NULL);
    SSL_CTX *plain = server(TLS1_3_VERSION), *shared = server(TLS1_3_VERSION);
    REQUIRE(plain != NULL && shared != NULL);
    CHECK_EQ(sesscache_attach(cache, shared), 1);
    CHECK_EQ(tls13_resumption_renews(plain), 1);
    CHECK_EQ(tls13_resumption_renews(shared), 1);
    SSL_CTX_free(plain);
    SSL_CTX_free(shared);
    sesscache_free(cache);
}

static void two_attached_contexts_open_each_others_tickets(void) {
    sesscache *cache = open_cache("memory:?tickets=shared");
    REQUIRE(cache != NULL);
    for (size_t i = 0; i < 2; i++) {
        int v = versions[i];
        SSL_CTX *a = server(v), *b = server(v);
        REQUIRE(a != NULL && b != NULL);
        CHECK_EQ(sesscache_attach(cache, a), 1);
        CHECK_EQ(sesscache_attach(cache, b), 1);
        CHECK_EQ(ticket_resumes(a, b, v, NULL), 1);
        CHECK_EQ(ticket_resumes(b, a, v, NULL), 1);
        SSL_CTX_free(a);
        SSL_CTX_free(b);
    }
    sesscache_free(cache);
}

static void without_the_cache_two_contexts_do_not(void) {
    for (size_t i = 0; i < 2; i++) {
        int v = versions[i];
        SSL_CTX *a = server(v), *b = server(v);
        REQUIRE(a != NULL && b != NULL);
        CHECK_EQ(ticket_resumes(a, a, v, NULL), 1);
        CHECK_EQ(ticket_resumes(a, b, v, NULL), 0);
        SSL_CTX_free(a);
        SSL_CTX_free(b);
    }
}

/* Sets 80 bytes of random ticket keys on ctx; `name` gets their name (the first 16). */
static int set_own_keys(SSL_CTX *ctx, unsigned char name[16]) {
    unsigned char keys[80];
    if (RAND_bytes(keys, sizeof keys) != 1)
        return 0;
    memcpy(name, keys, 16);
    return (int)SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof keys);
}

static void own_keys_win_before_or_after_attach(void) {
    sesscache *cache = open_cache("memory:?tickets=shared");
    REQUIRE(cache != NULL);
    for (int after = 0; after < 2; after++) {
        for (size_t i = 0; i < 2; i++) {
            int v = versions[i];
            SSL_CTX *shared = server(v), *own = server(v);
            unsigned char keyname[16], seen[16];
            REQUIRE(shared != NULL && own != NULL);
            CHECK_EQ(sesscache_attach(cache, shared), 1);
            if (!after)
                CHECK_EQ(set_own_keys(own, keyname), 1);
            CHECK_EQ(sesscache_attach(cache, own), 1);
            if (after)
                CHECK_EQ(set_own_keys(own, keyname), 1);
            /* Its tickets carry its own key's name; the shared keys do not open them. */
            CHECK_EQ(ticket_resumes(own, own, v, seen), 1);
            CHECK(memcmp(seen, keyname, 16) == 0);
            CHECK_EQ(ticket_resumes(own, shared, v, NULL), 0);
            SSL_CTX_free(shared);
            SSL_CTX_free(own);
        }
    }
    sesscache_free(cache);
}

/* A program's ticket callback (OpenSSL 3's kind), under fixed keys; counts its calls. */
static int program_cb_calls;
static unsigned char program_keys[80];

static int program_cb(SSL *s, unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                      EVP_MAC_CTX *hctx, int enc) {
    (void)s;
    program_cb_calls++;
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string("key", program_keys + 16, 32);
    params[1] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (enc) {
        memcpy(key_name, program_keys, 16);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, program_keys + 48, iv) != 1)
            return -1;
    } else {
        if (memcmp(key_name, program_keys, 16) != 0)
            return 0;
        if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, program_keys + 48, iv) != 1)
            return -1;
    }
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 1 : -1;
}

static void own_callback_wins(void) {
    sesscache *cache = open_cache("memory:?tickets=shared");
    REQUIRE(cache != NULL);
    REQUIRE(RAND_bytes(program_keys, sizeof program_keys) == 1);
    for (size_t i = 0; i < 2; i++) {
        int v = versions[i];
        SSL_CTX *shared = server(v), *own = server(v);
        unsigned char seen[16];
        REQUIRE(shared != NULL && own != NULL);
        CHECK_EQ(sesscache_attach(cache, shared), 1);
        CHECK_EQ(sesscache_attach(cache, own), 1);
        CHECK_EQ(SSL_CTX_set_tlsext_ticket_key_evp_cb(own, program_cb), 1);
        program_cb_calls = 0;
        CHECK_EQ(ticket_resumes(own, own, v, seen), 1);
        CHECK(program_cb_calls >= 2);
        CHECK(memcmp(seen, program_keys, 16) == 0);
        CHECK_EQ(ticket_resumes(own, shared, v, NULL), 0);
        SSL_CTX_free(shared);
        SSL_CTX_free(own);
    }
    sesscache_free(cache);
}

static void force_makes_the_shared_keys_win(void) {
    sesscache *cache = open_cache("memory:?tickets=shared&force=1");
    REQUIRE(cache != NULL);
    for (size_t i = 0; i < 2; i++) {
        int v = versions[i];
        SSL_CTX *shared = server(v), *keys = server(v), *cb = server(v);
        unsigned char keyname[16], seen[16];
        REQUIRE(shared != NULL && keys != NULL && cb != NULL);
        CHECK_EQ(sesscache_attach(cache, shared), 1);
        CHECK_EQ(set_own_keys(keys, keyname), 1); /* before attaching */
        CHECK_EQ(sesscache_attach(cache, keys), 1);
        CHECK_EQ(sesscache_attach(cache, cb), 1);
        CHECK_EQ(SSL_CTX_set_tlsext_ticket_key_evp_cb(cb, program_cb), 1);
        program_cb_calls = 0;
        CHECK_EQ(ticket_resumes(keys, shared, v, seen), 1);
        CHECK(memcmp(seen, keyname, 16) != 0);
        CHECK_EQ(ticket_resumes(cb, shared, v, NULL), 1);
        CHECK_EQ(ticket_resumes(shared, cb, v, NULL), 1);
        CHECK_EQ(program_cb_calls, 0);
        SSL_CTX_free(shared);
        SSL_CTX_free(keys);
        SSL_CTX_free(cb);
    }
    sesscache_free(cache);
}

static void without_shared_tickets_nothing_changes(void) {
    /* A cache without tickets=shared leaves stateless tickets to OpenSSL. */
    sesscache *cache = open_cache("memory:");
    REQUIRE(cache != NULL);
    SSL_CTX *a = server(TLS1_2_VERSION), *b = server(TLS1_2_VERSION);
    REQUIRE(a != NULL && b != NULL);
    CHECK_EQ(sesscache_attach(cache, a), 1);
    CHECK_EQ(sesscache_attach(cache, b), 1);
    /* The contexts keep stateless tickets (the explicit API never sets SSL_OP_NO_TICKET):
     * each opens its own, not the other's. */
    CHECK_EQ(ticket_resumes(a, a, TLS1_2_VERSION, NULL), 1);
    CHECK_EQ(ticket_resumes(a, b, TLS1_2_VERSION, NULL), 0);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    sesscache_free(cache);
}

int main(void) {
    if (!tu_identity_make(&id)) {
        tu_print_errors("identity");
        return 1;
    }
    RUN(two_attached_contexts_open_each_others_tickets);
    RUN(without_the_cache_two_contexts_do_not);
    RUN(tls13_resumptions_bring_a_new_ticket_as_without_the_library);
    RUN(own_keys_win_before_or_after_attach);
    RUN(own_callback_wins);
    RUN(force_makes_the_shared_keys_win);
    RUN(without_shared_tickets_nothing_changes);
    tu_identity_free(&id);
    return check_summary("test_tickets");
}
