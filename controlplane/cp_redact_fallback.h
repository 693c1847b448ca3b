/*
 * The schema's redaction calls: from schema/cfg.h when it has them, else declared here for
 * cp_redact_fallback.c (compiled only then; see controlplane/CMakeLists.txt).
 *
 * cfg_redact: a new tree (new reference; NULL when out of memory) where every
 * services[].endpoints[].url has its userinfo, path and query replaced by <redacted> and every
 * endpoint `headers` value is <redacted>. cfg_redact_url: one URL (caller frees; NULL when out of
 * memory).
 */
#ifndef PATHWAY_CP_REDACT_FALLBACK_H
#define PATHWAY_CP_REDACT_FALLBACK_H

#include <jansson.h>
#include "cfg.h"

#ifdef CP_REDACT_FALLBACK
json_t *cfg_redact(const json_t *doc);
char *cfg_redact_url(const char *url);
#endif

#endif
