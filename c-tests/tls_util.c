#include "tls_util.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#include <openssl/ec.h>
/* OpenSSL 1.1.1's name for it (make compat). */
#define SSL_get1_peer_certificate SSL_get_peer_certificate
#endif

void tu_print_errors(const char *where) {
    unsigned long e;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        fprintf(stderr, "%s: %s\n", where, buf);
    }
}

/* An ECDSA P-256 key. EVP_EC_gen is OpenSSL 3.0's; 1.1.1 (make compat) makes it from an
 * EC_KEY. */
static EVP_PKEY *ec_p256(void) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    return EVP_EC_gen("P-256");
#else
    EVP_PKEY *key = EVP_PKEY_new();
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    if (key == NULL || ec == NULL || EC_KEY_generate_key(ec) != 1 || EVP_PKEY_assign_EC_KEY(key, ec) != 1) {
        EC_KEY_free(ec);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
#endif
}

/* Subject and issuer CN=cn, from a name of its own: OpenSSL 4.0's X509_get_subject_name
 * returns a const name, which cannot be added to. */
static int set_names(X509 *cert, const char *cn) {
    X509_NAME *name = X509_NAME_new();
    int ok = name != NULL &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) == 1 &&
             X509_set_subject_name(cert, name) == 1 && X509_set_issuer_name(cert, name) == 1;
    X509_NAME_free(name);
    return ok;
}

int tu_identity_make(tu_identity *id) {
    id->key = ec_p256();
    id->cert = X509_new();
    if (id->key == NULL || id->cert == NULL)
        goto fail;
    X509_set_version(id->cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(id->cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(id->cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(id->cert), 86400L * 30);
    if (!set_names(id->cert, "sesscache.test") || X509_set_pubkey(id->cert, id->key) != 1 ||
        X509_sign(id->cert, id->key, EVP_sha256()) <= 0)
        goto fail;
    return 1;
fail:
    tu_print_errors("tu_identity_make");
    tu_identity_free(id);
    return 0;
}

void tu_identity_free(tu_identity *id) {
    EVP_PKEY_free(id->key);
    X509_free(id->cert);
    id->key = NULL;
    id->cert = NULL;
}

X509 *tu_cert_make(EVP_PKEY *key, const char *cn, long serial, int pad) {
    X509 *cert = X509_new();
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.4.1.55555.1", 1);
    ASN1_OCTET_STRING *value = ASN1_OCTET_STRING_new();
    unsigned char *filler = pad > 0 ? OPENSSL_malloc((size_t)pad) : NULL;
    X509_EXTENSION *ext = NULL;
    int ok = cert != NULL && oid != NULL && value != NULL && (pad <= 0 || filler != NULL);
    if (ok) {
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
        X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
        X509_gmtime_adj(X509_getm_notAfter(cert), 86400L * 30);
        ok = set_names(cert, cn) && X509_set_pubkey(cert, key) == 1;
    }
    if (ok && pad > 0) {
        /* Printable filler that is not DER: the cost estimate counts it as bytes. */
        for (int i = 0; i < pad; i++)
            filler[i] = (unsigned char)('!' + (i * 7 + serial) % 90);
        ok = ASN1_OCTET_STRING_set(value, filler, pad) == 1 &&
             (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, value)) != NULL &&
             X509_add_ext(cert, ext, -1) == 1;
    }
    ok = ok && X509_sign(cert, key, EVP_sha256()) > 0;
    X509_EXTENSION_free(ext);
    OPENSSL_free(filler);
    ASN1_OCTET_STRING_free(value);
    ASN1_OBJECT_free(oid);
    if (!ok) {
        tu_print_errors("tu_cert_make");
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static int pin_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version) == 1 && SSL_CTX_set_max_proto_version(ctx, version) == 1;
}

SSL_CTX *tu_server_ctx(const tu_identity *id, int version) {
    static const unsigned char sid_ctx[] = "sesscache-test";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || !pin_version(ctx, version) || SSL_CTX_use_certificate(ctx, id->cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, id->key) != 1 ||
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1) != 1) {
        tu_print_errors("tu_server_ctx");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    return ctx;
}

SSL_CTX *tu_client_ctx(int version) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || !pin_version(ctx, version)) {
        tu_print_errors("tu_client_ctx");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

/* One step of a non-blocking handshake: 1 done, 0 wants I/O, -1 failed. */
static int step(SSL *ssl) {
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(ssl, r);
    return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
}

/* Whether two sessions have the same ID and master key. */
static int same_session(const SSL_SESSION *a, const SSL_SESSION *b) {
    unsigned int alen = 0, blen = 0;
    unsigned char ak[SSL_MAX_MASTER_KEY_LENGTH], bk[SSL_MAX_MASTER_KEY_LENGTH];
    if (a == NULL || b == NULL)
        return 0;
    const unsigned char *aid = SSL_SESSION_get_id(a, &alen), *bid = SSL_SESSION_get_id(b, &blen);
    size_t akl = SSL_SESSION_get_master_key(a, ak, sizeof ak), bkl = SSL_SESSION_get_master_key(b, bk, sizeof bk);
    return alen == blen && memcmp(aid, bid, alen) == 0 && akl == bkl && akl > 0 && memcmp(ak, bk, akl) == 0;
}

int tu_connect(SSL_CTX *server_ctx, SSL_CTX *client_ctx, const tu_conn_opts *opts, tu_conn_result *res) {
    static const tu_conn_opts none = {0};
    if (opts == NULL)
        opts = &none;
    memset(res, 0, sizeof *res);
    SSL *server = SSL_new(server_ctx), *client = SSL_new(client_ctx);
    BIO *sbio = NULL, *cbio = NULL;
    if (server == NULL || client == NULL || BIO_new_bio_pair(&sbio, 0, &cbio, 0) != 1)
        goto done;
    SSL_set_bio(server, sbio, sbio);
    SSL_set_bio(client, cbio, cbio);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    if (opts->resume != NULL && SSL_set_session(client, opts->resume) != 1)
        goto done;
    if (opts->servername != NULL && SSL_set_tlsext_host_name(client, opts->servername) != 1)
        goto done;

    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone && (cdone = step(client)) < 0)
            goto done;
        if (!sdone && (sdone = step(server)) < 0)
            goto done;
    }
    if (!(cdone && sdone))
        goto done;
    res->version = SSL_version(server);
    res->resumed = SSL_session_reused(server);
    res->agrees = res->version == TLS1_3_VERSION || same_session(SSL_get_session(server), SSL_get_session(client));
    X509 *peer = SSL_get1_peer_certificate(server);
    if (peer != NULL) {
        unsigned int n = 0;
        res->peer = X509_digest(peer, EVP_sha256(), res->peer_sha256, &n) == 1 && n == 32;
        X509_free(peer);
    }
    if (res->version == TLS1_3_VERSION) {
        /* The tickets follow the handshake: let the client read them. */
        unsigned char b;
        int r = SSL_read(client, &b, 1);
        if (r > 0 || SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
            goto done;
    }
    res->session = SSL_get1_session(client);
    /* The client always closes cleanly; the server only unless told not to. */
    SSL_shutdown(client);
    if (!opts->no_shutdown)
        SSL_shutdown(server);
    res->ok = 1;
done:
    if (!res->ok)
        tu_print_errors("tu_connect");
    SSL_free(client);
    SSL_free(server);
    return res->ok;
}
