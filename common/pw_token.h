/*
 * pw_token: bearer tokens kept in files (one token on one line), and comparing them without
 * telling an attacker how much of a guess was right.
 */
#ifndef PATHWAY_PW_TOKEN_H
#define PATHWAY_PW_TOKEN_H

#include <stddef.h>

/* Reads the token in `path`: one line, surrounding whitespace dropped. `what` names the setting in
 * errors ("admin.token_file"). Returns the token (malloc'd; caller frees), or NULL with *err set
 * (malloc'd) when the file cannot be read or does not hold exactly one non-empty line. */
char *pw_token_read(const char *path, const char *what, char **err);

/* Whether `given` (len bytes, not NUL-terminated) equals `token`, in time that does not depend on
 * where they differ or on the token's length (both are hashed first). */
int pw_token_equal(const char *token, const char *given, size_t len);

#endif
