/*
 * preload_probe.c: a stand-in for an unmodified OpenSSL server, for preload mode.
 *
 * It never includes sesscache.h and never calls a sesscache_* function or installs one of
 * sesscache's ready-made callbacks. The only session callback it installs is its own
 * new-session callback on the "own_cb" contexts (the way many servers count sessions); it
 * also reads OpenSSL's callback getters, which must return what it set (or NULL). Its
 * server contexts are made the ordinary way (SSL_CTX_new(TLS_server_method()), and
 * SSL_CTX_new_ex(NULL, NULL, TLS_method()) for the second context of each pair), with a
 * certificate, a shared session ID context, one pinned protocol version and the program's
 * own cache mode SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL: OpenSSL's internal
 * cache is off, so a session made on one context can resume on another only through an
 * external cache, which only LD_PRELOAD=libsesscache.so with SESSCACHE_URL set provides.
 *
 * It prints one "key=value" line per observation, with no pointers, times or random bytes,
 * so that c-tests/preload_check.sh can compare runs with and without the library. The set of
 * keys is the same in every run. Exits 0 when every handshake completed (resumed or not),
 * 2 when a context or a handshake failed.
 */
#include "tls_util.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static tu_identity ident;
static int n_server_ctx, n_client_ctx;
static int own_new_calls;

static void die(const char *what) {
    fprintf(stderr, "preload_probe: %s failed\n", what);
    tu_print_errors(what);
    exit(2);
}

static const char *vname(int version) {
    return version == TLS1_3_VERSION ? "tls13" : "tls12";
}

static int pin_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version) == 1 && SSL_CTX_set_max_proto_version(ctx, version) == 1;
}

/* A server context as a plain server would make it. use_new_ex: SSL_CTX_new_ex with the
 * generic TLS_method instead of SSL_CTX_new(TLS_server_method()). mode: the cache mode the
 * program sets after creation. */
static SSL_CTX *server_ctx(int version, int use_new_ex, long mode) {
    static const unsigned char sid_ctx[] = "preload-probe";
    SSL_CTX *ctx = use_new_ex ? SSL_CTX_new_ex(NULL, NULL, TLS_method()) : SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || !pin_version(ctx, version) || SSL_CTX_use_certificate(ctx, ident.cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, ident.key) != 1 ||
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1) != 1)
        die("server context");
    SSL_CTX_set_session_cache_mode(ctx, mode);
    n_server_ctx++;
    return ctx;
}

static SSL_CTX *client_ctx(int version) {
    SSL_CTX *ctx = tu_client_ctx(version);
    if (ctx == NULL)
        die("client context");
    n_client_ctx++;
    return ctx;
}

/* One connection; a failed handshake ends the program. Returns whether the server resumed;
 * *session (if not NULL) receives the client's session afterwards, else it is freed. */
static int conn(SSL_CTX *server, SSL_CTX *client, SSL_SESSION *resume, SSL_SESSION **session) {
    tu_conn_opts opts = {0};
    tu_conn_result res;
    opts.resume = resume;
    if (!tu_connect(server, client, &opts, &res))
        die("handshake");
    if (session != NULL)
        *session = res.session;
    else
        SSL_SESSION_free(res.session);
    return res.resumed;
}

/* The application's own new-session callback: counts, keeps nothing. */
static int own_new_cb(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    (void)sess;
    own_new_calls++;
    return 0;
}

static const long SERVER_MODE = SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL;

/* Full handshake on context A, then the client's session offered to context B. */
static void across_contexts(int version) {
    SSL_CTX *a = server_ctx(version, 0, SERVER_MODE);
    SSL_CTX *b = server_ctx(version, 1, SERVER_MODE);
    SSL_CTX *client = client_ctx(version);
    SSL_SESSION *sess = NULL;
    const char *v = vname(version);

    printf("%s.full_resumed=%d\n", v, conn(a, client, NULL, &sess));
    printf("%s.resumed_on_other_ctx=%d\n", v, conn(b, client, sess, NULL));
    if (version == TLS1_3_VERSION) {
        /* The same ticket once more: a TLS 1.3 ticket is meant for a single use. */
        printf("%s.replay_resumed=%d\n", v, conn(b, client, sess, NULL));
    } else {
        /* A TLS 1.2 session ID stays reusable. */
        printf("%s.second_resumed=%d\n", v, conn(b, client, sess, NULL));
    }
    SSL_SESSION_free(sess);
    SSL_CTX_free(client);
    SSL_CTX_free(b);
    SSL_CTX_free(a);
}

/* What the program can see of its contexts' settings. */
static void settings(void) {
    SSL_CTX *server = server_ctx(TLS1_3_VERSION, 0, SERVER_MODE);
    SSL_CTX *server_ex = server_ctx(TLS1_3_VERSION, 1, SERVER_MODE);
    SSL_CTX *client = client_ctx(TLS1_3_VERSION);

    printf("server.no_ticket=%d\n", (SSL_CTX_get_options(server) & SSL_OP_NO_TICKET) != 0);
    printf("server.cache_mode=%ld\n", SSL_CTX_get_session_cache_mode(server));
    printf("server_ex.no_ticket=%d\n", (SSL_CTX_get_options(server_ex) & SSL_OP_NO_TICKET) != 0);
    printf("server_ex.cache_mode=%ld\n", SSL_CTX_get_session_cache_mode(server_ex));
    printf("client.no_ticket=%d\n", (SSL_CTX_get_options(client) & SSL_OP_NO_TICKET) != 0);
    printf("client.cache_mode=%ld\n", SSL_CTX_get_session_cache_mode(client));
    printf("client.options=0x%llx\n", (unsigned long long)SSL_CTX_get_options(client));
    printf("client.new_cb_set=%d\n", SSL_CTX_sess_get_new_cb(client) != NULL);
    printf("client.get_cb_set=%d\n", SSL_CTX_sess_get_get_cb(client) != NULL);
    printf("client.remove_cb_set=%d\n", SSL_CTX_sess_get_remove_cb(client) != NULL);
    SSL_CTX_free(client);
    SSL_CTX_free(server_ex);
    SSL_CTX_free(server);
}

/* Two contexts on which the program installs its own new-session callback after creating
 * them. prefix: the key prefix. calls counts the full handshake on the first context only,
 * so that it does not depend on whether the second connection resumed. */
static void own_callback(int version, const char *prefix) {
    SSL_CTX *d1 = server_ctx(version, 0, SERVER_MODE);
    SSL_CTX *d2 = server_ctx(version, 0, SERVER_MODE);
    SSL_CTX *client = client_ctx(version);
    SSL_SESSION *sess = NULL;

    SSL_CTX_sess_set_new_cb(d1, own_new_cb);
    SSL_CTX_sess_set_new_cb(d2, own_new_cb);
    printf("%s.getter_returns_own=%d\n", prefix,
           SSL_CTX_sess_get_new_cb(d1) == own_new_cb && SSL_CTX_sess_get_new_cb(d2) == own_new_cb);
    own_new_calls = 0;
    conn(d1, client, NULL, &sess);
    printf("%s.calls=%d\n", prefix, own_new_calls);
    printf("%s.resumed_on_other_ctx=%d\n", prefix, conn(d2, client, sess, NULL));
    SSL_SESSION_free(sess);
    SSL_CTX_free(client);
    SSL_CTX_free(d2);
    SSL_CTX_free(d1);
}

/* A context on which the program turns session caching off after creating it. */
static void cache_off(int version, const char *prefix) {
    SSL_CTX *off = server_ctx(version, 0, SSL_SESS_CACHE_OFF);
    SSL_CTX *a = server_ctx(version, 0, SERVER_MODE);
    SSL_CTX *b = server_ctx(version, 1, SERVER_MODE);
    SSL_CTX *client = client_ctx(version);
    SSL_SESSION *sess = NULL;

    printf("%s.cache_mode=%ld\n", prefix, SSL_CTX_get_session_cache_mode(off));
    /* Made on the cache-off context, offered to it again. */
    conn(off, client, NULL, &sess);
    printf("%s.resumed=%d\n", prefix, conn(off, client, sess, NULL));
    SSL_SESSION_free(sess);
    sess = NULL;
    /* Made on a caching context (so a shared cache holds it), offered to the cache-off one:
     * a context with caching off must not be answered from the cache. */
    conn(a, client, NULL, &sess);
    printf("%s.resumed_from_cache=%d\n", prefix, conn(off, client, sess, NULL));
    /* ... and that refused lookup did not use the session up (TLS 1.3 tickets are single
     * use): it still resumes on a caching context. */
    printf("%s.still_resumes_elsewhere=%d\n", prefix, conn(b, client, sess, NULL));
    SSL_SESSION_free(sess);
    SSL_CTX_free(client);
    SSL_CTX_free(b);
    SSL_CTX_free(a);
    SSL_CTX_free(off);
}

/* Whether a new connection of ctx, made a server (accept) or a client (connect), has
 * SSL_OP_NO_TICKET: what it will do about stateless tickets. */
static int conn_no_ticket(SSL_CTX *ctx, int server) {
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        die("SSL_new");
    if (server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    int r = (SSL_get_options(ssl) & SSL_OP_NO_TICKET) != 0;
    SSL_free(ssl);
    return r;
}

/* Connection-level settings: a server connection, a client connection of a generic
 * (TLS_method) context, a server connection of a cache-off context, and a server connection
 * in a child forked after the contexts were made. */
static void connection_settings(void) {
    SSL_CTX *server = server_ctx(TLS1_3_VERSION, 0, SERVER_MODE);
    SSL_CTX *generic = server_ctx(TLS1_3_VERSION, 1, SERVER_MODE);
    SSL_CTX *off = server_ctx(TLS1_3_VERSION, 0, SSL_SESS_CACHE_OFF);
    printf("server.conn.no_ticket=%d\n", conn_no_ticket(server, 1));
    printf("generic.client_conn.no_ticket=%d\n", conn_no_ticket(generic, 0));
    printf("cache_off.conn.no_ticket=%d\n", conn_no_ticket(off, 1));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        printf("forked.conn.no_ticket=%d\n", conn_no_ticket(server, 1));
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("fork");
    SSL_CTX_free(off);
    SSL_CTX_free(generic);
    SSL_CTX_free(server);
}

/* A client connection of a generic (TLS_method) context resumes against a server that
 * issues stateless tickets (here: one whose program turned its session cache off). */
static void generic_client(int version, const char *prefix) {
    SSL_CTX *tickets = server_ctx(version, 0, SSL_SESS_CACHE_OFF);
    SSL_CTX *client = SSL_CTX_new(TLS_method());
    SSL_SESSION *sess = NULL;
    if (client == NULL || !pin_version(client, version))
        die("generic client context");
    SSL_CTX_set_verify(client, SSL_VERIFY_NONE, NULL);
    conn(tickets, client, NULL, &sess);
    printf("%s.resumed=%d\n", prefix, conn(tickets, client, sess, NULL));
    SSL_SESSION_free(sess);
    SSL_CTX_free(client);
    SSL_CTX_free(tickets);
}

/* A connection closed without close_notify from the server (as Python's ssl module and many
 * servers do), then its session offered to another context. */
static void unclean_close(int version, const char *prefix) {
    SSL_CTX *a = server_ctx(version, 0, SERVER_MODE);
    SSL_CTX *b = server_ctx(version, 1, SERVER_MODE);
    SSL_CTX *client = client_ctx(version);
    tu_conn_opts opts = {.no_shutdown = 1};
    tu_conn_result res;
    if (!tu_connect(a, client, &opts, &res))
        die("handshake");
    printf("%s.resumed_on_other_ctx=%d\n", prefix, conn(b, client, res.session, NULL));
    SSL_SESSION_free(res.session);
    SSL_CTX_free(client);
    SSL_CTX_free(b);
    SSL_CTX_free(a);
}

/* SNI: the servername callback switches to another context (as HAProxy and Apache do). */
static int to_vhost(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    SSL_set_SSL_CTX(ssl, arg);
    return SSL_TLSEXT_ERR_OK;
}

/* Two cache-off contexts, the connection switched from the first to the second by SNI: the
 * session is offered again to the same pair. */
static void sni_cache_off(int version, const char *prefix) {
    SSL_CTX *front = server_ctx(version, 0, SSL_SESS_CACHE_OFF);
    SSL_CTX *vhost = server_ctx(version, 1, SSL_SESS_CACHE_OFF);
    SSL_CTX *client = client_ctx(version);
    SSL_CTX_set_tlsext_servername_callback(front, to_vhost);
    SSL_CTX_set_tlsext_servername_arg(front, vhost);
    tu_conn_opts opts = {.servername = "vhost.test"};
    tu_conn_result full, again;
    if (!tu_connect(front, client, &opts, &full))
        die("handshake");
    opts.resume = full.session;
    if (!tu_connect(front, client, &opts, &again))
        die("handshake");
    printf("%s.resumed=%d\n", prefix, again.resumed);
    SSL_SESSION_free(again.session);
    SSL_SESSION_free(full.session);
    SSL_CTX_free(client);
    SSL_CTX_free(vhost);
    SSL_CTX_free(front);
}

int main(void) {
    if (!tu_identity_make(&ident))
        die("identity");
    settings();
    across_contexts(TLS1_2_VERSION);
    across_contexts(TLS1_3_VERSION);
    own_callback(TLS1_3_VERSION, "own_cb");
    own_callback(TLS1_2_VERSION, "own_cb.tls12");
    cache_off(TLS1_3_VERSION, "cache_off");
    cache_off(TLS1_2_VERSION, "cache_off.tls12");
    connection_settings();
    generic_client(TLS1_2_VERSION, "generic_client.tls12");
    generic_client(TLS1_3_VERSION, "generic_client.tls13");
    unclean_close(TLS1_2_VERSION, "unclean.tls12");
    unclean_close(TLS1_3_VERSION, "unclean.tls13");
    sni_cache_off(TLS1_2_VERSION, "sni_off.tls12");
    printf("contexts.server=%d\n", n_server_ctx);
    printf("contexts.client=%d\n", n_client_ctx);
    tu_identity_free(&ident);
    return fflush(stdout) == 0 ? 0 : 2;
}
