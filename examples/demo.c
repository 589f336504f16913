/* demo: one sesscache shared by two server contexts.
 *
 * A server that runs several SSL_CTXs (virtual hosts, workers with their own contexts)
 * normally has one OpenSSL session cache per context, so a client that comes back to a
 * different context pays for a full handshake. Attach the same sesscache to every context
 * and they share one store: a session made on server A resumes on server B.
 *
 * The demo opens a cache (URL from argv[1], default "memory:"), makes two server contexts
 * A and B (same certificate and session ID context, stateful TLS 1.3 tickets), attaches
 * the cache to both, and connects a client over in-memory BIO pairs:
 *
 *   TLS 1.2 (session IDs)       conn 1  A  full handshake, the client gets a session
 *                               conn 2  B  resumes that session: it crossed contexts
 *                               conn 3  A  resumes the same session again
 *   TLS 1.3 (stateful tickets)  conn 1  A  full handshake, the client gets a ticket
 *                               conn 2  B  resumes with it; the cache consumes the ticket
 *                                          (single-use by default) and the client gets a
 *                                          fresh one
 *                               conn 3  A  resumes with the fresh ticket
 *                               conn 4  A  replays the old ticket of conn 1: full handshake
 *
 * Then it prints the cache's counters. Try also: ./build/demo 'memory:?single_use=0'
 * (conn 4 then resumes) or ./build/demo 'memory:?capacity=banana' (an error, exit 2).
 * The times are those of the whole connection (handshake, tickets, close), client and
 * server together in this one thread. */
#include <openssl/ssl.h>
#include <stdio.h>
#include <time.h>

#include "sesscache.h"
#include "tls_util.h"

enum { A = 0, B = 1 };

/* One connection of the script: which server, and whose session the client offers. */
typedef struct step {
    int server;       /* A or B */
    int offer;        /* offer the session the client got from connection `offer`; 0: none */
    const char *what; /* what the client offers, for the table */
} step;

static const step tls12_steps[] = {
    {A, 0, "nothing (new client)"},
    {B, 1, "session from conn 1"},
    {A, 1, "session from conn 1, again"},
};
static const step tls13_steps[] = {
    {A, 0, "nothing (new client)"},
    {B, 1, "ticket from conn 1"},
    {A, 2, "fresh ticket from conn 2"},
    {A, 1, "ticket from conn 1, replayed"},
};
#define MAX_STEPS 4

static double micros_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e6 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e3;
}

/* A server context for `version` that uses `cache` as its session store. */
static SSL_CTX *server_with_cache(sesscache *cache, const tu_identity *id, int version) {
    SSL_CTX *ctx = tu_server_ctx(id, version);
    if (ctx != NULL && sesscache_attach(cache, ctx) != 1) {
        fprintf(stderr, "demo: sesscache_attach: %s\n", sesscache_last_error());
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Runs the script of one protocol and prints its rows. Returns 1 if all went as it should. */
static int run_protocol(sesscache *cache, const tu_identity *id, int version) {
    const int tls13 = version == TLS1_3_VERSION;
    const step *steps = tls13 ? tls13_steps : tls12_steps;
    const int nsteps = tls13 ? 4 : 3;
    SSL_SESSION *session[MAX_STEPS + 1] = {NULL}; /* session[i]: what the client got from conn i */
    int resumed[MAX_STEPS + 1] = {0};
    int ok = 0;

    /* Two servers, one cache: sesscache_attach gives each context a reference to it. */
    SSL_CTX *server[2] = {server_with_cache(cache, id, version), server_with_cache(cache, id, version)};
    SSL_CTX *client = tu_client_ctx(version);
    if (server[A] == NULL || server[B] == NULL || client == NULL)
        goto out;

    for (int i = 1; i <= nsteps; i++) {
        const step *s = &steps[i - 1];
        tu_conn_opts opts = {.resume = session[s->offer]}; /* session[0] is NULL: offer none */
        tu_conn_result res;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (!tu_connect(server[s->server], client, &opts, &res)) {
            fprintf(stderr, "demo: connection %d failed\n", i);
            goto out;
        }
        double us = micros_since(&t0);
        session[i] = res.session;
        resumed[i] = res.resumed;
        printf("%4d  %-8s  %-6c  %-8s  %9.0f  %s\n", i, tls13 ? "TLS1.3" : "TLS1.2",
               s->server == A ? 'A' : 'B', res.resumed ? "resumed" : "full", us, s->what);
    }

    ok = !resumed[1] && resumed[2];
    if (!resumed[2])
        printf("      !! conn 2 was not resumed: the session did not reach server B\n");
    if (tls13) {
        if (resumed[4])
            printf("      conn 4 resumed: this cache keeps tickets reusable (single_use=0)\n");
        else
            printf("      conn 4 was a full handshake: the cache consumed that ticket at conn 2\n"
                   "      (TLS 1.3 tickets are single-use by default, which stops replays)\n");
    }
out:
    for (int i = 0; i <= MAX_STEPS; i++)
        SSL_SESSION_free(session[i]);
    SSL_CTX_free(client);
    SSL_CTX_free(server[A]);
    SSL_CTX_free(server[B]);
    return ok;
}

static void print_stats(const sesscache *cache) {
    sesscache_stats st;
    if (sesscache_get_stats(cache, &st, sizeof st) == 0)
        return;
    printf("\ncache stats:\n");
    printf("  lookups     %6llu   get-session calls answered by the cache\n", (unsigned long long)st.lookups);
    printf("  hits        %6llu   lookups that found a session\n", (unsigned long long)st.hits);
    printf("  misses      %6llu   lookups that found nothing\n", (unsigned long long)st.misses);
    printf("  stores      %6llu   sessions stored\n", (unsigned long long)st.stores);
    printf("  removes     %6llu   sessions removed on OpenSSL's request\n", (unsigned long long)st.removes);
    printf("  evictions   %6llu   live sessions evicted to make room\n", (unsigned long long)st.evictions);
    printf("  expirations %6llu   expired sessions dropped\n", (unsigned long long)st.expirations);
    printf("  rejected    %6llu   bad session IDs, oversized sessions\n", (unsigned long long)st.rejected);
    printf("  errors      %6llu   undecodable data, internal errors\n", (unsigned long long)st.errors);
    printf("  entries     %6llu   sessions held now\n", (unsigned long long)st.entries);
    printf("  bytes       %6llu   bytes held now (memory: as max_bytes counts them)\n", (unsigned long long)st.bytes);
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : "memory:";

    /* One cache for the whole process; NULL and a message if the URL is wrong. */
    sesscache *cache = sesscache_open(url);
    if (cache == NULL) {
        fprintf(stderr, "demo: cannot open cache '%s': %s\n", url, sesscache_last_error());
        return 2;
    }

    tu_identity id;
    if (!tu_identity_make(&id)) {
        sesscache_free(cache);
        return 1;
    }

    printf("sesscache %s, cache \"%s\", servers A and B share it\n\n", sesscache_version(), url);
    printf("conn  protocol  server  result    time(us)  client offers\n");
    int ok = run_protocol(cache, &id, TLS1_2_VERSION);
    ok = run_protocol(cache, &id, TLS1_3_VERSION) && ok;
    print_stats(cache);

    /* The contexts are gone, so this releases the last reference and the cache itself. */
    sesscache_free(cache);
    tu_identity_free(&id);
    return ok ? 0 : 1;
}
