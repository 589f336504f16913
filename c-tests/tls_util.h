/* Test support: an ECDSA P-256 identity made at run time, server and client contexts, and
 * real handshakes over in-memory BIO pairs. Shared by the harness, the benchmark and the
 * examples. */
#ifndef SESSCACHE_TLS_UTIL_H
#define SESSCACHE_TLS_UTIL_H

#include <openssl/ssl.h>

typedef struct tu_identity {
    EVP_PKEY *key;
    X509 *cert;
} tu_identity;

/* Makes a self-signed ECDSA P-256 certificate for CN=sesscache.test. 1 on success. */
int tu_identity_make(tu_identity *id);
void tu_identity_free(tu_identity *id);

/* A server context pinned to one protocol version (TLS1_2_VERSION or TLS1_3_VERSION),
 * with stateful tickets (SSL_OP_NO_TICKET) and session ID context "sesscache-test", so that
 * contexts made here accept each other's sessions. */
SSL_CTX *tu_server_ctx(const tu_identity *id, int version);
/* A client context pinned to one version, without certificate verification. */
SSL_CTX *tu_client_ctx(int version);

/* A self-signed certificate for `key` with subject CN=`cn`, made bigger by an extension of
 * `pad` bytes of filler (an unknown OID, not critical); serial `serial`. NULL on failure. */
X509 *tu_cert_make(EVP_PKEY *key, const char *cn, long serial, int pad);

/* Options of one connection. */
typedef struct tu_conn_opts {
    SSL_SESSION *resume;     /* offered by the client, or NULL */
    const char *servername;  /* SNI sent by the client, or NULL */
    int no_shutdown;         /* skip the server's SSL_shutdown (an unclean close by the server;
                              * the client still closes cleanly) */
} tu_conn_opts;

/* Result of one connection. */
typedef struct tu_conn_result {
    int ok;                  /* the handshake completed */
    int resumed;             /* the server says SSL_session_reused */
    SSL_SESSION *session;    /* the client's session afterwards (TLS 1.3: its last ticket); caller frees */
    int version;             /* negotiated protocol */
    int agrees;              /* TLS 1.2: the server's session has the client's ID and master key
                              * (what the server issued under that ID); TLS 1.3 proves this by
                              * completing the handshake (the PSK binder), so always 1 there */
    int peer;                /* the server has a client certificate (resumed or not)... */
    unsigned char peer_sha256[32]; /* ...whose DER has this SHA-256 */
} tu_conn_result;

/* Runs one full connection (handshake, TLS 1.3 tickets read by the client, clean shutdown)
 * over a BIO pair. Returns res.ok. */
int tu_connect(SSL_CTX *server, SSL_CTX *client, const tu_conn_opts *opts, tu_conn_result *res);

/* Prints OpenSSL's error queue to stderr with a prefix, and clears it. */
void tu_print_errors(const char *where);

#endif
