// libmosquitto for the uplink stage (MQTT 5, TLS 1.3 mTLS, driven by daqlink's own loop).
#ifndef DAQLINK_CMOSQUITTO_SHIM_H
#define DAQLINK_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/ssl.h>

/// While the TLS handshake of `mosq` is under way: 1 when it waits to write, 0 when it waits to
/// read; -1 when none is under way (no TLS, or the handshake is done).
static inline int daqlink_mosquitto_handshake_wants_write(struct mosquitto *mosq) {
    SSL *ssl = (SSL *)mosquitto_ssl_get(mosq);
    if (ssl == NULL || !SSL_in_init(ssl)) return -1;
    return SSL_want_write(ssl) ? 1 : 0;
}
#endif
