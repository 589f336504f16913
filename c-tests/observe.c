/*
 * observe.c: the transparency probe.
 *
 * libsesscache.so defines OpenSSL's SSL_CTX_sess_{set,get}_{new,get,remove}_cb and
 * SSL_set_SSL_CTX, so it interposes on them when linked before -lssl or preloaded. A
 * program that never calls a sesscache_* function must not be able to tell it is there.
 * This program uses only OpenSSL's API (plus the handshake helpers of tls_util.h) and
 * prints, one line per observation, everything it can see of OpenSSL's session caching:
 * callback getters, callback calls and their arguments, resumption, the context
 * statistics, ex_data slots and the next free ex_data indices. It prints no pointers,
 * times or random bytes, so its output is byte-identical from run to run, and must be
 * identical whether built plainly (build/observe_plain), linked with the library first
 * (build/observe_linked) or run with LD_PRELOAD=target/release/libsesscache.so.
 *
 * Every SSL_SESSION and SSL_CTX it makes is freed (it also runs under valgrind). Exits 0,
 * or 2 if a handshake or a context unexpectedly fails.
 */
#include "tls_util.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_KEPT 32
#define EX_SLOTS 32

/* What the callbacks saw since the last reset, and how they behave. */
static struct {
    int new_calls, new_server, new_id_len, new_is_current, new_resumable, new_exdata;
    int get_calls, get_server, get_len, get_copy_in, get_found;
    int remove_calls, remove_ctx_same, remove_id_len;
    int new_keep; /* the new callback keeps the session and returns 1 */
    int get_mode; /* 0: always NULL; 1: kept session with *copy = 1; 2: up_ref, *copy = 0 */
    SSL_CTX *remove_ctx; /* the context the remove callback expects */
} ob;

static SSL_SESSION *kept[MAX_KEPT];
static int nkept;
static tu_identity ident;
static char where[64];

static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", where);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

static void scenario(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    memset(&ob, 0, sizeof ob);
}

static void die(const char *what) {
    fprintf(stderr, "observe: %s failed (%s)\n", what, where);
    tu_print_errors(what);
    exit(2);
}

static void free_kept(void) {
    for (int i = 0; i < nkept; i++)
        SSL_SESSION_free(kept[i]);
    nkept = 0;
}

/* ---- the application's callbacks ---------------------------------------------------- */

static int new_cb(SSL *ssl, SSL_SESSION *sess) {
    unsigned int len = 0;
    SSL_SESSION_get_id(sess, &len);
    ob.new_calls++;
    ob.new_server += SSL_is_server(ssl);
    ob.new_id_len = (int)len;
    ob.new_is_current += SSL_get_session(ssl) == sess;
    ob.new_resumable += SSL_SESSION_is_resumable(sess);
    for (int i = 0; i < EX_SLOTS; i++)
        ob.new_exdata += (SSL_SESSION_get_ex_data(sess, i) != NULL) + (SSL_get_ex_data(ssl, i) != NULL);
    if (ob.new_keep && nkept < MAX_KEPT) {
        kept[nkept++] = sess;
        return 1;
    }
    return 0;
}

static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *data, int len, int *copy) {
    ob.get_calls++;
    ob.get_server += SSL_is_server(ssl);
    ob.get_len = len;
    ob.get_copy_in = *copy;
    if (ob.get_mode == 0)
        return NULL;
    for (int i = 0; i < nkept; i++) {
        unsigned int l = 0;
        const unsigned char *p = SSL_SESSION_get_id(kept[i], &l);
        if ((int)l == len && memcmp(p, data, l) == 0) {
            ob.get_found++;
            if (ob.get_mode == 1) {
                *copy = 1;
            } else {
                SSL_SESSION_up_ref(kept[i]);
                *copy = 0;
            }
            return kept[i];
        }
    }
    return NULL;
}

static void remove_cb(SSL_CTX *ctx, SSL_SESSION *sess) {
    unsigned int len = 0;
    SSL_SESSION_get_id(sess, &len);
    ob.remove_calls++;
    ob.remove_ctx_same += ctx == ob.remove_ctx;
    ob.remove_id_len = (int)len;
}

/* A second pair, to tell which context's callbacks OpenSSL used. */
static int new_calls_b;
static int new_cb_b(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    (void)sess;
    new_calls_b++;
    return 0;
}

static int switch_ctx(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    SSL_CTX *target = arg;
    out("servername_cb set_SSL_CTX=%s", SSL_set_SSL_CTX(ssl, target) == target ? "same" : "different");
    out("servername_cb get_SSL_CTX=%s", SSL_get_SSL_CTX(ssl) == target ? "same" : "different");
    return SSL_TLSEXT_ERR_OK;
}

/* ---- printing ----------------------------------------------------------------------- */

static const char *fn(const void *got, const void *app) {
    return got == NULL ? "null" : got == app ? "same" : "other";
}

static void print_cbs(SSL_CTX *ctx, const char *when) {
    out("%s getters new=%s get=%s remove=%s", when, fn((const void *)SSL_CTX_sess_get_new_cb(ctx), (const void *)new_cb),
        fn((const void *)SSL_CTX_sess_get_get_cb(ctx), (const void *)get_cb),
        fn((const void *)SSL_CTX_sess_get_remove_cb(ctx), (const void *)remove_cb));
}

static void print_ctx(SSL_CTX *ctx, const char *who) {
    int exdata = 0;
    for (int i = 0; i < EX_SLOTS; i++)
        exdata += SSL_CTX_get_ex_data(ctx, i) != NULL;
    out("%s mode=%#lx number=%ld hits=%ld misses=%ld cb_hits=%ld timeouts=%ld cache_full=%ld", who,
        (unsigned long)SSL_CTX_get_session_cache_mode(ctx), SSL_CTX_sess_number(ctx), SSL_CTX_sess_hits(ctx),
        SSL_CTX_sess_misses(ctx), SSL_CTX_sess_cb_hits(ctx), SSL_CTX_sess_timeouts(ctx),
        SSL_CTX_sess_cache_full(ctx));
    out("%s accept=%ld accept_good=%ld connect=%ld connect_good=%ld cache_size=%ld timeout=%ld exdata=%d", who,
        SSL_CTX_sess_accept(ctx), SSL_CTX_sess_accept_good(ctx), SSL_CTX_sess_connect(ctx),
        SSL_CTX_sess_connect_good(ctx), SSL_CTX_sess_get_cache_size(ctx), SSL_CTX_get_timeout(ctx), exdata);
}

static void print_ob(const char *when) {
    out("%s new calls=%d server=%d id_len=%d current=%d resumable=%d exdata=%d kept=%d", when, ob.new_calls,
        ob.new_server, ob.new_id_len, ob.new_is_current, ob.new_resumable, ob.new_exdata, nkept);
    out("%s get calls=%d server=%d len=%d copy_in=%d found=%d", when, ob.get_calls, ob.get_server, ob.get_len,
        ob.get_copy_in, ob.get_found);
    out("%s remove calls=%d ctx_same=%d id_len=%d", when, ob.remove_calls, ob.remove_ctx_same, ob.remove_id_len);
}

/* ---- contexts and connections ------------------------------------------------------- */

typedef struct cfg {
    const char *name;
    int version;
    int stateless; /* clear SSL_OP_NO_TICKET: stateless tickets */
} cfg;

static const cfg cfgs[] = {
    {"tls12.sid", TLS1_2_VERSION, 0},
    {"tls12.ticket", TLS1_2_VERSION, 1},
    {"tls13.stateful", TLS1_3_VERSION, 0},
    {"tls13.stateless", TLS1_3_VERSION, 1},
};
#define NCFGS (int)(sizeof cfgs / sizeof cfgs[0])

static SSL_CTX *server(const cfg *c) {
    SSL_CTX *ctx = tu_server_ctx(&ident, c->version);
    if (ctx == NULL)
        die("tu_server_ctx");
    if (c->stateless)
        SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    return ctx;
}

static SSL_CTX *client(int version) {
    SSL_CTX *ctx = tu_client_ctx(version);
    if (ctx == NULL)
        die("tu_client_ctx");
    return ctx;
}

/* One connection; prints what the client and server ended with. Returns the client's
 * session (caller frees) if keep, else frees it. */
static SSL_SESSION *conn(const char *tag, SSL_CTX *s, SSL_CTX *c, SSL_SESSION *resume, int no_shutdown,
                         int keep) {
    tu_conn_opts o = {resume, NULL, no_shutdown};
    tu_conn_result r;
    if (!tu_connect(s, c, &o, &r))
        die("tu_connect");
    int errs = 0;
    while (ERR_get_error() != 0)
        errs++;
    unsigned int idlen = 0;
    SSL_SESSION_get_id(r.session, &idlen);
    out("%s conn offered=%d resumed=%d version=%#x errors=%d", tag, resume != NULL, r.resumed, r.version, errs);
    out("%s client_session id_len=%u ticket=%d resumable=%d timeout=%ld", tag, idlen,
        SSL_SESSION_has_ticket(r.session), SSL_SESSION_is_resumable(r.session), SSL_SESSION_get_timeout(r.session));
    if (keep)
        return r.session;
    SSL_SESSION_free(r.session);
    return NULL;
}

/* Full handshake, then a resumption attempt with the client's session. */
static void full_then_resume(SSL_CTX *s, SSL_CTX *c) {
    SSL_SESSION *sess = conn("full", s, c, NULL, 0, 1);
    print_ob("after_full");
    conn("resume", s, c, sess, 0, 0);
    SSL_SESSION_free(sess);
}

/* ---- scenarios ---------------------------------------------------------------------- */

/* 1. The getters return exactly what was set. */
static void s1_getters(void) {
    for (int side = 0; side < 2; side++) {
        scenario("s1.%s", side ? "client" : "server");
        SSL_CTX *ctx = side ? client(TLS1_3_VERSION) : server(&cfgs[0]);
        print_cbs(ctx, "fresh");
        SSL_CTX_sess_set_new_cb(ctx, new_cb);
        print_cbs(ctx, "set_new");
        SSL_CTX_sess_set_get_cb(ctx, get_cb);
        print_cbs(ctx, "set_get");
        SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
        print_cbs(ctx, "set_remove");
        SSL_CTX_sess_set_new_cb(ctx, NULL);
        print_cbs(ctx, "null_new");
        SSL_CTX_sess_set_get_cb(ctx, NULL);
        print_cbs(ctx, "null_get");
        SSL_CTX_sess_set_remove_cb(ctx, NULL);
        print_cbs(ctx, "null_remove");
        SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
        SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
        print_cbs(ctx, "remove_twice");
        print_ctx(ctx, "ctx");
        SSL_CTX_free(ctx);
        print_ob("freed");
    }
}

/* 2 and 3. Internal cache on, a counting new callback, with and without a remove one. */
static void s23_internal(void) {
    for (int with_remove = 0; with_remove < 2; with_remove++)
        for (int i = 0; i < NCFGS; i++) {
            scenario("s%d.%s", 2 + with_remove, cfgs[i].name);
            SSL_CTX *s = server(&cfgs[i]), *c = client(cfgs[i].version);
            ob.remove_ctx = s;
            SSL_CTX_sess_set_new_cb(s, new_cb);
            if (with_remove)
                SSL_CTX_sess_set_remove_cb(s, remove_cb);
            full_then_resume(s, c);
            print_ob("after_resume");
            print_ctx(s, "server");
            print_ctx(c, "client");
            print_cbs(s, "end");
            SSL_CTX_free(c);
            SSL_CTX_free(s);
            print_ob("freed");
        }
}

/* 4. An external cache in the application: new keeps (returns 1), get serves. */
static void s4_external(void) {
    for (int mode = 1; mode <= 2; mode++)
        for (int i = 0; i < NCFGS; i++) {
            scenario("s4.copy%d.%s", mode == 1, cfgs[i].name);
            SSL_CTX *s = server(&cfgs[i]), *c = client(cfgs[i].version);
            SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
            ob.remove_ctx = s;
            ob.new_keep = 1;
            ob.get_mode = mode;
            SSL_CTX_sess_set_new_cb(s, new_cb);
            SSL_CTX_sess_set_get_cb(s, get_cb);
            SSL_CTX_sess_set_remove_cb(s, remove_cb);
            SSL_SESSION *sess = conn("full", s, c, NULL, 0, 1);
            print_ob("after_full");
            SSL_SESSION *again = conn("resume", s, c, sess, 0, 1);
            print_ob("after_resume");
            conn("resume_again", s, c, again, 0, 0);
            print_ob("after_resume_again");
            SSL_SESSION_free(again);
            SSL_SESSION_free(sess);
            print_ctx(s, "server");
            print_cbs(s, "end");
            SSL_CTX_free(c);
            SSL_CTX_free(s);
            print_ob("freed");
            free_kept();
        }
}

/* 5. A get callback that never finds anything, with the internal cache off and on. */
static void s5_get_null(void) {
    for (int internal = 0; internal < 2; internal++)
        for (int i = 0; i < NCFGS; i++) {
            scenario("s5.%s.%s", internal ? "internal" : "nointernal", cfgs[i].name);
            SSL_CTX *s = server(&cfgs[i]), *c = client(cfgs[i].version);
            if (!internal)
                SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
            SSL_CTX_sess_set_get_cb(s, get_cb);
            full_then_resume(s, c);
            print_ob("after_resume");
            print_ctx(s, "server");
            print_cbs(s, "end");
            SSL_CTX_free(c);
            SSL_CTX_free(s);
        }
}

/* 6. The client side: a client context's new callback and internal cache. */
static void s6_client(void) {
    static const struct {
        const char *name;
        long mode;
    } modes[] = {
        {"default", -1},
        {"client", SSL_SESS_CACHE_CLIENT},
        {"both", SSL_SESS_CACHE_BOTH},
        {"off", SSL_SESS_CACHE_OFF},
    };
    for (int m = 0; m < 4; m++)
        for (int i = 0; i < NCFGS; i++) {
            scenario("s6.%s.%s", modes[m].name, cfgs[i].name);
            SSL_CTX *s = server(&cfgs[i]), *c = client(cfgs[i].version);
            if (modes[m].mode >= 0)
                SSL_CTX_set_session_cache_mode(c, modes[m].mode);
            ob.remove_ctx = c;
            SSL_CTX_sess_set_new_cb(c, new_cb);
            SSL_CTX_sess_set_remove_cb(c, remove_cb);
            SSL_SESSION *sess = conn("full", s, c, NULL, 0, 1);
            print_ob("after_full");
            conn("resume", s, c, sess, 0, 0);
            print_ob("after_resume");
            print_ctx(c, "client");
            out("remove_session=%d", SSL_CTX_remove_session(c, sess));
            print_ob("after_remove");
            SSL_SESSION_free(sess);
            print_cbs(c, "end");
            SSL_CTX_free(c);
            SSL_CTX_free(s);
            print_ob("freed");
        }
}

/* SSL_CTX_flush_sessions (its time a long) is deprecated since OpenSSL 3.4, for
 * SSL_CTX_flush_sessions_ex (a time_t): the one the version has (make compat). */
static void flush_sessions(SSL_CTX *ctx, time_t tm) {
#if OPENSSL_VERSION_NUMBER >= 0x30400000L
    SSL_CTX_flush_sessions_ex(ctx, tm);
#else
    SSL_CTX_flush_sessions(ctx, (long)tm);
#endif
}

/* 7. Removal: SSL_CTX_remove_session, SSL_CTX_flush_sessions, an unclean close, and the
 * flush in SSL_CTX_free, with a remove callback set. */
static void s7_remove(void) {
    for (int i = 0; i < NCFGS; i++) {
        scenario("s7.%s", cfgs[i].name);
        SSL_CTX *s = server(&cfgs[i]), *c = client(cfgs[i].version);
        ob.remove_ctx = s;
        SSL_CTX_sess_set_new_cb(s, new_cb);
        SSL_CTX_sess_set_remove_cb(s, remove_cb);
        SSL_SESSION *sess = conn("full", s, c, NULL, 0, 1);
        print_ctx(s, "server");
        out("remove_session=%d", SSL_CTX_remove_session(s, sess));
        out("remove_session_again=%d", SSL_CTX_remove_session(s, sess));
        print_ob("after_remove");
        conn("resume_removed", s, c, sess, 0, 0);
        SSL_SESSION_free(sess);
        print_ctx(s, "server");
        flush_sessions(s, 1);
        print_ob("after_flush_past");
        flush_sessions(s, time(NULL) + 10L * 86400);
        print_ob("after_flush_future");
        print_ctx(s, "server");
        sess = conn("unclean", s, c, NULL, 1, 1);
        print_ob("after_unclean");
        print_ctx(s, "server");
        conn("resume_unclean", s, c, sess, 0, 0);
        SSL_SESSION_free(sess);
        conn("full_again", s, c, NULL, 0, 0);
        print_ob("before_free");
        print_ctx(s, "server");
        SSL_CTX_free(c);
        SSL_CTX_free(s);
        print_ob("after_ctx_free");
    }
}

/* 9. SSL_set_SSL_CTX from the servername callback: the session callbacks and cache of the
 * original context keep being used. Also on an idle SSL. */
static void s9_set_ssl_ctx(void) {
    for (int i = 0; i < NCFGS; i++) {
        scenario("s9.%s", cfgs[i].name);
        SSL_CTX *a = server(&cfgs[i]), *b = server(&cfgs[i]), *c = client(cfgs[i].version);
        new_calls_b = 0;
        ob.remove_ctx = a;
        SSL_CTX_sess_set_new_cb(a, new_cb);
        SSL_CTX_sess_set_remove_cb(a, remove_cb);
        SSL_CTX_sess_set_new_cb(b, new_cb_b);
        SSL_CTX_set_tlsext_servername_callback(a, switch_ctx);
        SSL_CTX_set_tlsext_servername_arg(a, b);
        tu_conn_opts o = {NULL, "sesscache.test", 0};
        tu_conn_result r;
        if (!tu_connect(a, c, &o, &r))
            die("tu_connect");
        o.resume = r.session;
        tu_conn_result r2;
        if (!tu_connect(a, c, &o, &r2))
            die("tu_connect");
        out("switched full_resumed=%d resumed=%d new_a=%d new_b=%d remove_a=%d", r.resumed, r2.resumed,
            ob.new_calls, new_calls_b, ob.remove_calls);
        SSL_SESSION_free(r.session);
        SSL_SESSION_free(r2.session);
        print_ctx(a, "ctx_a");
        print_ctx(b, "ctx_b");

        SSL *ssl = SSL_new(a);
        if (ssl == NULL)
            die("SSL_new");
        out("idle set_SSL_CTX(b)=%s", SSL_set_SSL_CTX(ssl, b) == b ? "same" : "different");
        out("idle get_SSL_CTX=%s", SSL_get_SSL_CTX(ssl) == b ? "b" : "other");
        out("idle set_SSL_CTX(b)_again=%s", SSL_set_SSL_CTX(ssl, b) == b ? "same" : "different");
        out("idle set_SSL_CTX(a)=%s", SSL_set_SSL_CTX(ssl, a) == a ? "same" : "different");
        SSL_free(ssl);
        SSL_CTX_free(c);
        SSL_CTX_free(b);
        SSL_CTX_free(a);
        print_ob("freed");
    }
}

/* 8. The next ex_data indices: nothing may have been allocated behind our back. */
static void s8_indices(const char *when) {
    scenario("s8.%s", when);
    out("ctx_index=%d ssl_index=%d session_index=%d", SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL),
        SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL), SSL_SESSION_get_ex_new_index(0, NULL, NULL, NULL, NULL));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!tu_identity_make(&ident))
        die("tu_identity_make");
    s8_indices("start");
    s1_getters();
    s23_internal();
    s4_external();
    s5_get_null();
    s6_client();
    s7_remove();
    s9_set_ssl_ctx();
    s8_indices("end");
    tu_identity_free(&ident);
    return 0;
}
