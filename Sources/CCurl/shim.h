// libcurl for the OTA download adapter (multi interface, driven by daqlink's own poll loop).
// curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic, which Swift cannot
// call: these typed wrappers pass exactly one argument of the type each option expects.
#ifndef DAQLINK_CCURL_SHIM_H
#define DAQLINK_CCURL_SHIM_H
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

/// curl_global_init(CURL_GLOBAL_DEFAULT): once per process, before any other call.
static inline CURLcode daqlink_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT); }

static inline CURLcode daqlink_curl_setopt_long(CURL *easy, CURLoption option, long value) {
    return curl_easy_setopt(easy, option, value);
}
static inline CURLcode daqlink_curl_setopt_offset(CURL *easy, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(easy, option, value);
}
/// Strings are copied by libcurl (NULL resets the option to its default).
static inline CURLcode daqlink_curl_setopt_string(CURL *easy, CURLoption option, const char *value) {
    return curl_easy_setopt(easy, option, value);
}
static inline CURLcode daqlink_curl_setopt_pointer(CURL *easy, CURLoption option, void *value) {
    return curl_easy_setopt(easy, option, value);
}
static inline CURLcode daqlink_curl_setopt_list(CURL *easy, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(easy, option, value);
}
/// CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION.
static inline CURLcode daqlink_curl_setopt_data_callback(CURL *easy, CURLoption option, curl_write_callback callback) {
    return curl_easy_setopt(easy, option, callback);
}
static inline CURLcode daqlink_curl_getinfo_long(CURL *easy, CURLINFO info, long *value) {
    return curl_easy_getinfo(easy, info, value);
}
static inline CURLcode daqlink_curl_getinfo_pointer(CURL *easy, CURLINFO info, void **value) {
    return curl_easy_getinfo(easy, info, value);
}

static inline CURLMcode daqlink_curl_multi_socket_callback(CURLM *multi, curl_socket_callback callback, void *context) {
    CURLMcode rc = curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, callback);
    return rc != CURLM_OK ? rc : curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, context);
}
static inline CURLMcode daqlink_curl_multi_timer_callback(CURLM *multi, curl_multi_timer_callback callback, void *context) {
    CURLMcode rc = curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, callback);
    return rc != CURLM_OK ? rc : curl_multi_setopt(multi, CURLMOPT_TIMERDATA, context);
}
#endif
