// OpenSSL (libssl + libcrypto) for PKI, manifest signatures (Ed25519 via EVP) and hashing.
#ifndef DAQLINK_COPENSSL_SHIM_H
#define DAQLINK_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

static inline unsigned long daqlink_openssl_version_number(void) { return OpenSSL_version_num(); }
#endif
