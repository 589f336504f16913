/* memory: stays within max_bytes when clients authenticate with big certificate chains.
 *
 * A server that requests client certificates and accepts any (as one that checks them
 * after the handshake does) keeps, in each live SSL_SESSION, the client's certificate and
 * the whole chain the client sent; i2d_SSL_SESSION encodes only the certificate. A cache
 * that kept those live objects while counting only their DER held ~20 times what it
 * counted. Here clients send a certificate and 9 junk ones (~77 KB), thousands of full
 * handshakes (TLS 1.2 session IDs and TLS 1.3 stateful tickets) go through a
 * memory:?max_bytes=4M cache, with resumptions along the way (which keep decoded sessions
 * in the cache), and the process's resident memory must grow by less than
 * 2 x max_bytes + SLACK over a baseline taken after warm-up. */
#include <malloc.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "sesscache.h"
#include "tls_util.h"

/* (Overridable for a short run under valgrind: -DHANDSHAKES=200 -DMAX_BYTES='(256L << 10)'
 * -DURL='"memory:?max_bytes=256K"'.) */
#ifndef MAX_BYTES
#define MAX_BYTES (4L << 20)
#define URL "memory:?max_bytes=4M"
#endif
/* What the process may hold beyond twice max_bytes: glibc's heap keeps freed memory (each
 * handshake parses and frees ~77 KB of certificates, the TLS record buffers are ~34 KB per
 * connection) and fragments as cached sessions, freed and kept, interleave with them.
 * Measured here: the whole growth, the cache's content included, is ~4 MiB with entries
 * charged their cost, and 84 MiB when the cache kept OpenSSL's live objects. */
#define SLACK (8L << 20)
#define NCLIENTS 4
#define CHAIN 9       /* junk certificates after each client's own */
#define PAD 7400      /* filler bytes per certificate: ~7.7 KB each, ~77 KB per chain */
#ifndef HANDSHAKES
#define HANDSHAKES 2500
#endif
#define RESUME_EVERY 10

static tu_identity id;
static EVP_PKEY *junk_key;

typedef struct client {
    EVP_PKEY *key;
    X509 *leaf;
    unsigned char leaf_sha256[32];
    X509 *chain[CHAIN];
    SSL_CTX *ctx[2];      /* TLS 1.2, TLS 1.3 */
    SSL_SESSION *last[2]; /* the newest session of each protocol */
} client;

static client clients[NCLIENTS];
static long chain_bytes;

static int accept_all(int ok, X509_STORE_CTX *store) {
    (void)ok;
    (void)store;
    return 1;
}

static long rss(void) {
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static double mib(long bytes) {
    return (double)bytes / (1 << 20);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int versions[2] = {TLS1_2_VERSION, TLS1_3_VERSION};

static int make_client(client *c, int n) {
    char cn[64];
    snprintf(cn, sizeof cn, "client-%d.sesscache.test", n);
    c->key = EVP_EC_gen("P-256");
    unsigned int len = 0;
    if (c->key == NULL || (c->leaf = tu_cert_make(c->key, cn, 1000 + n, PAD)) == NULL ||
        X509_digest(c->leaf, EVP_sha256(), c->leaf_sha256, &len) != 1 || len != 32)
        return 0;
    chain_bytes = i2d_X509(c->leaf, NULL);
    for (int i = 0; i < CHAIN; i++) {
        snprintf(cn, sizeof cn, "junk-%d-%d.sesscache.test", n, i);
        if ((c->chain[i] = tu_cert_make(junk_key, cn, 100 * n + i, PAD)) == NULL)
            return 0;
        chain_bytes += i2d_X509(c->chain[i], NULL);
    }
    for (int v = 0; v < 2; v++) {
        SSL_CTX *ctx = c->ctx[v] = tu_client_ctx(versions[v]);
        if (ctx == NULL || SSL_CTX_use_certificate(ctx, c->leaf) != 1 ||
            SSL_CTX_use_PrivateKey(ctx, c->key) != 1)
            return 0;
        for (int i = 0; i < CHAIN; i++)
            if (SSL_CTX_add1_chain_cert(ctx, c->chain[i]) != 1)
                return 0;
    }
    return 1;
}

static void free_client(client *c) {
    for (int v = 0; v < 2; v++) {
        SSL_CTX_free(c->ctx[v]);
        SSL_SESSION_free(c->last[v]);
    }
    for (int i = 0; i < CHAIN; i++)
        X509_free(c->chain[i]);
    X509_free(c->leaf);
    EVP_PKEY_free(c->key);
}

static SSL_CTX *server_ctx(sesscache *cache, int version) {
    SSL_CTX *ctx = tu_server_ctx(&id, version);
    if (ctx == NULL)
        return NULL;
    if (sesscache_attach(cache, ctx) != 1) {
        fprintf(stderr, "attach: %s\n", sesscache_last_error());
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_all);
    return ctx;
}

/* Whether the server saw client c's certificate. */
static int peer_ok(const tu_conn_result *r, const client *c) {
    return r->peer && memcmp(r->peer_sha256, c->leaf_sha256, 32) == 0;
}

/* A full handshake of client c over protocol v; keeps its session as c->last[v]. */
static int full(SSL_CTX *server, client *c, int v) {
    tu_conn_result r;
    if (!tu_connect(server, c->ctx[v], NULL, &r))
        return 0;
    SSL_SESSION_free(c->last[v]);
    c->last[v] = r.session;
    return !r.resumed && peer_ok(&r, c);
}

/* Resumes c->last[v]; 1 if the server resumed it and saw the client's certificate. */
static int resume(SSL_CTX *server, client *c, int v) {
    tu_conn_opts o = {.resume = c->last[v]};
    tu_conn_result r;
    if (c->last[v] == NULL || !tu_connect(server, c->ctx[v], &o, &r))
        return 0;
    if (v == 1) {
        /* TLS 1.3 tickets are single-use: the next resumption needs the new one. */
        SSL_SESSION_free(c->last[v]);
        c->last[v] = r.session;
    } else {
        SSL_SESSION_free(r.session);
    }
    return r.resumed && peer_ok(&r, c);
}

static void test_rss_stays_within_max_bytes(void) {
    sesscache *cache = sesscache_open(URL);
    REQUIRE(cache != NULL);
    SSL_CTX *server[2] = {server_ctx(cache, TLS1_2_VERSION), server_ctx(cache, TLS1_3_VERSION)};
    REQUIRE(server[0] != NULL && server[1] != NULL);
    printf("    # %d clients, each sending %d certificates, %ld bytes (the last client's)\n", NCLIENTS,
           CHAIN + 1, chain_bytes);

    /* Warm-up: OpenSSL's lazily built tables, error strings, the cache's shards. */
    for (int i = 0; i < 40; i++)
        CHECK(full(server[i % 2], &clients[i % NCLIENTS], i % 2));
    malloc_trim(0);
    long base = rss(), peak = base;
    REQUIRE(base > 0);

    double t0 = now_s();
    int fulls = 0, resumptions = 0, resumed = 0, failed = 0;
    for (int i = 0; i < HANDSHAKES; i++) {
        /* One in five is TLS 1.3 (two stateful tickets stored each). */
        int v = i % 5 == 4;
        client *c = &clients[i % NCLIENTS];
        if (full(server[v], c, v))
            fulls++;
        else
            failed++;
        /* Now and then, resume the TLS 1.2 session just made: nothing was stored since, so
         * eviction cannot have taken it, and it must resume. */
        if (v == 0 && i % RESUME_EVERY == RESUME_EVERY - 2) {
            resumptions++;
            resumed += resume(server[0], c, 0);
        }
        if (i % 100 == 99) {
            long now = rss();
            if (now > peak)
                peak = now;
        }
    }
    double secs = now_s() - t0;
    long end = rss();
    if (end > peak)
        peak = end;
    sesscache_stats st;
    CHECK(sesscache_get_stats(cache, &st, sizeof st) > 0);
    long bound = 2 * MAX_BYTES + SLACK;
    printf("    # %d full handshakes (%d failed) and %d resumptions (%d resumed) in %.1f s\n", fulls, failed,
           resumptions, resumed, secs);
    printf("    # cache: %llu entries, %llu bytes charged (max_bytes %ld), %llu stores, %llu evictions, %llu hits\n",
           (unsigned long long)st.entries, (unsigned long long)st.bytes, MAX_BYTES,
           (unsigned long long)st.stores, (unsigned long long)st.evictions, (unsigned long long)st.hits);
    printf("    # RSS: baseline %.1f MiB, end %.1f MiB, peak %.1f MiB: growth %.1f MiB (bound %.1f MiB = 2 x max_bytes + %.0f MiB)\n",
           mib(base), mib(end), mib(peak), mib(peak - base), mib(bound), mib(SLACK));
    CHECK_EQ(failed, 0);
    CHECK_EQ(resumed, resumptions);
    CHECK(peak - base <= bound);
    CHECK(st.bytes <= (unsigned long long)MAX_BYTES);
    CHECK(st.entries > 0);
    CHECK(st.evictions > 0);
    CHECK_EQ(st.errors, 0);

    /* New sessions still resume, with the client's certificate: TLS 1.2 twice (the second
     * from the object the first lookup decoded), TLS 1.3 once per ticket. Each is made just
     * before, so that no store in between can have evicted it. */
    double first = 0, second = 0;
    for (int n = 0; n < NCLIENTS; n++) {
        CHECK(full(server[0], &clients[n], 0));
        double t = now_s();
        CHECK(resume(server[0], &clients[n], 0));
        first += now_s() - t;
        t = now_s();
        CHECK(resume(server[0], &clients[n], 0));
        second += now_s() - t;
        CHECK(full(server[1], &clients[n], 1));
        CHECK(resume(server[1], &clients[n], 1));
    }
    printf("    # TLS 1.2 resumption, both ends: %.0f us decoding the stored session, %.0f us from the decoded one kept\n",
           first / NCLIENTS * 1e6, second / NCLIENTS * 1e6);
    CHECK(sesscache_get_stats(cache, &st, sizeof st) > 0);
    CHECK(st.bytes <= (unsigned long long)MAX_BYTES);
    CHECK_EQ(st.errors, 0);

    SSL_CTX_free(server[0]);
    SSL_CTX_free(server[1]);
    sesscache_free(cache);
}

int main(void) {
    if (!tu_identity_make(&id) || (junk_key = EVP_EC_gen("P-256")) == NULL) {
        fprintf(stderr, "cannot make keys\n");
        return 1;
    }
    int made = 1;
    for (int n = 0; n < NCLIENTS; n++)
        made = made && make_client(&clients[n], n);
    if (!made) {
        fprintf(stderr, "cannot make the clients\n");
        return 1;
    }
    RUN(test_rss_stays_within_max_bytes);
    for (int n = 0; n < NCLIENTS; n++)
        free_client(&clients[n]);
    EVP_PKEY_free(junk_key);
    tu_identity_free(&id);
    return check_summary("test_memory_bound");
}
