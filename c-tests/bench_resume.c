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
 *
 * Modes:
 *   --threads N     N threads (1-16) share the server context (and its cache), each with a
 *                   session of its own: how the stores scale against OpenSSL's internal
 *                   cache, which takes one lock per context.
 *   --processes N   N processes (2-16), forked after the cache is opened (a prefork server),
 *                   each with its own server context; every process offers the sessions of
 *                   every process in turn, as returning clients spread over workers would:
 *                   OpenSSL's internal cache resumes only a process's own (the resumed
 *                   fraction is reported), a shared cache all of them. memory: is left out
 *                   (it is one process's, like the baseline).
 *   --client-cert   clients present a certificate (mutual TLS), so every stored session
 *                   carries the client's certificate.
 *   --tickets       stateless tickets (tickets=shared): the baseline is OpenSSL's own
 *                   ticket keys (tickets on, its session cache off, so that a resumption can
 *                   only be a ticket's), the other configurations the same server context
 *                   with the cache attached and `tickets=shared` in its URL (memory:, shm:,
 *                   redis when BENCH_REDIS_URL is set): our ticket key callback encrypts and
 *                   decrypts every ticket under the keys the backend holds. With
 *                   --threads 1, the cost of the callback against OpenSSL's own key
 *                   handling; with --processes N, every process (a server context and, for
 *                   the shared configurations, a cache opened after the fork: N separate
 *                   servers, N "hosts" on redis://) offers only the tickets other processes
 *                   issued: OpenSSL's per-process keys resume none of them, shared keys all.
 *
 * Usage: bench_resume [--quick] [--rounds N] [--seconds S] [--threads N | --processes N]
 *                     [--client-cert | --tickets]
 *   environment: BENCH_ROUNDS, BENCH_SECONDS (the options win); defaults 7 rounds, 0.5 s;
 *   BENCH_REDIS_URL: a redis:// URL to measure too (make bench sets it, and BENCH_REDIS_PID,
 *   its server's process ID); BENCH_ONLY=NAME:
 *   the baseline and that configuration only; BENCH_TICKET_SIZE (set): with --tickets, the
 *   length of each first ticket on stderr (TLS 1.3 tickets are 208 or 224 bytes, by the
 *   session's encoding).
 *   --quick: 1 round of 0.05 s per measurement (a smoke run).
 * Output: tables as it goes, then "result" lines (one per figure: mode, protocol, kind,
 * configuration, median hs/s, median/min/max of the per-round ratios, resumed fraction,
 * rounds), "counts" lines (lookups and stores a configuration's caches counted) and, with
 * threads, "cpu" lines (the CPU time of a handshake in the handshaking threads, in the
 * library's own threads, and in the redis-server that BENCH_REDIS_PID names), which
 * c-tests/bench.sh collects for docs/bench.md.
 * Exit status: 0 on success, 1 on any failed or non-resumed handshake, 2 on bad usage. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <valgrind/callgrind.h>

#include "sesscache.h"
#include "tls_util.h"

#define MAX_ROUNDS 1000
#define MAX_WORKERS 16
#define WARMUP 20
#define MAX_DER 8192

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

/* The mode of this run: N threads sharing one server context (and cache), or N processes
 * (forked after the cache is opened, as a prefork server does) each with its own context;
 * client certificates or not. */
static int n_threads = 1;
static int n_procs = 0;
static int client_cert = 0;
/* --tickets: stateless tickets, OpenSSL's own keys against tickets=shared. */
static int tickets_mode = 0;
/* TLS 1.3 resumptions offer the newest ticket (the one the previous connection got), as
 * clients do, and the caches keep tickets single-use (their default). On with
 * --client-cert: that is where a ticket that comes back to the process that issued it must
 * not be decoded again (its session carries the client's certificate). */
static int fresh_tickets = 0;

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
static const char *cur_label = ""; /* the measurement under way (BENCH_TICKET_SIZE) */
static tu_identity client_id; /* the client's certificate, with --client-cert */

/* Totals over every sesscache measurement of one protocol. */
typedef struct totals {
    sesscache_stats stats;       /* summed over the caches opened */
    unsigned long long resumed;  /* resumptions done with sesscache attached (incl. warm-up) */
    unsigned long long internal_hits; /* SSL_CTX_sess_hits of the baseline contexts */
    unsigned long long offered, reused; /* processes: sessions offered, and resumed */
    /* Threads: the CPU time (seconds) of the timed handshakes, in the handshaking threads
     * (hs), in the library's own threads (bg: a redis cache's writer and connectors), and in
     * the redis-server (BENCH_REDIS_PID), and how many handshakes they made. */
    double cpu_hs, cpu_bg, cpu_redis;
    unsigned long long timed;
} totals;

/* Ends the program at once, from any thread: exit() would run OpenSSL's cleanup under the
 * feet of the threads still handshaking, and crash. */
static void quit(void) {
    fflush(NULL);
    _exit(1);
}

static void die(const char *what) {
    fprintf(stderr, "bench_resume: %s\n", what);
    tu_print_errors("bench_resume");
    quit();
}

static double clock_s(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void) {
    return clock_s(CLOCK_MONOTONIC);
}

/* The CPU time the redis-server has used, in seconds (/proc/PID/schedstat, to the
 * nanosecond), when BENCH_REDIS_PID names it (c-tests/bench.sh sets it); else 0. */
static double redis_cpu(void) {
    static int pid = -1;
    if (pid < 0) {
        const char *e = getenv("BENCH_REDIS_PID");
        pid = e != NULL ? atoi(e) : 0;
    }
    if (pid <= 0)
        return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "r");
    unsigned long long ns = 0;
    if (f == NULL || fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    if (f != NULL)
        fclose(f);
    return (double)ns * 1e-9;
}

static const char *proto_name(int version) {
    return version == TLS1_3_VERSION ? "TLS1.3" : "TLS1.2";
}

static int accept_any(int ok, X509_STORE_CTX *store) {
    (void)ok;
    (void)store;
    return 1;
}

/* The server context of a measurement: with --client-cert it requires a client certificate
 * (and accepts any: the point is the session that carries it). */
static SSL_CTX *server_ctx(int version, int c) {
    SSL_CTX *server = tu_server_ctx(&id, version);
    if (server == NULL)
        die("cannot make the server context");
    if (tickets_mode) {
        /* Stateless tickets (tu_server_ctx turns them off). The baseline's session cache is
         * off, so that what resumes is a ticket OpenSSL encrypted under its own keys (made
         * with the context: in this process only); a context the cache is attached to gets
         * SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL and our ticket key callback. */
        SSL_CTX_clear_options(server, SSL_OP_NO_TICKET);
        if (c == BASELINE)
            SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_OFF);
    }
    if (client_cert)
        SSL_CTX_set_verify(server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
    return server;
}

static SSL_CTX *client_ctx(int version) {
    SSL_CTX *client = tu_client_ctx(version);
    if (client == NULL)
        die("cannot make the client context");
    if (client_cert && (SSL_CTX_use_certificate(client, client_id.cert) != 1 ||
                        SSL_CTX_use_PrivateKey(client, client_id.key) != 1))
        die("cannot give the client its certificate");
    return client;
}

/* One connection offering `offer` (NULL: a full handshake); whether the server resumed.
 * With fresh tickets and `newest` non-NULL, a TLS 1.3 connection hands the ticket it got to
 * `*newest` (the caller's to free). Stops the program if the handshake fails. */
static int handshake(SSL_CTX *server, SSL_CTX *client, SSL_SESSION *offer, SSL_SESSION **newest,
                     const char *cfg) {
    tu_conn_opts o = {.resume = offer};
    tu_conn_result r;
    if (!tu_connect(server, client, &o, &r)) {
        fprintf(stderr, "bench_resume: %s: handshake failed\n", cfg);
        quit();
    }
    if (client_cert && !r.peer) {
        fprintf(stderr, "bench_resume: %s: the server has no client certificate\n", cfg);
        quit();
    }
    if (newest != NULL && fresh_tickets && r.version == TLS1_3_VERSION && r.session != NULL)
        *newest = r.session;
    else
        SSL_SESSION_free(r.session);
    return r.resumed;
}

static int connect_once(SSL_CTX *server, SSL_CTX *client, SSL_SESSION *sess, const char *cfg) {
    return handshake(server, client, sess, NULL, cfg);
}

/* Offers `*sess`; with fresh tickets, `*sess` becomes the ticket the connection got. */
static int connect_next(SSL_CTX *server, SSL_CTX *client, SSL_SESSION **sess, const char *cfg) {
    SSL_SESSION *got = NULL;
    int resumed = handshake(server, client, *sess, &got, cfg);
    if (got != NULL) {
        SSL_SESSION_free(*sess);
        *sess = got;
    }
    return resumed;
}

/* One resumption of `*sess`; stops the program unless the server resumed. */
static void resume_once(SSL_CTX *server, SSL_CTX *client, SSL_SESSION **sess, const char *cfg) {
    if (!connect_next(server, client, sess, cfg)) {
        fprintf(stderr, "bench_resume: %s: the server did not resume the session\n", cfg);
        quit();
    }
}

/* Until the server resumes `*sess` (a store that is still on its way to the cache), at
 * most 2 s; stops the program if it never does. */
static void settle(SSL_CTX *server, SSL_CTX *client, SSL_SESSION **sess, const char *cfg) {
    double t0 = now();
    while (!connect_next(server, client, sess, cfg)) {
        if (now() - t0 > 2.0) {
            fprintf(stderr, "bench_resume: %s: the stored session never resumed\n", cfg);
            quit();
        }
    }
}

/* One full handshake (the server stores a new session); stops the program on failure. */
static void full_once(SSL_CTX *server, SSL_CTX *client, const char *cfg) {
    if (connect_once(server, client, NULL, cfg)) {
        fprintf(stderr, "bench_resume: %s: full handshake was a resumption\n", cfg);
        quit();
    }
}

/* A first full handshake: the client's session, of the requested version. */
static SSL_SESSION *first_session(SSL_CTX *server, SSL_CTX *client, int version) {
    tu_conn_result first;
    if (!tu_connect(server, client, NULL, &first) || first.session == NULL)
        die("the first (full) handshake failed");
    if (first.resumed || first.version != version)
        die("the first handshake was not a full handshake of the requested version");
    if (tickets_mode && !SSL_SESSION_has_ticket(first.session))
        die("--tickets: the server issued no stateless ticket");
    if (tickets_mode && getenv("BENCH_TICKET_SIZE") != NULL) {
        const unsigned char *t;
        size_t len;
        SSL_SESSION_get0_ticket(first.session, &t, &len);
        fprintf(stderr, "ticket %s %zu bytes (%s)\n", proto_name(version), len, cur_label);
    }
    return first.session;
}

/* One thread of an in-process measurement: its own session, resumed (or full handshakes)
 * from `start` on, for `seconds`. */
typedef struct worker {
    SSL_CTX *server, *client;
    int version, kind, async;
    const char *label;
    double seconds;
    pthread_barrier_t *start;
    unsigned long long n;
    double elapsed;
    double cpu;                /* this thread's CPU time over the n handshakes */
    int first;                 /* the first worker: takes the readings below at the start */
    double proc0, redis0;      /* the process's and the redis-server's CPU time then */
    unsigned long long reused; /* resumed handshakes among the n */
} worker;

/* One resumption attempt in a worker's loop: offers its session (with fresh tickets, the
 * newest). Every one must resume, except through Redis: with fresh tickets an asynchronous
 * store may not have delivered the newest ticket yet, and a lookup that finds no answer
 * within its time budget (a busy machine) is a miss by design; either is counted (the
 * misses of the cache statistics below), and the next attempt offers the newest session. */
static int worker_resume(worker *w, SSL_SESSION **sess) {
    if (w->async)
        return connect_next(w->server, w->client, sess, w->label);
    resume_once(w->server, w->client, sess, w->label);
    return 1;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    SSL_SESSION *sess = first_session(w->server, w->client, w->version);
    if (w->kind == RESUMED && w->async)
        settle(w->server, w->client, &sess, w->label);
    for (int i = 0; i < WARMUP; i++) {
        if (w->kind == RESUMED)
            worker_resume(w, &sess);
        else
            full_once(w->server, w->client, w->label);
    }
    pthread_barrier_wait(w->start);
    if (w->first) {
        w->proc0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        w->redis0 = redis_cpu();
    }
    /* Under callgrind with one thread, the timed handshakes' instructions go to a file of
     * their own: what came before to another (nothing is lost). No-ops otherwise. */
    int counted = w->first && n_threads == 1 && RUNNING_ON_VALGRIND;
    if (counted)
        CALLGRIND_DUMP_STATS_AT("setup");
    unsigned long long n = 0, reused = 0;
    double t0 = now(), t1, cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    do {
        if (w->kind == RESUMED)
            reused += (unsigned long long)worker_resume(w, &sess);
        else
            full_once(w->server, w->client, w->label);
        n++;
        t1 = now();
    } while (t1 - t0 < w->seconds);
    w->cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    if (counted) {
        /* The file's description (c-tests/bench.sh reads it). */
        char what[160];
        snprintf(what, sizeof what, "handshakes %s %llu", w->label, n);
        CALLGRIND_DUMP_STATS_AT(what);
    }
    w->n = n;
    w->reused = reused;
    w->elapsed = t1 - t0;
    SSL_SESSION_free(sess);
    return NULL;
}

/* Adds the growth of a cache's counters from `before` to `s` to `sum`. */
static void add_stats_to(sesscache_stats *sum, const sesscache_stats *s,
                         const sesscache_stats *before) {
    sum->lookups += s->lookups - before->lookups;
    sum->hits += s->hits - before->hits;
    sum->misses += s->misses - before->misses;
    sum->stores += s->stores - before->stores;
    sum->evictions += s->evictions - before->evictions;
    sum->errors += s->errors - before->errors;
    sum->timeouts += s->timeouts - before->timeouts;
    sum->queue_drops += s->queue_drops - before->queue_drops;
}

/* What the processes of a multi-process measurement share (MAP_SHARED, made before fork). */
typedef struct proc_shared {
    pthread_barrier_t ready;   /* every process has stored its session's DER below */
    pthread_barrier_t start;   /* every process is warm: timing starts */
    struct {
        unsigned char der[MAX_DER];
        int len;
        unsigned long long n, reused;
        double elapsed;
        sesscache_stats stats; /* --tickets: what this process's own cache counted */
    } slot[MAX_WORKERS];
} proc_shared;

/* One process of a multi-process measurement: a server context of its own (attached to the
 * cache its parent opened), a full handshake whose client session it publishes, then
 * connections offering the sessions of every process in turn (the next process's first):
 * as if a load balancer spread returning clients over the workers. With OpenSSL's internal
 * cache only a process's own sessions resume (the others are full handshakes). */
static void proc_main(proc_shared *sh, int me, int version, int kind, int c, sesscache *cache,
                      SSL_CTX *client, double seconds, const char *label) {
    SSL_CTX *server = server_ctx(version, c);
    /* --tickets: every process opens the cache itself, after the fork (separate servers, or
     * hosts: each its own Redis connections and its own copy of the keys). */
    int own_cache = tickets_mode && c != BASELINE;
    if (own_cache && (cache = sesscache_open(configs[c].url)) == NULL) {
        fprintf(stderr, "bench_resume: %s: %s\n", label, sesscache_last_error());
        quit();
    }
    if (cache != NULL && sesscache_attach(cache, server) != 1) {
        fprintf(stderr, "bench_resume: %s: %s\n", label, sesscache_last_error());
        quit();
    }
    SSL_SESSION *mine = first_session(server, client, version);
    unsigned char *p = sh->slot[me].der;
    int len = i2d_SSL_SESSION(mine, NULL);
    if (len <= 0 || len > MAX_DER || i2d_SSL_SESSION(mine, &p) != len)
        die("cannot encode a client session");
    sh->slot[me].len = len;
    SSL_SESSION_free(mine);
    pthread_barrier_wait(&sh->ready);
    SSL_SESSION *sess[MAX_WORKERS];
    for (int i = 0; i < n_procs; i++) {
        const unsigned char *q = sh->slot[i].der;
        if ((sess[i] = d2i_SSL_SESSION(NULL, &q, sh->slot[i].len)) == NULL)
            die("cannot decode a client session");
    }
    if (kind == RESUMED && configs[c].async)
        for (int i = 0; i < n_procs; i++)
            settle(server, client, &sess[i], label);
    /* The sessions offered: every process's in turn; with --tickets, only the others'. */
    int others = tickets_mode ? n_procs - 1 : n_procs;
    for (int i = 0; i < WARMUP; i++) {
        if (kind == RESUMED)
            connect_once(server, client, sess[(me + 1 + i % others) % n_procs], label);
        else
            full_once(server, client, label);
    }
    sesscache_stats before = {0};
    if (own_cache && sesscache_get_stats(cache, &before, sizeof before) == 0)
        die("sesscache_get_stats failed");
    pthread_barrier_wait(&sh->start);
    unsigned long long n = 0, reused = 0;
    double t0 = now(), t1;
    do {
        if (kind == RESUMED)
            reused += (unsigned long long)connect_once(
                server, client, sess[(me + 1 + (int)(n % (unsigned)others)) % n_procs], label);
        else
            full_once(server, client, label);
        n++;
        t1 = now();
    } while (t1 - t0 < seconds);
    sh->slot[me].n = n;
    sh->slot[me].reused = reused;
    sh->slot[me].elapsed = t1 - t0;
    if (own_cache) {
        sesscache_stats s;
        if (sesscache_get_stats(cache, &s, sizeof s) == 0)
            die("sesscache_get_stats failed");
        memset(&sh->slot[me].stats, 0, sizeof sh->slot[me].stats);
        add_stats_to(&sh->slot[me].stats, &s, &before);
    }
    for (int i = 0; i < n_procs; i++)
        SSL_SESSION_free(sess[i]);
    SSL_CTX_free(server);
    if (own_cache)
        sesscache_free(cache);
}

static void add_stats(totals *t, const sesscache_stats *s, const sesscache_stats *before) {
    add_stats_to(&t->stats, s, before);
}

/* One measurement with N processes: handshakes per second of all of them together. */
static double measure_procs(int version, int c, int kind, double seconds, SSL_CTX *client,
                            totals *t, const char *label) {
    proc_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                           -1, 0);
    if (sh == MAP_FAILED)
        die("mmap failed");
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    if (pthread_barrier_init(&sh->ready, &ba, (unsigned)n_procs) != 0 ||
        pthread_barrier_init(&sh->start, &ba, (unsigned)n_procs) != 0)
        die("pthread_barrier_init failed");
    pthread_barrierattr_destroy(&ba);
    sesscache *cache = NULL;
    sesscache_stats before = {0};
    if (c != BASELINE && !tickets_mode) {
        cache = sesscache_open(configs[c].url);
        if (cache == NULL) {
            fprintf(stderr, "bench_resume: %s: %s\n", label, sesscache_last_error());
            quit();
        }
        if (sesscache_get_stats(cache, &before, sizeof before) == 0)
            die("sesscache_get_stats failed");
    }
    fflush(NULL);
    pid_t kids[MAX_WORKERS];
    for (int i = 0; i < n_procs; i++) {
        kids[i] = fork();
        if (kids[i] < 0)
            die("fork failed");
        if (kids[i] == 0) {
            proc_main(sh, i, version, kind, c, cache, client, seconds, label);
            /* exit, not _exit: a redis writer sends its queued stores at exit. */
            exit(0);
        }
    }
    int failed = 0;
    for (int i = 0; i < n_procs; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    if (failed) {
        fprintf(stderr, "bench_resume: %s: a process failed\n", label);
        quit();
    }
    double rate = 0;
    unsigned long long n = 0, reused = 0;
    for (int i = 0; i < n_procs; i++) {
        rate += (double)sh->slot[i].n / sh->slot[i].elapsed;
        n += sh->slot[i].n;
        reused += sh->slot[i].reused;
    }
    if (kind == RESUMED) {
        t->offered += n;
        t->reused += reused;
    }
    if (tickets_mode && c != BASELINE) {
        static const sesscache_stats zero = {0};
        for (int i = 0; i < n_procs; i++)
            add_stats(t, &sh->slot[i].stats, &zero);
        t->resumed += kind == RESUMED ? reused : 0;
    }
    if (cache != NULL) {
        sesscache_stats s;
        if (sesscache_get_stats(cache, &s, sizeof s) == 0)
            die("sesscache_get_stats failed");
        /* shm: counters are the segment's; a redis cache's were the children's. */
        add_stats(t, &s, &before);
        t->resumed += kind == RESUMED ? reused : 0;
    }
    pthread_barrier_destroy(&sh->ready);
    pthread_barrier_destroy(&sh->start);
    munmap(sh, sizeof *sh);
    sesscache_free(cache);
    return rate;
}

/* One measurement: handshakes of `kind` per second for configuration `c` over `seconds`,
 * all threads (or processes) together. */
static double measure(int version, int c, int kind, double seconds, SSL_CTX *client, totals *t) {
    char label[96];
    snprintf(label, sizeof label, "%s %s %s", proto_name(version), configs[c].name,
             kind_name[kind]);
    cur_label = label;
    if (n_procs > 0)
        return measure_procs(version, c, kind, seconds, client, t, label);

    SSL_CTX *server = server_ctx(version, c);
    sesscache *cache = NULL;
    sesscache_stats before = {0};
    if (c != BASELINE) {
        cache = sesscache_open(configs[c].url);
        if (cache == NULL || sesscache_attach(cache, server) != 1) {
            fprintf(stderr, "bench_resume: %s: %s\n", label, sesscache_last_error());
            quit();
        }
        /* shm: and redis caches outlive the handle: count only this measurement's events. */
        if (sesscache_get_stats(cache, &before, sizeof before) == 0)
            die("sesscache_get_stats failed");
    } else if (!tickets_mode) {
        /* OpenSSL's default for servers, stated here for the reader. */
        SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_SERVER);
    }

    pthread_barrier_t start;
    if (pthread_barrier_init(&start, NULL, (unsigned)n_threads) != 0)
        die("pthread_barrier_init failed");
    worker w[MAX_WORKERS];
    pthread_t tid[MAX_WORKERS];
    for (int i = 0; i < n_threads; i++) {
        w[i] = (worker){.server = server, .client = client, .version = version, .kind = kind,
                        .async = configs[c].async, .label = label, .seconds = seconds,
                        .start = &start, .first = i == 0};
        if (i > 0 && pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0)
            die("pthread_create failed");
    }
    worker_main(&w[0]);
    double rate = (double)w[0].n / w[0].elapsed, hs_cpu = w[0].cpu;
    unsigned long long n = w[0].n, reused = w[0].reused;
    for (int i = 1; i < n_threads; i++) {
        pthread_join(tid[i], NULL);
        rate += (double)w[i].n / w[i].elapsed;
        hs_cpu += w[i].cpu;
        n += w[i].n;
        reused += w[i].reused;
    }
    /* Where the CPU of the timed handshakes went: what the process used from the start
     * beyond the handshaking threads' own is the library's threads'. */
    double bg_cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - w[0].proc0 - hs_cpu;
    t->cpu_hs += hs_cpu;
    t->cpu_bg += bg_cpu > 0 ? bg_cpu : 0;
    t->cpu_redis += configs[c].async ? redis_cpu() - w[0].redis0 : 0;
    t->timed += n;
    if (kind == RESUMED) {
        t->offered += n;
        t->reused += reused;
    }
    pthread_barrier_destroy(&start);

    if (c != BASELINE) {
        sesscache_stats s;
        if (sesscache_get_stats(cache, &s, sizeof s) == 0)
            die("sesscache_get_stats failed");
        add_stats(t, &s, &before);
        t->resumed += kind == RESUMED ? reused : 0;
    } else {
        /* (SSL_CTX_sess_hits counts ticket resumptions too.) */
        t->internal_hits += (unsigned long long)SSL_CTX_sess_hits(server);
        if (tickets_mode && SSL_CTX_sess_number(server) != 0)
            die("--tickets: the baseline's session cache holds sessions");
    }
    SSL_CTX_free(server);
    sesscache_free(cache);
    return rate;
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

static int parse_workers(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 1 || v > MAX_WORKERS)
        return 0;
    *out = (int)v;
    return 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench_resume [--quick] [--rounds N (1-%d)] [--seconds S (>0)]\n"
            "                    [--threads N | --processes N (2-%d)] [--client-cert] [--tickets]\n"
            "       (or BENCH_ROUNDS / BENCH_SECONDS in the environment)\n",
            MAX_ROUNDS, MAX_WORKERS);
    exit(2);
}

/* The label of this run's mode in the "result" lines: t1, t2, t4 (threads), p2, p4
 * (processes); "+mtls" with client certificates, "+tickets" with --tickets. */
static void mode_label(char *out, size_t size) {
    snprintf(out, size, "%c%d%s%s", n_procs > 0 ? 'p' : 't', n_procs > 0 ? n_procs : n_threads,
             client_cert ? "+mtls" : "", tickets_mode ? "+tickets" : "");
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
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!parse_workers(argv[++i], &n_threads))
                usage();
        } else if (strcmp(argv[i], "--processes") == 0 && i + 1 < argc) {
            if (!parse_workers(argv[++i], &n_procs) || n_procs < 2)
                usage();
        } else if (strcmp(argv[i], "--client-cert") == 0) {
            client_cert = 1;
        } else if (strcmp(argv[i], "--tickets") == 0) {
            tickets_mode = 1;
        } else {
            usage();
        }
    }
    if ((n_procs > 0 && n_threads > 1) || (tickets_mode && client_cert))
        usage();

    if (!tu_identity_make(&id) || (client_cert && !tu_identity_make(&client_id)))
        die("cannot make the test identity");

    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    enum { NPROTO = 2 };
    char url[1024];
    add_config("baseline", NULL, 0);
    /* memory: is one process's: with processes it would be each process's own, like the
     * baseline. */
    /* One ticket offered again and again needs single_use=0; fresh tickets are single-use,
     * the default. */
    fresh_tickets = client_cert && n_procs == 0;
    const char *su = fresh_tickets ? "" : "single_use=0";
    /* --tickets: stateless tickets carry the session; the cache holds only the keys. */
    if (tickets_mode)
        su = "tickets=shared";
    if (n_procs == 0)
        add_config("memory", tickets_mode    ? "memory:?tickets=shared"
                             : fresh_tickets ? "memory:"
                                             : "memory:?single_use=0",
                   0);
    snprintf(shm_object, sizeof shm_object, "/sesscache-bench-%d", (int)getpid());
    snprintf(url, sizeof url, "shm:bench-%d?size=8M%s%s", (int)getpid(), *su ? "&" : "", su);
    add_config("shm", url, 0);
    const char *redis = getenv("BENCH_REDIS_URL");
    if (redis != NULL && *redis != '\0' && tickets_mode) {
        const char *sep = strchr(redis, '?') ? "&" : "?";
        snprintf(url, sizeof url, "%s%s%s", redis, sep, su);
        add_config("redis", url, 0);
    } else if (redis != NULL && *redis != '\0') {
        const char *sep = strchr(redis, '?') ? "&" : "?";
        snprintf(url, sizeof url, "%s%s%s", redis, *su ? sep : "", su);
        add_config("redis", url, 1);
        snprintf(url, sizeof url, "%s%s%s%sl1=1000", redis, *su ? sep : "", su,
                 *su ? "&" : sep);
        add_config("redis-l1", url, 1);
    }

    static double med[NPROTO][NKINDS][MAX_CONFIGS], med_ratio[NPROTO][NKINDS][MAX_CONFIGS];
    static double min_ratio[NPROTO][NKINDS][MAX_CONFIGS], max_ratio[NPROTO][NKINDS][MAX_CONFIGS];
    static totals tot[NPROTO][NKINDS][MAX_CONFIGS];
    char mode[32];
    mode_label(mode, sizeof mode);

    printf("sesscache %s, %s: handshakes over in-memory BIO pairs, ", sesscache_version(),
           OpenSSL_version(OPENSSL_VERSION));
    if (n_procs > 0)
        printf("%d processes (forked after the cache is opened), each with its own server "
               "context;\neach process offers the sessions of every process in turn (OpenSSL's "
               "internal cache resumes only its own)",
               n_procs);
    else
        printf("%d thread(s) sharing one server context", n_threads);
    printf("%s%s\n", client_cert ? "; clients present a certificate (mutual TLS)" : "",
           tickets_mode ? "; stateless tickets" : "");
    printf("%d round(s) of %.2f s per configuration and kind; configurations:\n", rounds, seconds);
    for (int c = 0; c < nconfigs; c++)
        printf("  %-9s %s\n", configs[c].name,
               c != BASELINE  ? configs[c].url
               : tickets_mode ? "OpenSSL's own ticket keys (its session cache off)"
                              : "OpenSSL's internal cache");
    if (redis == NULL || *redis == '\0')
        printf("  (redis: not measured; BENCH_REDIS_URL is not set: `make bench` sets it)\n");
    if (tickets_mode)
        printf("Stateless tickets (TLS 1.2 and 1.3): each resumption offers the first ticket "
               "again%s.\n\n",
               n_procs > 0 ? ";\neach process offers only tickets that other processes issued"
                           : "");
    else if (fresh_tickets)
        printf("TLS 1.3: each resumption offers the ticket the previous connection got, as "
               "clients do;\nthe caches keep tickets single-use (their default).\n\n");
    else
        printf("TLS 1.3 uses stateful tickets with single_use=0, so one ticket is resumed every "
               "iteration\n(OpenSSL's internal cache does not enforce single use either).\n\n");
    fflush(stdout);

    static double rate[MAX_CONFIGS][MAX_ROUNDS], ratio[MAX_CONFIGS][MAX_ROUNDS];
    for (int p = 0; p < NPROTO; p++) {
        SSL_CTX *client = client_ctx(versions[p]);
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
                min_ratio[p][k][c] = max_ratio[p][k][c] = ratio[c][0];
                for (int r = 1; r < rounds; r++) {
                    if (ratio[c][r] < min_ratio[p][k][c])
                        min_ratio[p][k][c] = ratio[c][r];
                    if (ratio[c][r] > max_ratio[p][k][c])
                        max_ratio[p][k][c] = ratio[c][r];
                }
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
    if (n_procs > 0) {
        printf("\nresumed / offered, resumed handshakes (%s):\n",
               tickets_mode ? "only the tickets of other processes offered"
                            : "sessions of every process offered in turn");
        for (int p = 0; p < NPROTO; p++)
            for (int c = 0; c < nconfigs; c++) {
                const totals *t = &tot[p][RESUMED][c];
                printf("  %s %-9s %5.1f%% (%llu of %llu)\n", proto_name(versions[p]),
                       configs[c].name, t->offered ? 100.0 * (double)t->reused / (double)t->offered : 0,
                       t->reused, t->offered);
            }
    }

    /* One line per figure, for docs/bench.md (c-tests/bench_report.py): result MODE PROTOCOL
     * KIND CONFIG HS_PER_S RATIO_MEDIAN RATIO_MIN RATIO_MAX RESUMED_FRACTION ROUNDS */
    printf("\n");
    for (int p = 0; p < NPROTO; p++)
        for (int k = 0; k < NKINDS; k++)
            for (int c = 0; c < nconfigs; c++) {
                const totals *t = &tot[p][k][c];
                double resumed = k == FULL     ? 0
                                 : t->offered ? (double)t->reused / (double)t->offered
                                              : 0;
                printf("result %s %s %s %s %.0f %.4f %.4f %.4f %.4f %d\n", mode,
                       versions[p] == TLS1_3_VERSION ? "tls13" : "tls12", kind_name[k],
                       configs[c].name, med[p][k][c], med_ratio[p][k][c], min_ratio[p][k][c],
                       max_ratio[p][k][c], resumed, rounds);
            }

    /* Threads: where the CPU of a handshake goes, in microseconds (the handshaking threads,
     * the library's own threads, the redis-server): cpu MODE PROTOCOL KIND CONFIG HS BG
     * REDIS */
    for (int p = 0; p < NPROTO && n_procs == 0; p++)
        for (int k = 0; k < NKINDS; k++)
            for (int c = 0; c < nconfigs; c++) {
                const totals *t = &tot[p][k][c];
                double per = t->timed ? 1e6 / (double)t->timed : 0;
                printf("cpu %s %s %s %s %.1f %.1f %.1f\n", mode,
                       versions[p] == TLS1_3_VERSION ? "tls13" : "tls12", kind_name[k],
                       configs[c].name, t->cpu_hs * per, t->cpu_bg * per, t->cpu_redis * per);
            }

    /* The cache's own counts over the whole run, for instructions per call (callgrind,
     * c-tests/bench.sh): counts MODE CONFIG LOOKUPS STORES */
    for (int c = 1; c < nconfigs; c++) {
        unsigned long long lookups = 0, stores = 0;
        for (int p = 0; p < NPROTO; p++)
            for (int k = 0; k < NKINDS; k++) {
                lookups += tot[p][k][c].stats.lookups;
                stores += tot[p][k][c].stats.stores;
            }
        printf("counts %s %s %llu %llu\n", mode, configs[c].name, lookups, stores);
    }

    for (int p = 0; p < NPROTO && tickets_mode; p++) {
        const totals *b = &tot[p][RESUMED][BASELINE];
        /* In one process, OpenSSL's own tickets resume every time (its session cache is
         * off and held no session: measure() checks). */
        if (n_procs == 0 && b->reused != b->offered) {
            fprintf(stderr, "bench_resume: %s baseline: %llu of %llu resumed\n",
                    proto_name(versions[p]), b->reused, b->offered);
            quit();
        }
    }
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
            /* Every resumption with a cache attached must have been answered by the cache
             * (a redis cache's counters were its processes', not this one's). */
            int counted = !(n_procs > 0 && configs[c].async);
            if (tickets_mode) {
                /* Tickets: every resumption was a ticket's, none the cache's. */
                if (t->stats.hits != 0 || t->resumed == 0) {
                    fprintf(stderr, "bench_resume: %s: %llu cache hits, %llu resumptions: "
                            "not resumed by tickets\n", label,
                            (unsigned long long)t->stats.hits, t->resumed);
                    bad = 1;
                }
            } else if (counted && (t->stats.hits == 0 || t->stats.hits < t->resumed)) {
                fprintf(stderr, "bench_resume: %s: hits (%llu) do not cover the %llu resumptions\n",
                        label, (unsigned long long)t->stats.hits, t->resumed);
                bad = 1;
            }
            /* Processes: a shared cache resumes every process's sessions everywhere. */
            if (n_procs > 0 && t->reused != t->offered) {
                fprintf(stderr, "bench_resume: %s: %llu of %llu offered sessions resumed\n", label,
                        t->reused, t->offered);
                bad = 1;
            }
            for (int k = 0; k < NKINDS; k++) {
                const totals *u = &tot[p][k][c];
                /* A Redis lookup over its time budget is a miss and counts as an error too:
                 * this machine was busy, not the cache wrong; said, not a failure. */
                unsigned long long errors = u->stats.errors, timeouts = u->stats.timeouts;
                if (timeouts != 0)
                    printf("  (%s %s: %llu lookups over their time budget: misses)\n", label,
                           kind_name[k], timeouts);
                if (errors > timeouts) {
                    fprintf(stderr, "bench_resume: %s %s: the cache counted %llu errors\n", label,
                            kind_name[k], errors - timeouts);
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
    if (client_cert)
        tu_identity_free(&client_id);
    return bad;
}
