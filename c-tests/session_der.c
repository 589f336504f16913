/* The DER of real server sessions, for the cache core's benchmark (benches/core.rs), which
 * needs what a cache really stores and cannot make handshakes itself.
 *
 * Runs one full handshake (c-tests/tls_util.c, over a BIO pair) of each kind and writes the
 * session the server hands its cache (the new-session callback, i2d_SSL_SESSION) to DIR:
 *   tls12.der              TLS 1.2, ECDHE-ECDSA (the test identity), no client certificate;
 *   tls13.der              TLS 1.3, a stateful ticket (the sessions sesscache stores);
 *   tls13_client_cert.der  TLS 1.3 with a client certificate: a self-signed RSA-2048 one
 *                          (the common kind for client authentication), which the session
 *                          holds in full.
 * Usage: session_der DIR (DIR must exist). Prints one line per file: kind, DER bytes. */
#include "tls_util.h"
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>

/* The last session the server handed its cache, encoded. */
static unsigned char *last_der;
static int last_len;

static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    OPENSSL_free(last_der);
    last_der = NULL;
    last_len = i2d_SSL_SESSION(sess, &last_der);
    return 0; /* no reference kept */
}

/* Accepts any client certificate: the point is the session, not the trust. */
static int accept_any(int ok, X509_STORE_CTX *store) {
    (void)ok;
    (void)store;
    return 1;
}

static int write_file(const char *dir, const char *kind) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.der", dir, kind);
    FILE *f = fopen(path, "wb");
    int ok = f != NULL && last_len > 0 && fwrite(last_der, 1, (size_t)last_len, f) == (size_t)last_len;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "session_der: cannot write %s\n", path);
    else
        printf("%s %d\n", kind, last_len);
    return ok;
}

/* One handshake of `version`, with a client certificate when `client` is given; writes the
 * server's session as DIR/KIND.der. */
static int one(const char *dir, const char *kind, const tu_identity *server_id, int version,
               const tu_identity *client) {
    SSL_CTX *s = tu_server_ctx(server_id, version), *c = tu_client_ctx(version);
    tu_conn_result res = {0};
    int ok = s != NULL && c != NULL;
    if (ok) {
        SSL_CTX_sess_set_new_cb(s, on_new_session);
        if (client != NULL) {
            SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
            ok = SSL_CTX_use_certificate(c, client->cert) == 1 && SSL_CTX_use_PrivateKey(c, client->key) == 1;
        }
    }
    last_len = 0;
    ok = ok && tu_connect(s, c, NULL, &res) && res.version == version && (client == NULL || res.peer);
    ok = ok && write_file(dir, kind);
    if (!ok)
        tu_print_errors(kind);
    SSL_SESSION_free(res.session);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    tu_identity server = {0}, client = {0};
    client.key = EVP_RSA_gen(2048);
    client.cert = client.key != NULL ? tu_cert_make(client.key, "client.sesscache.test", 2, 0) : NULL;
    int ok = tu_identity_make(&server) && client.cert != NULL;
    ok = ok && one(argv[1], "tls12", &server, TLS1_2_VERSION, NULL);
    ok = ok && one(argv[1], "tls13", &server, TLS1_3_VERSION, NULL);
    ok = ok && one(argv[1], "tls13_client_cert", &server, TLS1_3_VERSION, &client);
    tu_identity_free(&client);
    tu_identity_free(&server);
    OPENSSL_free(last_der);
    return ok ? 0 : 1;
}
