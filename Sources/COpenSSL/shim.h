// OpenSSL (libssl + libcrypto) for PKI, manifest signatures (Ed25519 via EVP) and hashing.
#ifndef DAQLINK_COPENSSL_SHIM_H
#define DAQLINK_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

static inline unsigned long daqlink_openssl_version_number(void) { return OpenSSL_version_num(); }

// --- PKI (Sources/PKI): X.509 certificates, CRLs, PEM, EC keys. Macros become inline functions. ---
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bn.h>
#include <openssl/bio.h>
#include <openssl/objects.h>

/// A fresh EC key on NIST P-256 (EVP_EC_gen is a variadic macro Swift cannot call).
static inline EVP_PKEY *daqlink_pki_generate_p256(void) { return EVP_EC_gen("P-256"); }
/// The bytes held by a memory BIO (BIO_get_mem_data is a macro); returns their count.
static inline long daqlink_pki_bio_contents(BIO *bio, char **bytes) { return BIO_get_mem_data(bio, bytes); }
/// Releases memory OpenSSL allocated for us (OPENSSL_free is a macro).
static inline void daqlink_pki_free(void *pointer) { OPENSSL_free(pointer); }
#endif
