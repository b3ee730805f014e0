// libmosquitto for the uplink stage (MQTT 5, TLS 1.3 mTLS, driven by daqlink's own loop).
#ifndef DAQLINK_CMOSQUITTO_SHIM_H
#define DAQLINK_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <mqtt_protocol.h>
#endif
