/* Resumed-handshake throughput: sesscache against OpenSSL's internal session cache.
 *
 * Both ends of every connection run in this one thread over an in-memory BIO pair
 * (tu_connect), so the figures are CPU cost per resumed handshake, client and server
 * together, with no network in the way. Two protocols are measured:
 *   TLS 1.2  resumption by session ID;
 *   TLS 1.3  resumption by stateful ticket (tu_server_ctx sets SSL_OP_NO_TICKET).
 * and three server configurations:
 *   baseline   OpenSSL's internal cache (default server cache mode, nothing attached);
 *   memory     sesscache_open("memory:?single_use=0") attached to the server context
 *              (which switches the internal cache off);
 *   shm        sesscache_open("shm:bench-PID?size=8M&single_use=0"): the shared-memory
 *              backend, which decodes the DER on every hit.
 * single_use=0 lets the same TLS 1.3 ticket be offered in every iteration; OpenSSL's
 * internal cache does not enforce single use of stateful tickets either, so all
 * configurations do the same work. (TLS 1.2 session IDs are never single-use.)
 *
 * Each measurement starts from a fresh server context (and, for memory:, a fresh cache;
 * the shm: segment is reopened and only its counters' growth is counted): one full
 * handshake gives the client a session, a few untimed resumptions warm up, then
 * resumptions of that session run for the configured time; every one must resume or the
 * program stops with an error. A round measures every configuration, starting with a
 * different one each round, so that drift on a noisy machine falls on all alike. Reported
 * per protocol: the median rate of each configuration and the median of the per-round
 * ratios cache/baseline.
 *
 * Usage: bench_resume [--quick] [--rounds N] [--seconds S]
 *   environment: BENCH_ROUNDS, BENCH_SECONDS (the options win); defaults 7 rounds, 0.5 s.
 *   --quick: 1 round of 0.05 s per measurement (a smoke run).
 * Exit status: 0 on success, 1 on any failed or non-resumed handshake, 2 on bad usage. */
#include <openssl/ssl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sesscache.h"
#include "tls_util.h"

#define MAX_ROUNDS 1000
#define WARMUP 20
#define CACHE_URL "memory:?single_use=0"

enum { BASELINE = 0, MEMORY = 1, SHM = 2, NCONFIGS = 3 };
static const char *const config_name[NCONFIGS] = {"baseline", "memory", "shm"};
static char shm_url[96], shm_object[64];

static const char *cache_url(int config) {
    return config == SHM ? shm_url : CACHE_URL;
}

static tu_identity id;

/* Totals over every sesscache measurement of one protocol. */
typedef struct totals {
    sesscache_stats stats;       /* summed over the caches opened */
    unsigned long long resumed;  /* resumptions done with sesscache attached (incl. warm-up) */
    unsigned long long internal_hits; /* SSL_CTX_sess_hits of the baseline contexts */
} totals;

static void die(const char *what) {
    fprintf(stderr, "bench_resume: %s\n", what);
    tu_print_errors("bench_resume");
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *proto_name(int version) {
    return version == TLS1_3_VERSION ? "TLS1.3" : "TLS1.2";
}

/* One resumption of `sess`; stops the program unless the server resumed. */
static void resume_once(SSL_CTX *server, SSL_CTX *client, SSL_SESSION *sess, const char *cfg) {
    tu_conn_opts o = {.resume = sess};
    tu_conn_result r;
    if (!tu_connect(server, client, &o, &r)) {
        fprintf(stderr, "bench_resume: %s: handshake failed\n", cfg);
        exit(1);
    }
    SSL_SESSION_free(r.session);
    if (!r.resumed) {
        fprintf(stderr, "bench_resume: %s: the server did not resume the session\n", cfg);
        exit(1);
    }
}

/* One measurement: resumed handshakes per second for `config` over `seconds`. */
static double measure(int version, int config, double seconds, SSL_CTX *client, totals *t) {
    char label[64];
    snprintf(label, sizeof label, "%s %s", proto_name(version), config_name[config]);

    SSL_CTX *server = tu_server_ctx(&id, version);
    if (server == NULL)
        die("cannot make the server context");
    sesscache *cache = NULL;
    sesscache_stats before = {0};
    if (config != BASELINE) {
        cache = sesscache_open(cache_url(config));
        if (cache == NULL || sesscache_attach(cache, server) != 1) {
            fprintf(stderr, "bench_resume: %s: %s\n", label, sesscache_last_error());
            exit(1);
        }
        /* A shm: segment outlives the handle: count only this measurement's events. */
        if (sesscache_get_stats(cache, &before, sizeof before) == 0)
            die("sesscache_get_stats failed");
    } else {
        /* OpenSSL's default for servers, stated here for the reader. */
        SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_SERVER);
    }

    tu_conn_result full;
    if (!tu_connect(server, client, NULL, &full) || full.session == NULL)
        die("the first (full) handshake failed");
    if (full.resumed || full.version != version)
        die("the first handshake was not a full handshake of the requested version");

    for (int i = 0; i < WARMUP; i++)
        resume_once(server, client, full.session, label);

    unsigned long long n = 0;
    double t0 = now(), t1;
    do {
        resume_once(server, client, full.session, label);
        n++;
        t1 = now();
    } while (t1 - t0 < seconds);

    if (config != BASELINE) {
        sesscache_stats s;
        if (sesscache_get_stats(cache, &s, sizeof s) == 0)
            die("sesscache_get_stats failed");
        t->stats.lookups += s.lookups - before.lookups;
        t->stats.hits += s.hits - before.hits;
        t->stats.misses += s.misses - before.misses;
        t->stats.stores += s.stores - before.stores;
        t->stats.evictions += s.evictions - before.evictions;
        t->stats.errors += s.errors - before.errors;
        t->resumed += n + WARMUP;
    } else {
        t->internal_hits += (unsigned long long)SSL_CTX_sess_hits(server);
    }
    SSL_SESSION_free(full.session);
    SSL_CTX_free(server);
    sesscache_free(cache);
    return (double)n / (t1 - t0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double tmp[MAX_ROUNDS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static int parse_rounds(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 1 || v > MAX_ROUNDS)
        return 0;
    *out = (int)v;
    return 1;
}

static int parse_seconds(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0 && v <= 3600))
        return 0;
    *out = v;
    return 1;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_resume [--quick] [--rounds N (1-%d)] [--seconds S (>0)]\n"
                    "       (or BENCH_ROUNDS / BENCH_SECONDS in the environment)\n",
            MAX_ROUNDS);
    exit(2);
}

int main(int argc, char **argv) {
    int rounds = 7;
    double seconds = 0.5;
    const char *e;
    if ((e = getenv("BENCH_ROUNDS")) != NULL && *e != '\0' && !parse_rounds(e, &rounds))
        usage();
    if ((e = getenv("BENCH_SECONDS")) != NULL && *e != '\0' && !parse_seconds(e, &seconds))
        usage();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            rounds = 1;
            seconds = 0.05;
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            if (!parse_rounds(argv[++i], &rounds))
                usage();
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            if (!parse_seconds(argv[++i], &seconds))
                usage();
        } else {
            usage();
        }
    }

    if (!tu_identity_make(&id))
        die("cannot make the test identity");

    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    enum { NPROTO = 2 };
    double med[NPROTO][NCONFIGS], med_ratio[NPROTO][NCONFIGS];
    totals tot[NPROTO][NCONFIGS];
    memset(tot, 0, sizeof tot);
    snprintf(shm_object, sizeof shm_object, "/sesscache-bench-%d", (int)getpid());
    snprintf(shm_url, sizeof shm_url, "shm:bench-%d?size=8M&single_use=0", (int)getpid());

    printf("sesscache %s, %s: resumed handshakes over in-memory BIO pairs, one thread\n",
           sesscache_version(), OpenSSL_version(OPENSSL_VERSION));
    printf("%d round(s) of %.2f s per configuration; sesscache URLs \"%s\" and \"%s\"\n", rounds,
           seconds, CACHE_URL, shm_url);
    printf("TLS 1.3 uses stateful tickets with single_use=0, so one ticket is resumed every "
           "iteration\n(OpenSSL's internal cache does not enforce single use either).\n\n");
    fflush(stdout);

    for (int p = 0; p < NPROTO; p++) {
        SSL_CTX *client = tu_client_ctx(versions[p]);
        if (client == NULL)
            die("cannot make the client context");
        double rate[NCONFIGS][MAX_ROUNDS], ratio[NCONFIGS][MAX_ROUNDS];
        for (int r = 0; r < rounds; r++) {
            /* Rotate the order every round so that drift falls on every configuration. */
            for (int k = 0; k < NCONFIGS; k++) {
                int c = (k + r) % NCONFIGS;
                rate[c][r] = measure(versions[p], c, seconds, client, &tot[p][c]);
            }
            for (int c = 0; c < NCONFIGS; c++)
                ratio[c][r] = rate[c][r] / rate[BASELINE][r];
            printf("  %s round %d/%d: baseline %.0f hs/s, memory %.0f hs/s (%.3f), shm %.0f hs/s (%.3f)\n",
                   proto_name(versions[p]), r + 1, rounds, rate[BASELINE][r], rate[MEMORY][r],
                   ratio[MEMORY][r], rate[SHM][r], ratio[SHM][r]);
            fflush(stdout);
        }
        for (int c = 0; c < NCONFIGS; c++) {
            med[p][c] = median(rate[c], rounds);
            med_ratio[p][c] = median(ratio[c], rounds);
        }
        SSL_CTX_free(client);
    }

    printf("\n%-9s %15s %14s %8s %14s %8s %7s\n", "protocol", "baseline(hs/s)", "memory(hs/s)",
           "ratio", "shm(hs/s)", "ratio", "rounds");
    for (int p = 0; p < NPROTO; p++)
        printf("%-9s %15.0f %14.0f %8.3f %14.0f %8.3f %7d\n", proto_name(versions[p]), med[p][BASELINE],
               med[p][MEMORY], med_ratio[p][MEMORY], med[p][SHM], med_ratio[p][SHM], rounds);
    printf("(ratio: median over the rounds of cache/baseline measured in the same round)\n");

    printf("\ncache stats (summed over the measurements; baseline = OpenSSL's own hits):\n");
    printf("%-16s %12s %12s %10s %10s %12s %15s\n", "protocol/cache", "resumptions", "hits", "misses",
           "stores", "lookups", "baseline hits");
    int bad = 0;
    for (int p = 0; p < NPROTO; p++) {
        for (int c = MEMORY; c < NCONFIGS; c++) {
            const totals *t = &tot[p][c];
            char label[32];
            snprintf(label, sizeof label, "%s/%s", proto_name(versions[p]), config_name[c]);
            printf("%-16s %12llu %12llu %10llu %10llu %12llu %15llu\n", label, t->resumed,
                   (unsigned long long)t->stats.hits, (unsigned long long)t->stats.misses,
                   (unsigned long long)t->stats.stores, (unsigned long long)t->stats.lookups,
                   tot[p][BASELINE].internal_hits);
            /* Every resumption with a cache attached must have been answered by the cache. */
            if (t->stats.hits == 0 || t->stats.hits < t->resumed) {
                fprintf(stderr, "bench_resume: %s: hits (%llu) do not cover the %llu resumptions\n",
                        label, (unsigned long long)t->stats.hits, t->resumed);
                bad = 1;
            }
            if (t->stats.errors != 0) {
                fprintf(stderr, "bench_resume: %s: the cache counted %llu errors\n", label,
                        (unsigned long long)t->stats.errors);
                bad = 1;
            }
        }
    }
    shm_unlink(shm_object);

    tu_identity_free(&id);
    return bad;
}
