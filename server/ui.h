/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_UI_H
#define KUBIA_UI_H

/*
 * GET /ui (and /ui/) in peers mode: one self-contained page that draws the cluster view
 * from the view stream (server/ui.html, compiled in by server/gen_ui.py). Only server/
 * includes it.
 */

#include <microhttpd.h>
#include <stdbool.h>

/* Queues the page, or 304 when the request's If-None-Match names it. */
enum MHD_Result ui_serve(struct MHD_Connection *conn);

#endif
