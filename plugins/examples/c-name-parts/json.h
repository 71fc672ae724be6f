// A small, strict JSON reader and writer for plugins: enough to read the string members of the
// step's configuration and to write the output object. Not a general-purpose library.
#ifndef TERN_JSON_H
#define TERN_JSON_H

#include <stddef.h>

// Reads the top-level members `keys[0..n)` of the JSON object in `json[0..len)` in one pass.
// For each key whose value is a string, stores the decoded UTF-8 value (malloc'd,
// NUL-terminated) in `out[i]`; other keys leave `out[i]` NULL. Returns -1 when the document is
// not a valid JSON object, 0 otherwise.
int json_get_strings(const char *json, size_t len, const char *const *keys, char **out, int n);

// A growable output buffer.
typedef struct {
  char *data;
  size_t len, cap;
} json_buf;

void json_put_raw(json_buf *b, const char *s);
// Appends `s` as a JSON string literal (quoted and escaped).
void json_put_string(json_buf *b, const char *s);

#endif
