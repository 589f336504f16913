/* Handshake throughput: sesscache against OpenSSL's internal session cache.
 *
 * Both ends of every connection run in this one thread over an in-memory BIO pair
 * (tu_connect), so the figures are CPU cost per handshake, client and server together,
 * with no network in the way (except to a redis:// backend). Two protocols are measured:
 *   TLS 1.2  resumption by session ID;
 *   TLS 1.3  resumption by stateful ticket (tu_server_ctx sets SSL_OP_NO_TICKET).
 * and these server configurations:
 *   baseline   OpenSSL's internal cache (default server cache mode, nothing attached);
 *   memory     sesscache_open("memory:?single_use=0") attached to the server context
 *              (which switches the internal cache off);
 *   shm        sesscache_open("shm:bench-PID?size=8M&single_use=0"): shared memory;
 *   redis      BENCH_REDIS_URL (with single_use=0) when it is set: one round trip to Redis
 *              per lookup, values sealed (c-tests/bench.sh starts a redis-server on
 *              loopback and sets it);
 *   redis-l1   the same with l1=1000: reusable sessions also kept in this process.
 * Two kinds of handshakes: resumed (the cache answers every one) and full (the cache
 * stores every new session: what a store costs the handshake that makes it).
 * single_use=0 lets the same TLS 1.3 ticket be offered in every iteration; OpenSSL's
 * internal cache does not enforce single use of stateful tickets either, so all
 * configurations do the same work. (TLS 1.2 session IDs are never single-use.)
 *
 * Each measurement starts from a fresh server context (and, for memory:, a fresh cache;
 * the shm: and redis caches outlive their handles, and only their counters' growth is
 * counted): for resumptions, one full handshake gives the client a session (a redis store
 * is asynchronous: the bench waits until the session resumes), a few untimed resumptions
 * warm up, then resumptions of that session run for the configured time; every one must
 * resume or the program stops with an error. A round measures every configuration,
 * starting with a different one each round, so that drift on a noisy machine falls on all
 * alike. Reported per protocol and kind: the median rate of each configuration and the
 * median of the per-round ratios cache/baseline.
 *
 * Usage: bench_resume [--quick] [--rounds N] [--seconds S]
 *   environment: BENCH_ROUNDS, BENCH_SECONDS (the options win); defaults 7 rounds, 0.5 s;
 *   BENCH_REDIS_URL: a redis:// URL to measure too (make bench sets it); BENCH_ONLY=NAME:
 *   the baseline and that configuration only.
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

enum { BASELINE = 0, MAX_CONFIGS = 5 };
enum { RESUMED = 0, FULL = 1, NKINDS = 2 };
static const char *const kind_name[NKINDS] = {"resumed", "full"};

/* A server configuration: its name and sesscache URL (NULL: OpenSSL's internal cache). */
typedef struct config {
    const char *name;
    char url[1024];
    int async; /* stores reach the cache after the handshake (redis) */
} config;
static config configs[MAX_CONFIGS];
static int nconfigs;
static char shm_object[64];

static void add_config(const char *name, const char *url, int async) {
    /* BENCH_ONLY=NAME: the baseline and that configuration only (for profiling one). */
    const char *only = getenv("BENCH_ONLY");
    if (url != NULL && only != NULL && *only != '\0' && strcmp(only, name) != 0)
        return;
    config *c = &configs[nconfigs++];
    c->name = name;
    c->async = async;
    if (url != NULL && (size_t)snprintf(c->url, sizeof c->url, "%s", url) >= sizeof c->url) {
        fprintf(stderr, "bench_resume: the URL of %s is too long\n", name);
        exit(2);
    }
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

/* Until the server resumes `sess` (a store that is still on its way to the cache), at most
 * 2 s; stops the program if it never does. */
static void settle(SSL_CTX *server, SSL_CTX *client, SSL_SESSION *sess, const char *cfg) {
    double t0 = now();
    for (;;) {
        tu_conn_opts o = {.resume = sess};
        tu_conn_result r;
        if (!tu_connect(server, client, &o, &r)) {
            fprintf(stderr, "bench_resume: %s: handshake failed\n", cfg);
            exit(1);
        }
        SSL_SESSION_free(r.session);
        if (r.resumed)
            return;
        if (now() - t0 > 2.0) {
            fprintf(stderr, "bench_resume: %s: the stored session never resumed\n", cfg);
            exit(1);
        }
    }
}

/* One full handshake (the server stores a new session); stops the program on failure. */
static void full_once(SSL_CTX *server, SSL_CTX *client, const char *cfg) {
    tu_conn_result r;
    if (!tu_connect(server, client, NULL, &r) || r.resumed) {
        fprintf(stderr, "bench_resume: %s: full handshake failed\n", cfg);
        exit(1);
    }
    SSL_SESSION_free(r.session);
}

/* One measurement: handshakes of `kind` per second for configuration `c` over `seconds`. */
static double measure(int version, int c, int kind, double seconds, SSL_CTX *client, totals *t) {
    char label[96];
    snprintf(label, sizeof label, "%s %s %s", proto_name(version), configs[c].name,
             kind_name[kind]);

    SSL_CTX *server = tu_server_ctx(&id, version);
    if (server == NULL)
        die("cannot make the server context");
    sesscache *cache = NULL;
    sesscache_stats before = {0};
    if (c != BASELINE) {
        cache = sesscache_open(configs[c].url);
        if (cache == NULL || sesscache_attach(cache, server) != 1) {
            fprintf(stderr, "bench_resume: %s: %s\n", label, sesscache_last_error());
            exit(1);
        }
        /* shm: and redis caches outlive the handle: count only this measurement's events. */
        if (sesscache_get_stats(cache, &before, sizeof before) == 0)
            die("sesscache_get_stats failed");
    } else {
        /* OpenSSL's default for servers, stated here for the reader. */
        SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_SERVER);
    }

    tu_conn_result first;
    if (!tu_connect(server, client, NULL, &first) || first.session == NULL)
        die("the first (full) handshake failed");
    if (first.resumed || first.version != version)
        die("the first handshake was not a full handshake of the requested version");
    if (kind == RESUMED && configs[c].async)
        settle(server, client, first.session, label);

    for (int i = 0; i < WARMUP; i++) {
        if (kind == RESUMED)
            resume_once(server, client, first.session, label);
        else
            full_once(server, client, label);
    }

    unsigned long long n = 0;
    double t0 = now(), t1;
    do {
        if (kind == RESUMED)
            resume_once(server, client, first.session, label);
        else
            full_once(server, client, label);
        n++;
        t1 = now();
    } while (t1 - t0 < seconds);

    if (c != BASELINE) {
        sesscache_stats s;
        if (sesscache_get_stats(cache, &s, sizeof s) == 0)
            die("sesscache_get_stats failed");
        t->stats.lookups += s.lookups - before.lookups;
        t->stats.hits += s.hits - before.hits;
        t->stats.misses += s.misses - before.misses;
        t->stats.stores += s.stores - before.stores;
        t->stats.evictions += s.evictions - before.evictions;
        t->stats.errors += s.errors - before.errors;
        t->stats.queue_drops += s.queue_drops - before.queue_drops;
        t->resumed += kind == RESUMED ? n + WARMUP : 0;
    } else {
        t->internal_hits += (unsigned long long)SSL_CTX_sess_hits(server);
    }
    SSL_SESSION_free(first.session);
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
    char url[1024];
    add_config("baseline", NULL, 0);
    add_config("memory", "memory:?single_use=0", 0);
    snprintf(shm_object, sizeof shm_object, "/sesscache-bench-%d", (int)getpid());
    snprintf(url, sizeof url, "shm:bench-%d?size=8M&single_use=0", (int)getpid());
    add_config("shm", url, 0);
    const char *redis = getenv("BENCH_REDIS_URL");
    if (redis != NULL && *redis != '\0') {
        const char *sep = strchr(redis, '?') ? "&" : "?";
        snprintf(url, sizeof url, "%s%ssingle_use=0", redis, sep);
        add_config("redis", url, 1);
        snprintf(url, sizeof url, "%s%ssingle_use=0&l1=1000", redis, sep);
        add_config("redis-l1", url, 1);
    }

    static double med[NPROTO][NKINDS][MAX_CONFIGS], med_ratio[NPROTO][NKINDS][MAX_CONFIGS];
    static totals tot[NPROTO][NKINDS][MAX_CONFIGS];

    printf("sesscache %s, %s: handshakes over in-memory BIO pairs, one thread\n",
           sesscache_version(), OpenSSL_version(OPENSSL_VERSION));
    printf("%d round(s) of %.2f s per configuration and kind; configurations:\n", rounds, seconds);
    for (int c = 0; c < nconfigs; c++)
        printf("  %-9s %s\n", configs[c].name,
               c == BASELINE ? "OpenSSL's internal cache" : configs[c].url);
    if (redis == NULL || *redis == '\0')
        printf("  (redis: not measured; BENCH_REDIS_URL is not set: `make bench` sets it)\n");
    printf("TLS 1.3 uses stateful tickets with single_use=0, so one ticket is resumed every "
           "iteration\n(OpenSSL's internal cache does not enforce single use either).\n\n");
    fflush(stdout);

    static double rate[MAX_CONFIGS][MAX_ROUNDS], ratio[MAX_CONFIGS][MAX_ROUNDS];
    for (int p = 0; p < NPROTO; p++) {
        SSL_CTX *client = tu_client_ctx(versions[p]);
        if (client == NULL)
            die("cannot make the client context");
        for (int k = 0; k < NKINDS; k++) {
            for (int r = 0; r < rounds; r++) {
                /* Rotate the order every round so that drift falls on every configuration. */
                for (int i = 0; i < nconfigs; i++) {
                    int c = (i + r) % nconfigs;
                    rate[c][r] = measure(versions[p], c, k, seconds, client, &tot[p][k][c]);
                }
                printf("  %s %s round %d/%d:", proto_name(versions[p]), kind_name[k], r + 1, rounds);
                for (int c = 0; c < nconfigs; c++) {
                    ratio[c][r] = rate[c][r] / rate[BASELINE][r];
                    printf(c == BASELINE ? " %s %.0f hs/s" : ", %s %.0f (%.3f)", configs[c].name,
                           rate[c][r], ratio[c][r]);
                }
                printf("\n");
                fflush(stdout);
            }
            for (int c = 0; c < nconfigs; c++) {
                med[p][k][c] = median(rate[c], rounds);
                med_ratio[p][k][c] = median(ratio[c], rounds);
            }
        }
        SSL_CTX_free(client);
    }

    printf("\n%-16s", "protocol/kind");
    for (int c = 0; c < nconfigs; c++)
        printf(c == BASELINE ? " %9s(hs/s)" : " %9s(hs/s)  ratio", configs[c].name);
    printf(" %7s\n", "rounds");
    for (int p = 0; p < NPROTO; p++) {
        for (int k = 0; k < NKINDS; k++) {
            char label[32];
            snprintf(label, sizeof label, "%s/%s", proto_name(versions[p]), kind_name[k]);
            printf("%-16s", label);
            for (int c = 0; c < nconfigs; c++)
                printf(c == BASELINE ? " %15.0f" : " %15.0f %6.3f", med[p][k][c], med_ratio[p][k][c]);
            printf(" %7d\n", rounds);
        }
    }
    printf("(ratio: median over the rounds of cache/baseline measured in the same round)\n");

    printf("\ncache stats of the resumed measurements (summed; baseline = OpenSSL's own hits):\n");
    printf("%-16s %12s %12s %10s %10s %12s %15s\n", "protocol/cache", "resumptions", "hits", "misses",
           "stores", "lookups", "baseline hits");
    int bad = 0;
    for (int p = 0; p < NPROTO; p++) {
        for (int c = 1; c < nconfigs; c++) {
            const totals *t = &tot[p][RESUMED][c];
            char label[32];
            snprintf(label, sizeof label, "%s/%s", proto_name(versions[p]), configs[c].name);
            printf("%-16s %12llu %12llu %10llu %10llu %12llu %15llu\n", label, t->resumed,
                   (unsigned long long)t->stats.hits, (unsigned long long)t->stats.misses,
                   (unsigned long long)t->stats.stores, (unsigned long long)t->stats.lookups,
                   tot[p][RESUMED][BASELINE].internal_hits);
            /* Every resumption with a cache attached must have been answered by the cache. */
            if (t->stats.hits == 0 || t->stats.hits < t->resumed) {
                fprintf(stderr, "bench_resume: %s: hits (%llu) do not cover the %llu resumptions\n",
                        label, (unsigned long long)t->stats.hits, t->resumed);
                bad = 1;
            }
            for (int k = 0; k < NKINDS; k++) {
                const totals *u = &tot[p][k][c];
                if (u->stats.errors != 0) {
                    fprintf(stderr, "bench_resume: %s %s: the cache counted %llu errors\n", label,
                            kind_name[k], (unsigned long long)u->stats.errors);
                    bad = 1;
                }
                if (u->stats.queue_drops != 0)
                    printf("  (%s %s: %llu stores dropped: the write queue was full)\n", label,
                           kind_name[k], (unsigned long long)u->stats.queue_drops);
            }
        }
    }
    shm_unlink(shm_object);

    tu_identity_free(&id);
    return bad;
}
