/* The ABI check: this file includes OpenSSL's header and ours. Our header declares the six
 * SSL_CTX_sess_{set,get}_{new,get,remove}_cb functions and SSL_set_SSL_CTX with OpenSSL's
 * struct tags, so it compiles (with -Werror) only while each of our prototypes is exactly
 * OpenSSL's. The assignments below also check that our ready-made callbacks have the types
 * OpenSSL's setters take. */
#include <openssl/ssl.h>

#include "sesscache.h"

int abi_check_types(void);

int abi_check_types(void) {
    int (*new_cb)(SSL *, SSL_SESSION *) = sesscache_new_session_cb;
    SSL_SESSION *(*get_cb)(SSL *, const unsigned char *, int, int *) = sesscache_get_session_cb;
    void (*remove_cb)(SSL_CTX *, SSL_SESSION *) = sesscache_remove_session_cb;
    return new_cb != NULL && get_cb != NULL && remove_cb != NULL;
}
