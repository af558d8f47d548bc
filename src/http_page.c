#include "http_page.h"

#include <stdlib.h>

/* Placeholder until the page lands (branch i15-page): the document as text. */
void http_page_render(const json_t *doc, const char *nonce, struct evbuffer *out)
{
	char *text = json_dumps(doc, JSON_INDENT(1));

	(void)nonce;
	evbuffer_add_printf(out, "<!doctype html><title>portfwd</title><pre>%s</pre>\n", "(page)");
	free(text);
}
