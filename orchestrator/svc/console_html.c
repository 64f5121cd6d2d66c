/* console_html.c -- the console's pages (console.h); not yet: every page
 * is 404 until they come. */
#include "console_int.h"

void
console_page(struct store *st, const struct http_request *req,
             struct http_response *r)
{
	(void)st;
	r->status = 404;
	(void)req;
	http_printf(r, "no page (the pages are not built yet)\n");
}
