/* pathwayctl's `set KEY=VALUE` (command-line input applied to a document from the server), its
 * readable diff, and the rewriting of the server's error paths to ids. Input: assignments, one per
 * line (a first byte '!' means `--create`), then a NUL, then the document as JSON (the example
 * fleet document when absent or unparsable). Checks: no crash, and the merge patch pathwayctl sends
 * turns the document into exactly what `set` computed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"
#include "ctl.h"

static const char *default_doc_ = "{\"limiter\":{\"max_concurrent\":100},\"services\":[{\"id\":\"eth\",\"endpoints\":[{\"url\":"
                                  "\"http://127.0.0.1:8545\"}],\"pool\":{\"max_conns_per_host\":20}},{\"id\":\"poly\","
                                  "\"endpoints\":[{\"url\":\"http://127.0.0.1:8547\"}]}]}";

static int has_null(const json_t *v)
{
    const char *k;
    json_t *c;
    size_t i;
    if (json_is_null(v))
        return 1;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, c) if (has_null(c)) return 1;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, c) if (has_null(c)) return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    size_t alen = nul != NULL ? (size_t)(nul - (const char *)data) : size;
    char *text = strndup((const char *)data, alen);
    if (text == NULL)
        return 0;
    json_t *doc = NULL;
    if (nul != NULL)
        doc = json_loadb(nul + 1, size - alen - 1, JSON_DECODE_ANY, NULL);
    if (doc == NULL)
        doc = json_loads(default_doc_, 0, NULL);

    unsigned flags = text[0] == '!' ? CTL_SET_CREATE : 0;
    const char *assignments[8];
    size_t n = 0;
    for (char *save = NULL, *line = strtok_r(text + (flags ? 1 : 0), "\n", &save); line != NULL && n < 8;
         line = strtok_r(NULL, "\n", &save))
        assignments[n++] = line;

    /* each line as an error message of the server, its path rewritten against the document */
    for (size_t i = 0; i < n; i++) {
        char *m = ctl_error_with_ids(assignments[i], doc);
        if (m == NULL)
            abort();
        free(m);
    }

    char err[256];
    if (n > 0 && ctl_set_check(assignments, n, err, sizeof(err)) == 0) {
        json_t *after = ctl_set_apply(doc, assignments, n, flags, err, sizeof(err));
        if (after != NULL) {
            json_t *patch = ctl_merge_diff(doc, after);
            json_t *patched = patch != NULL ? cfg_merge_patch(doc, patch) : NULL;
            /* a null value cannot travel in a merge patch (it means "remove"), so only documents
             * without one must round-trip */
            if (json_is_object(doc) && json_is_object(after) && !has_null(after) && !has_null(doc) &&
                (patched == NULL || !json_equal(patched, after)))
                abort();
            cfg_changes_t changes;
            if (cfg_changes(doc, after, &changes) == 0)
                cfg_changes_dispose(&changes);
            json_decref(patched);
            json_decref(patch);
            json_decref(after);
        }
    }
    json_decref(doc);
    free(text);
    return 0;
}
