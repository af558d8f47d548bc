/*
 * The status page that GET / serves (http.h): one HTML document with no
 * external assets, readable without script, kept fresh by a few lines of
 * script that read /status.json.
 */
#ifndef PORTFWD_HTTP_PAGE_H
#define PORTFWD_HTTP_PAGE_H

#include <event2/buffer.h>
#include <jansson.h>

/* Writes the status page, one HTML document with no external assets, for
 * DOC (the document status_json() makes) to OUT. NONCE (base64url-safe
 * characters only) goes into the nonce attribute of its one <style> and one
 * <script> element: the server sends Content-Security-Policy
 * "default-src 'none'; script-src 'nonce-NONCE'; style-src 'nonce-NONCE';
 * connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'". */
void http_page_render(const json_t *doc, const char *nonce, struct evbuffer *out);

#endif
