// A small, strict JSON reader and writer for plugins: enough to read the string members of the
// step's configuration and to write the output object. Not a general-purpose library.
#ifndef TERN_JSON_H
#define TERN_JSON_H

#include <stddef.h>

// Finds the top-level member `key` of the JSON object in `json[0..len)`. If it is a string,
// stores its decoded UTF-8 value (malloc'd, NUL-terminated) in `*out` and returns 1; returns 0
// when the member is missing or not a string, -1 when the document is not valid JSON.
int json_get_string(const char *json, size_t len, const char *key, char **out);

// A growable output buffer.
typedef struct {
  char *data;
  size_t len, cap;
} json_buf;

void json_put_raw(json_buf *b, const char *s);
// Appends `s` as a JSON string literal (quoted and escaped).
void json_put_string(json_buf *b, const char *s);

#endif
