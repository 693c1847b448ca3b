/*
 * The web console's static assets, embedded in pathway-control at build time (ui/embed.py writes
 * the table from ui/src and the pinned npm packages of ui/package-lock.json), so that one binary
 * deploys and the console always matches the API of the binary serving it.
 */
#ifndef PATHWAY_CP_UI_H
#define PATHWAY_CP_UI_H

#include <stddef.h>

typedef struct st_cp_ui_asset_t {
    const char *name;          /* served as /ui/<name>; one path segment */
    const char *content_type;  /* Content-Type header */
    const unsigned char *data; /* the bytes (NUL-terminated, the NUL not counted) */
    size_t len;                /* bytes of data */
    const char *etag;          /* strong ETag, quoted: its SHA-256's first 128 bits in hex */
} cp_ui_asset_t;

extern const cp_ui_asset_t cp_ui_assets[];
extern const size_t cp_ui_num_assets;

/* The asset called `name` (len bytes, not NUL-terminated), or NULL. */
const cp_ui_asset_t *cp_ui_find(const char *name, size_t len);

#endif
