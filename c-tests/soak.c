/* Soak test: many threads in many processes handshaking against one cache for minutes.
 *
 *   soak --url URL --processes P --threads T --seconds S [--client-cert] [--tls 12|13|mix]
 *        [--slots N] [--pad BYTES] [--cert-pad BYTES] [--storm S] [--calm S]
 *        [--rss-bound MIB] [--min-ratio R]
 *
 * The parent opens the cache with sesscache_open BEFORE forking P processes, as a prefork
 * server does; each process makes its own server context (one per protocol in use; with
 * --client-cert requiring a client certificate and accepting any), attaches the inherited
 * cache, and runs T threads sharing that context. A pool of client sessions in MAP_SHARED
 * memory made before the fork (DER, length, protocol and issuing client per slot, each slot
 * guarded by a spin lock on an atomic int, which works across processes) lets every thread
 * offer sessions issued by any process.
 *
 * Each thread loops until time is up. The run alternates "storm" phases (--storm seconds:
 * half the iterations are full handshakes whose client session goes into a random slot)
 * and "calm" phases (--calm seconds, longer than the URL's ttl: no full handshakes, and a
 * pause of --calm-pause ms after each, so that few sessions are stored, those in the pool
 * grow older than ttl and lookups meet expired entries). Storms fill a small cache beyond
 * its bound (evictions); calms let entries expire (expirations). Every other iteration
 * takes a random slot's session and offers it. A resumption that misses (the
 * entry expired, was evicted, or a TLS 1.3 ticket was taken by another connection) is a full
 * handshake whose new session replaces the slot's; after a TLS 1.3 resumption the new ticket
 * replaces the one used.
 *
 * What is checked, and why:
 *  - No session is ever returned for the wrong ID. Every resumption is checked against what
 *    was issued: TLS 1.2 must `agree` (the server's session has the client's ID and master
 *    key) and the client's session after it must have the ID and master key of the session
 *    offered (the one the pool kept when it was issued); TLS 1.3 proves the server used the
 *    right resumption secret by completing (the PSK binder); with --client-cert the server's
 *    session must carry the certificate of the client the session was issued to (4 client
 *    identities take turns), which a session returned for another ID would not. Any
 *    resumption that fails a check is a "wrong session": counted, and the run fails.
 *  - No handshake fails (a failure is counted and fails the run; none is tolerated).
 *  - Memory stays bounded: each process samples its RSS (/proc/self/statm) after a warm-up
 *    (25% of the run) and at the end; the growth must stay under --rss-bound MiB (16), while
 *    the bytes of sessions this process stored over the run (counted exactly: a new-session
 *    callback on the server context sums i2d_SSL_SESSION of every session the cache is given)
 *    must be at least --min-ratio (2) times the bound, or the bound would prove nothing.
 *  - The cache's own bound holds: sampled every 100 ms, `bytes` <= the segment size (shm:,
 *    `size=`, default 32M) or `max_bytes` (memory:, default 64M), and `entries` > 0 at the
 *    end; `evictions` and `expirations` both grew over the run. redis:// counters are this
 *    process's and Redis expires and evicts by itself: those checks are left to the script
 *    (Redis's INFO); its net_errors, timeouts and queue_drops are printed.
 *
 * --pad BYTES makes every stored session BYTES bigger (ticket app data, which
 * i2d_SSL_SESSION encodes, set by the new-session callback before the cache stores the
 * session), so that a short run pushes enough bytes through the cache for the RSS bound to
 * mean something. --cert-pad BYTES does it the realistic way with --client-cert: the clients'
 * certificates carry a filler extension, and the server's sessions carry the certificate.
 *
 * Output: one summary line per process ("soak: process ..."), the cache's figures, then
 * "soak: PASS" or "soak: FAIL (...)". Exit status 0 on success, 1 on any violation, 2 on bad
 * usage. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sesscache.h"
#include "tls_util.h"

#define MAX_PROCS 16
#define MAX_THREADS 16
#define MAX_SLOTS 4096
#define MAX_DER 8192
#define NCLIENTS 4      /* client identities with --client-cert */
#define MAX_PAD 16000
#define MIB (1024.0 * 1024.0)

/* ---- options ---------------------------------------------------------------------------- */
static const char *url;
static int n_procs = 1, n_threads = 1, n_slots = 64, client_cert = 0;
static double seconds = 60, storm = 4, calm = 3, min_ratio = 2;
static long calm_pause_ms = 200;
static long rss_bound_mib = 16;
static int pad = 0, cert_pad = 0;
static int tls_mode = 0; /* 12, 13 or 0 (mix) */

/* ---- what every process shares (MAP_SHARED, made before the fork) ----------------------- */
typedef struct slot {
    atomic_int lock;       /* 0 free, 1 held: a spin lock that works across processes */
    int version;           /* TLS1_2_VERSION or TLS1_3_VERSION; 0: empty */
    int client;            /* the client identity the session was issued to */
    int len;
    unsigned char der[MAX_DER];
} slot;

/* What each process reports to the parent. */
typedef struct report {
    unsigned long long handshakes, full, offered, resumed, missed, wrong, failed, unpublished;
    unsigned long long stores, store_bytes; /* sessions this process gave the cache, and their DER */
    long rss_warm, rss_end;
    sesscache_stats start, end;             /* the cache's counters, as this process sees them */
    unsigned long long max_bytes_seen;
    int bound_exceeded, done;
} report;

typedef struct shared {
    slot slots[MAX_SLOTS];
    report rep[MAX_PROCS];
} shared;

static shared *sh;
static double t_start;   /* CLOCK_MONOTONIC, the same clock in every process */

/* ---- per process ------------------------------------------------------------------------- */
static tu_identity server_id;
static EVP_PKEY *client_key[NCLIENTS];
static X509 *client_cert_x[NCLIENTS];
static unsigned char client_sha256[NCLIENTS][32];
static SSL_CTX *client_ctx[NCLIENTS][2]; /* [client][0: TLS 1.2, 1: TLS 1.3] */
static SSL_CTX *server_ctx[2];
static unsigned char pad_data[MAX_PAD];
static atomic_ullong my_stores, my_store_bytes;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss(void) {
    long size = 0, resident = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static int vindex(int version) {
    return version == TLS1_3_VERSION;
}

/* A small per-thread generator (xorshift64*): no shared state, no locks. */
static unsigned long long next_rand(unsigned long long *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void slot_lock(slot *s) {
    while (atomic_exchange_explicit(&s->lock, 1, memory_order_acquire) != 0)
        sched_yield();
}

static void slot_unlock(slot *s) {
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

/* Whether two sessions have the same ID and master key. */
static int same_id_and_key(const SSL_SESSION *a, const SSL_SESSION *b) {
    unsigned int alen = 0, blen = 0;
    unsigned char ak[SSL_MAX_MASTER_KEY_LENGTH], bk[SSL_MAX_MASTER_KEY_LENGTH];
    const unsigned char *aid = SSL_SESSION_get_id(a, &alen), *bid = SSL_SESSION_get_id(b, &blen);
    size_t akl = SSL_SESSION_get_master_key(a, ak, sizeof ak);
    size_t bkl = SSL_SESSION_get_master_key(b, bk, sizeof bk);
    return alen == blen && alen > 0 && memcmp(aid, bid, alen) == 0 && akl == bkl && akl > 0 &&
           memcmp(ak, bk, akl) == 0;
}

/* The server's new-session callback: runs before the cache stores the session (see
 * SSL_CTX_sess_set_new_cb in sesscache.h). Pads it with ticket app data (--pad) and counts
 * the bytes the cache is given. Returns 0: OpenSSL keeps its reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    if (pad > 0)
        SSL_SESSION_set1_ticket_appdata(sess, pad_data, (size_t)pad);
    int n = i2d_SSL_SESSION(sess, NULL);
    atomic_fetch_add(&my_stores, 1);
    if (n > 0)
        atomic_fetch_add(&my_store_bytes, (unsigned long long)n);
    return 0;
}

static int accept_any(int ok, X509_STORE_CTX *store) {
    (void)ok;
    (void)store;
    return 1;
}

/* ---- one thread ---------------------------------------------------------------------------- */
typedef struct worker {
    int proc, index;
    pthread_t tid;
    unsigned long long rng;
    unsigned long long handshakes, full, offered, resumed, missed, wrong, failed, unpublished;
} worker;

/* Only the first few problems are described; all are counted. */
static atomic_int complaints;
static void complain(const worker *w, const char *what) {
    if (atomic_fetch_add(&complaints, 1) < 20)
        fprintf(stderr, "soak: process %d thread %d: %s\n", w->proc, w->index, what);
}

/* Puts the client's session into slot s (issued to client c). */
static void publish(worker *w, slot *s, SSL_SESSION *sess, int client) {
    unsigned char buf[MAX_DER], *p = buf;
    int len = i2d_SSL_SESSION(sess, NULL);
    if (len <= 0 || len > MAX_DER || i2d_SSL_SESSION(sess, &p) != len) {
        w->unpublished++;
        complain(w, "cannot encode a client session (too big for a slot?)");
        return;
    }
    slot_lock(s);
    memcpy(s->der, buf, (size_t)len);
    s->len = len;
    s->version = SSL_SESSION_get_protocol_version(sess);
    s->client = client;
    slot_unlock(s);
}

/* Checks common to every completed handshake; 0 if the server saw the wrong client. */
static int peer_ok(const tu_conn_result *r, int client) {
    return !client_cert || (r->peer && memcmp(r->peer_sha256, client_sha256[client], 32) == 0);
}

static int pick_version(worker *w) {
    if (tls_mode == 12)
        return TLS1_2_VERSION;
    if (tls_mode == 13)
        return TLS1_3_VERSION;
    return next_rand(&w->rng) & 1 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* A full handshake by client c over `version`; its session goes into slot s. */
static void full_handshake(worker *w, slot *s, int version, int c) {
    tu_conn_result r;
    w->handshakes++;
    w->full++;
    if (!tu_connect(server_ctx[vindex(version)], client_ctx[c][vindex(version)], NULL, &r)) {
        w->failed++;
        complain(w, "a full handshake failed");
        return;
    }
    if (r.resumed || r.version != version || !peer_ok(&r, c)) {
        w->wrong++;
        complain(w, r.resumed ? "a handshake offering nothing was a resumption"
                              : "a full handshake has the wrong version or client certificate");
    } else if (r.session != NULL) {
        publish(w, s, r.session, c);
    }
    SSL_SESSION_free(r.session);
}

/* Offers slot s's session; checks every resumption against what was issued. */
static void offer(worker *w, slot *s) {
    unsigned char der[MAX_DER];
    slot_lock(s);
    int len = s->len, version = s->version, c = s->client;
    if (len > 0)
        memcpy(der, s->der, (size_t)len);
    slot_unlock(s);
    if (len == 0) { /* nothing issued yet into this slot */
        full_handshake(w, s, pick_version(w), (int)(next_rand(&w->rng) % NCLIENTS));
        return;
    }
    const unsigned char *q = der;
    SSL_SESSION *offered = d2i_SSL_SESSION(NULL, &q, len);
    if (offered == NULL) {
        w->failed++;
        complain(w, "cannot decode a session from the pool");
        return;
    }
    tu_conn_opts o = {.resume = offered};
    tu_conn_result r;
    w->handshakes++;
    w->offered++;
    if (!tu_connect(server_ctx[vindex(version)], client_ctx[c][vindex(version)], &o, &r)) {
        w->failed++;
        complain(w, "a handshake offering a session failed");
        SSL_SESSION_free(offered);
        return;
    }
    if (r.version != version || !peer_ok(&r, c)) {
        /* Resumed or not, the server authenticated someone else than this client. */
        w->wrong++;
        complain(w, r.resumed ? "WRONG SESSION: a resumption carries another client's certificate"
                              : "a handshake has the wrong version or client certificate");
    } else if (r.resumed) {
        /* TLS 1.2: the server's session must be the client's (ID and master key), and the
         * client's must still be the one issued (what the pool kept). TLS 1.3: completing is
         * the proof (the binder); r.agrees is 1. */
        int good = r.agrees && (version == TLS1_3_VERSION ||
                                (r.session != NULL && same_id_and_key(r.session, offered)));
        if (good) {
            w->resumed++;
        } else {
            w->wrong++;
            complain(w, "WRONG SESSION: the server resumed a session that is not the one issued under this ID");
        }
    } else {
        w->missed++;
    }
    /* A miss was a full handshake, and a TLS 1.3 resumption gave a new ticket: either way
     * the slot gets the client's new session. */
    if (r.session != NULL && (!r.resumed || version == TLS1_3_VERSION))
        publish(w, s, r.session, c);
    SSL_SESSION_free(r.session);
    SSL_SESSION_free(offered);
}

static int in_storm(double t) {
    double cycle = storm + calm;
    double pos = (t - t_start) - cycle * (double)(long long)((t - t_start) / cycle);
    return pos < storm;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    double end = t_start + seconds;
    double t;
    while ((t = now()) < end) {
        slot *s = &sh->slots[next_rand(&w->rng) % (unsigned)n_slots];
        if (!in_storm(t)) {
            /* Calm: few handshakes, so that few new sessions are stored and the ones the
             * storm left age past ttl in the cache instead of being evicted. */
            offer(w, s);
            struct timespec ts = {calm_pause_ms / 1000, (calm_pause_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else if (next_rand(&w->rng) & 1) {
            full_handshake(w, s, pick_version(w), (int)(next_rand(&w->rng) % NCLIENTS));
        } else {
            offer(w, s);
        }
    }
    ERR_clear_error();
    OPENSSL_thread_stop();
    return NULL;
}

/* ---- the cache's bound ----------------------------------------------------------------- */
/* The value of parameter `name` in the URL's query as a SIZE (K, M, G suffixes), or `dflt`. */
static unsigned long long url_size(const char *name, unsigned long long dflt) {
    const char *q = strchr(url, '?');
    size_t n = strlen(name);
    while (q != NULL) {
        q++;
        if (strncmp(q, name, n) == 0 && q[n] == '=') {
            char *e;
            unsigned long long v = strtoull(q + n + 1, &e, 10);
            if (*e == 'K')
                v <<= 10;
            else if (*e == 'M')
                v <<= 20;
            else if (*e == 'G')
                v <<= 30;
            return v;
        }
        q = strchr(q, '&');
    }
    return dflt;
}

static int is_shm(void) { return strncmp(url, "shm:", 4) == 0; }
static int is_memory(void) { return strncmp(url, "memory:", 7) == 0; }
static int is_redis(void) { return strncmp(url, "redis", 5) == 0; }

/* The most bytes the cache may hold: shm: the segment, memory: max_bytes; 0: not checked. */
static unsigned long long cache_limit(void) {
    if (is_shm())
        return url_size("size", 32ULL << 20);
    if (is_memory())
        return url_size("max_bytes", 64ULL << 20);
    return 0;
}

/* ---- one process ------------------------------------------------------------------------ */
static int versions_used(int i) {
    return tls_mode == 0 || (tls_mode == 12 && i == 0) || (tls_mode == 13 && i == 1);
}

static int process_main(sesscache *cache, int me) {
    report *rep = &sh->rep[me];
    static const int version[2] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (int i = 0; i < 2; i++) {
        if (!versions_used(i))
            continue;
        server_ctx[i] = tu_server_ctx(&server_id, version[i]);
        if (server_ctx[i] == NULL || sesscache_attach(cache, server_ctx[i]) != 1) {
            fprintf(stderr, "soak: process %d: cannot make or attach the server context: %s\n", me,
                    sesscache_last_error());
            return 1;
        }
        SSL_CTX_sess_set_new_cb(server_ctx[i], on_new_session);
        if (client_cert)
            SSL_CTX_set_verify(server_ctx[i], SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                               accept_any);
    }
    if (sesscache_get_stats(cache, &rep->start, sizeof rep->start) == 0)
        return 1;

    worker w[MAX_THREADS];
    int started = 0;
    for (int i = 0; i < n_threads; i++) {
        w[i] = (worker){.proc = me, .index = i,
                        .rng = 0x9E3779B97F4A7C15ULL ^ ((unsigned long long)getpid() << 16) ^
                               (unsigned long long)(i + 1) * 0xD1B54A32D192ED03ULL};
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "soak: process %d: pthread_create failed\n", me);
            break;
        }
        started++;
    }
    /* This thread watches: the cache's bytes every 100 ms, the RSS after the warm-up. */
    unsigned long long limit = cache_limit();
    double warm = t_start + seconds / 4, end = t_start + seconds;
    int warm_done = 0;
    while (now() < end) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        sesscache_stats s;
        if (sesscache_get_stats(cache, &s, sizeof s) > 0) {
            if (s.bytes > rep->max_bytes_seen)
                rep->max_bytes_seen = s.bytes;
            if (limit > 0 && s.bytes > limit)
                rep->bound_exceeded = 1;
        }
        if (!warm_done && now() >= warm) {
            rep->rss_warm = rss();
            warm_done = 1;
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(w[i].tid, NULL);
    rep->rss_end = rss();
    if (!warm_done)
        rep->rss_warm = rep->rss_end;
    sesscache_get_stats(cache, &rep->end, sizeof rep->end);
    for (int i = 0; i < started; i++) {
        rep->handshakes += w[i].handshakes;
        rep->full += w[i].full;
        rep->offered += w[i].offered;
        rep->resumed += w[i].resumed;
        rep->missed += w[i].missed;
        rep->wrong += w[i].wrong;
        rep->failed += w[i].failed;
        rep->unpublished += w[i].unpublished;
    }
    rep->stores = atomic_load(&my_stores);
    rep->store_bytes = atomic_load(&my_store_bytes);
    rep->done = started == n_threads;
    return 0;
}

/* ---- the verdict ------------------------------------------------------------------------ */
static int bad;
static void violation(const char *fmt, const char *who, double a, double b) {
    bad = 1;
    printf("soak: VIOLATION: %s: ", who);
    printf(fmt, a, b);
    printf("\n");
}

/* Checks one process's report and prints its summary line. */
static void judge(int me) {
    const report *r = &sh->rep[me];
    char who[32];
    snprintf(who, sizeof who, "process %d", me);
    double growth = (double)(r->rss_end - r->rss_warm) / MIB;
    double stored = (double)r->store_bytes / MIB;
    double avg = r->stores ? (double)r->store_bytes / (double)r->stores : 0;
    printf("soak: process %d: %llu handshakes (%llu full, %llu offered: %llu resumed = %.1f%%, "
           "%llu missed), %llu wrong sessions, %llu failed; stored %llu sessions = %.1f MiB "
           "(avg %.0f B); RSS %.1f -> %.1f MiB, growth %.2f MiB (bound %ld MiB; stored/bound "
           "%.1fx)\n",
           me, r->handshakes, r->full, r->offered, r->resumed,
           r->offered ? 100.0 * (double)r->resumed / (double)r->offered : 0.0, r->missed, r->wrong,
           r->failed, r->stores, stored, avg, (double)r->rss_warm / MIB, (double)r->rss_end / MIB,
           growth, rss_bound_mib, stored / (double)rss_bound_mib);
    if (!r->done)
        violation("did not finish (%.0f/%.0f)", who, 0, 1);
    if (r->wrong > 0)
        violation("%.0f wrong sessions (of %.0f resumptions)", who, (double)r->wrong,
                  (double)(r->resumed + r->wrong));
    if (r->failed > 0)
        violation("%.0f failed handshakes (of %.0f)", who, (double)r->failed, (double)r->handshakes);
    if (r->unpublished > 0)
        violation("%.0f sessions could not be put into the pool (of %.0f)", who,
                  (double)r->unpublished, (double)r->handshakes);
    if (r->resumed == 0)
        violation("nothing resumed (%.0f of %.0f offered): nothing was checked", who,
                  (double)r->resumed, (double)r->offered);
    if (r->rss_warm <= 0 || r->rss_end <= 0)
        violation("cannot read the RSS (%.0f, %.0f)", who, (double)r->rss_warm, (double)r->rss_end);
    if (growth > (double)rss_bound_mib)
        violation("RSS grew by %.2f MiB after the warm-up, over the bound of %.0f MiB", who, growth,
                  (double)rss_bound_mib);
    if (stored < min_ratio * (double)rss_bound_mib)
        violation("stored only %.1f MiB, less than the ratio x the RSS bound (%.0f MiB): the "
                  "bound proves nothing; run longer or pad more", who, stored,
                  min_ratio * (double)rss_bound_mib);
}

/* Checks the cache's counters (as process `me` saw them: the segment's for shm:, its own
 * cache for memory:) and prints them. */
static void judge_cache(int me) {
    const report *r = &sh->rep[me];
    const sesscache_stats *a = &r->start, *b = &r->end;
    char who[48];
    snprintf(who, sizeof who, "cache (process %d's view)", me);
    unsigned long long limit = cache_limit();
    printf("soak: cache (process %d's view): %llu lookups, %llu hits, %llu stores, %llu evictions, "
           "%llu expirations, %llu removes, %llu rejected, %llu errors over the run; now %llu "
           "entries, %llu bytes (most seen %llu, limit %llu)",
           me, (unsigned long long)(b->lookups - a->lookups), (unsigned long long)(b->hits - a->hits),
           (unsigned long long)(b->stores - a->stores),
           (unsigned long long)(b->evictions - a->evictions),
           (unsigned long long)(b->expirations - a->expirations),
           (unsigned long long)(b->removes - a->removes),
           (unsigned long long)(b->rejected - a->rejected),
           (unsigned long long)(b->errors - a->errors), (unsigned long long)b->entries,
           (unsigned long long)b->bytes, r->max_bytes_seen, limit);
    if (is_redis())
        printf("; net_errors %llu, timeouts %llu, breaker_opens %llu, queue_drops %llu",
               (unsigned long long)b->net_errors, (unsigned long long)b->timeouts,
               (unsigned long long)b->breaker_opens, (unsigned long long)b->queue_drops);
    printf("\n");
    if (limit == 0)
        return; /* redis: Redis's own figures are checked by the script */
    if (r->bound_exceeded || b->bytes > limit)
        violation("bytes %.0f over the limit %.0f", who, (double)(r->max_bytes_seen > b->bytes ? r->max_bytes_seen : b->bytes),
                  (double)limit);
    if (b->entries == 0)
        violation("no entries at the end (%.0f, %.0f)", who, 0, 0);
    if (b->evictions == a->evictions)
        violation("nothing was evicted (%.0f, %.0f): the cache was never full", who,
                  (double)a->evictions, (double)b->evictions);
    if (b->expirations == a->expirations)
        violation("nothing expired (%.0f, %.0f): make ttl shorter than --calm", who,
                  (double)a->expirations, (double)b->expirations);
}

/* ---- setup ------------------------------------------------------------------------------ */
static void usage(void) {
    fprintf(stderr,
            "usage: soak --url URL --processes P (1-%d) --threads T (1-%d) --seconds S\n"
            "            [--client-cert] [--tls 12|13|mix] [--slots N (1-%d, 64)]\n"
            "            [--pad BYTES (0-%d)] [--cert-pad BYTES] [--storm S (4)] [--calm S (3)]\n"
            "            [--calm-pause MS (200)]\n"
            "            [--rss-bound MIB (16)] [--min-ratio R (2)]\n",
            MAX_PROCS, MAX_THREADS, MAX_SLOTS, MAX_PAD);
    exit(2);
}

static long int_arg(const char *s, long lo, long hi) {
    char *e;
    long v = strtol(s, &e, 10);
    if (e == s || *e != '\0' || v < lo || v > hi)
        usage();
    return v;
}

static double num_arg(const char *s, double lo, double hi) {
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e != '\0' || !(v >= lo && v <= hi))
        usage();
    return v;
}

static int make_clients(void) {
    static const int version[2] = {TLS1_2_VERSION, TLS1_3_VERSION};
    int n = client_cert ? NCLIENTS : 1;
    for (int c = 0; c < n; c++) {
        if (client_cert) {
            char cn[64];
            unsigned int len = 0;
            snprintf(cn, sizeof cn, "client-%d.sesscache.test", c);
            if ((client_key[c] = EVP_EC_gen("P-256")) == NULL ||
                (client_cert_x[c] = tu_cert_make(client_key[c], cn, 100 + c, cert_pad)) == NULL ||
                X509_digest(client_cert_x[c], EVP_sha256(), client_sha256[c], &len) != 1 || len != 32)
                return 0;
        }
        for (int v = 0; v < 2; v++) {
            if ((client_ctx[c][v] = tu_client_ctx(version[v])) == NULL)
                return 0;
            if (client_cert && (SSL_CTX_use_certificate(client_ctx[c][v], client_cert_x[c]) != 1 ||
                                SSL_CTX_use_PrivateKey(client_ctx[c][v], client_key[c]) != 1))
                return 0;
        }
    }
    /* Without client certificates every "client" is the same one. */
    for (int c = n; c < NCLIENTS; c++)
        for (int v = 0; v < 2; v++)
            client_ctx[c][v] = client_ctx[0][v];
    return 1;
}

static void free_all(void) {
    int n = client_cert ? NCLIENTS : 1;
    for (int i = 0; i < 2; i++)
        SSL_CTX_free(server_ctx[i]);
    for (int c = 0; c < n; c++) {
        for (int v = 0; v < 2; v++)
            SSL_CTX_free(client_ctx[c][v]);
        X509_free(client_cert_x[c]);
        EVP_PKEY_free(client_key[c]);
    }
    tu_identity_free(&server_id);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--client-cert") == 0) {
            client_cert = 1;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--processes") == 0)
            n_procs = (int)int_arg(v, 1, MAX_PROCS);
        else if (strcmp(a, "--threads") == 0)
            n_threads = (int)int_arg(v, 1, MAX_THREADS);
        else if (strcmp(a, "--seconds") == 0)
            seconds = num_arg(v, 0.1, 86400);
        else if (strcmp(a, "--tls") == 0)
            tls_mode = strcmp(v, "12") == 0 ? 12 : strcmp(v, "13") == 0 ? 13
                     : strcmp(v, "mix") == 0 ? 0 : (usage(), 0);
        else if (strcmp(a, "--slots") == 0)
            n_slots = (int)int_arg(v, 1, MAX_SLOTS);
        else if (strcmp(a, "--pad") == 0)
            pad = (int)int_arg(v, 0, MAX_PAD);
        else if (strcmp(a, "--cert-pad") == 0)
            cert_pad = (int)int_arg(v, 0, MAX_PAD);
        else if (strcmp(a, "--storm") == 0)
            storm = num_arg(v, 0.1, 3600);
        else if (strcmp(a, "--calm") == 0)
            calm = num_arg(v, 0, 3600);
        else if (strcmp(a, "--calm-pause") == 0)
            calm_pause_ms = int_arg(v, 0, 10000);
        else if (strcmp(a, "--rss-bound") == 0)
            rss_bound_mib = int_arg(v, 1, 1 << 20);
        else if (strcmp(a, "--min-ratio") == 0)
            min_ratio = num_arg(v, 0, 1e6);
        else
            usage();
    }
    if (url == NULL)
        usage();
    for (int i = 0; i < MAX_PAD; i++)
        pad_data[i] = (unsigned char)('!' + (i * 7) % 90);

    if (!tu_identity_make(&server_id) || !make_clients()) {
        tu_print_errors("soak");
        fprintf(stderr, "soak: cannot make the keys and contexts\n");
        free_all();
        return 1;
    }
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("soak: mmap");
        free_all();
        return 1;
    }
    /* The cache, opened once before the fork, as a prefork server opens it. */
    sesscache *cache = sesscache_open(url);
    if (cache == NULL) {
        fprintf(stderr, "soak: sesscache_open: %s\n", sesscache_last_error());
        munmap(sh, sizeof *sh);
        free_all();
        return 1;
    }
    printf("soak: %s, %s; %d process(es) x %d thread(s), %.0f s, TLS %s%s, %d pool slots, "
           "storm %.1f s / calm %.1f s (%ld ms pauses), pad %d, cert-pad %d\n",
           sesscache_version(), OpenSSL_version(OPENSSL_VERSION), n_procs, n_threads, seconds,
           tls_mode == 12 ? "1.2" : tls_mode == 13 ? "1.3" : "1.2+1.3",
           client_cert ? ", client certificates" : "", n_slots, storm, calm, calm_pause_ms, pad, cert_pad);
    fflush(stdout);

    t_start = now();
    pid_t pids[MAX_PROCS];
    int forked = 0;
    for (int p = 0; p < n_procs; p++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("soak: fork");
            bad = 1;
            break;
        }
        if (pid == 0) {
            int rc = process_main(cache, p);
            free_all();
            sesscache_free(cache);
            _exit(rc);
        }
        pids[forked++] = pid;
    }
    for (int p = 0; p < forked; p++) {
        int st;
        if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("soak: VIOLATION: process %d exited abnormally (status %d)\n", p, st);
            bad = 1;
        }
    }
    unsigned long long total_hs = 0, total_resumed = 0, total_wrong = 0, total_failed = 0;
    for (int p = 0; p < forked; p++) {
        judge(p);
        total_hs += sh->rep[p].handshakes;
        total_resumed += sh->rep[p].resumed;
        total_wrong += sh->rep[p].wrong;
        total_failed += sh->rep[p].failed;
    }
    /* shm: every process sees the same segment (process 0's view is the cache's); memory:
     * each process has its own cache; redis: each its own counters. */
    for (int p = 0; p < forked; p++)
        if (p == 0 || !is_shm())
            judge_cache(p);
    printf("soak: total %llu handshakes, %llu resumptions checked, %llu wrong sessions, %llu "
           "failed handshakes\n",
           total_hs, total_resumed, total_wrong, total_failed);
    printf("soak: %s\n", bad ? "FAIL" : "PASS");
    sesscache_free(cache);
    munmap(sh, sizeof *sh);
    free_all();
    return bad;
}
