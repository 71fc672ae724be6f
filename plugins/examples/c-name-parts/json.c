#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static size_t put_utf8(char *dst, unsigned cp) {
  if (cp < 0x80) { dst[0] = (char)cp; return 1; }
  if (cp < 0x800) { dst[0] = (char)(0xc0 | (cp >> 6)); dst[1] = (char)(0x80 | (cp & 63)); return 2; }
  if (cp < 0x10000) {
    dst[0] = (char)(0xe0 | (cp >> 12)); dst[1] = (char)(0x80 | ((cp >> 6) & 63)); dst[2] = (char)(0x80 | (cp & 63));
    return 3;
  }
  dst[0] = (char)(0xf0 | (cp >> 18)); dst[1] = (char)(0x80 | ((cp >> 12) & 63));
  dst[2] = (char)(0x80 | ((cp >> 6) & 63)); dst[3] = (char)(0x80 | (cp & 63));
  return 4;
}

static int read_hex4(cursor *c, unsigned *out) {
  if (c->end - c->p < 4) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex(c->p[i]);
    if (h < 0) return -1;
    v = v * 16 + (unsigned)h;
  }
  c->p += 4;
  *out = v;
  return 0;
}

// Reads a string at the cursor (which is on the opening quote). With `out`, stores the decoded
// value (malloc'd); without, only skips it.
static int read_string(cursor *c, char **out) {
  if (c->p >= c->end || *c->p != '"') return -1;
  c->p++;
  char *buf = NULL;
  if (out) {
    buf = malloc((size_t)(c->end - c->p) + 1);  // decoded text is never longer than the source
    if (!buf) return -1;
  }
  size_t n = 0;
  while (c->p < c->end) {
    unsigned char ch = (unsigned char)*c->p++;
    if (ch == '"') {
      if (out) { buf[n] = 0; *out = buf; }
      return 0;
    }
    if (ch < 0x20) break;
    if (ch != '\\') {
      if (buf) buf[n++] = (char)ch;
      continue;
    }
    if (c->p >= c->end) break;
    char esc = *c->p++;
    unsigned cp;
    switch (esc) {
      case '"': cp = '"'; break;
      case '\\': cp = '\\'; break;
      case '/': cp = '/'; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        if (read_hex4(c, &cp)) goto fail;
        if (cp >= 0xd800 && cp < 0xdc00) {  // a surrogate pair
          unsigned lo;
          if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') goto fail;
          c->p += 2;
          if (read_hex4(c, &lo) || lo < 0xdc00 || lo > 0xdfff) goto fail;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp < 0xe000) {
          goto fail;
        }
        break;
      }
      default: goto fail;
    }
    if (buf) n += put_utf8(buf + n, cp);
  }
fail:
  free(buf);
  return -1;
}

static int skip_value(cursor *c, int depth);

static int skip_container(cursor *c, char close, int depth) {
  c->p++;
  skip_ws(c);
  if (c->p < c->end && *c->p == close) { c->p++; return 0; }
  for (;;) {
    skip_ws(c);
    if (close == '}') {
      if (read_string(c, NULL)) return -1;
      skip_ws(c);
      if (c->p >= c->end || *c->p++ != ':') return -1;
    }
    if (skip_value(c, depth + 1)) return -1;
    skip_ws(c);
    if (c->p >= c->end) return -1;
    char ch = *c->p++;
    if (ch == close) return 0;
    if (ch != ',') return -1;
  }
}

static int skip_value(cursor *c, int depth) {
  if (depth > 128) return -1;
  skip_ws(c);
  if (c->p >= c->end) return -1;
  char ch = *c->p;
  if (ch == '"') return read_string(c, NULL);
  if (ch == '{') return skip_container(c, '}', depth);
  if (ch == '[') return skip_container(c, ']', depth);
  const char *start = c->p;
  while (c->p < c->end && strchr("+-0123456789.eEtruefalsn", *c->p)) c->p++;
  return c->p > start ? 0 : -1;
}

// Reads an object key: `*raw`/`*raw_len` point into the source when it has no escapes (the
// common case, no allocation); otherwise `*decoded` holds it.
static int read_key(cursor *c, const char **raw, size_t *raw_len, char **decoded) {
  *decoded = NULL;
  if (c->p >= c->end || *c->p != '"') return -1;
  const char *start = c->p + 1, *q = start;
  while (q < c->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
  if (q < c->end && *q == '"') {
    *raw = start;
    *raw_len = (size_t)(q - start);
    c->p = q + 1;
    return 0;
  }
  if (read_string(c, decoded)) return -1;
  *raw = *decoded;
  *raw_len = strlen(*decoded);
  return 0;
}

int json_get_strings(const char *json, size_t len, const char *const *keys, char **out, int n) {
  for (int i = 0; i < n; i++) out[i] = NULL;
  cursor c = {json, json + len};
  skip_ws(&c);
  if (c.p >= c.end || *c.p != '{') return -1;
  c.p++;
  skip_ws(&c);
  if (c.p < c.end && *c.p == '}') return 0;
  for (;;) {
    skip_ws(&c);
    const char *name;
    size_t name_len;
    char *decoded;
    if (read_key(&c, &name, &name_len, &decoded)) return -1;
    int which = -1;
    for (int i = 0; i < n; i++) {
      if (strlen(keys[i]) == name_len && memcmp(keys[i], name, name_len) == 0) which = i;
    }
    free(decoded);
    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != ':') return -1;
    skip_ws(&c);
    if (which >= 0 && !out[which] && c.p < c.end && *c.p == '"') {
      if (read_string(&c, &out[which])) return -1;
    } else if (skip_value(&c, 1)) {
      return -1;
    }
    skip_ws(&c);
    if (c.p >= c.end) return -1;
    char ch = *c.p++;
    if (ch == '}') return 0;
    if (ch != ',') return -1;
  }
}

static void reserve(json_buf *b, size_t more) {
  if (b->len + more + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + more + 1) cap *= 2;
  char *data = realloc(b->data, cap);
  if (!data) abort();
  b->data = data;
  b->cap = cap;
}

void json_put_raw(json_buf *b, const char *s) {
  size_t n = strlen(s);
  reserve(b, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

void json_put_string(json_buf *b, const char *s) {
  static const char digits[] = "0123456789abcdef";
  reserve(b, 2 + strlen(s) * 6);
  b->data[b->len++] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char ch = *p;
    if (ch == '"' || ch == '\\') {
      b->data[b->len++] = '\\';
      b->data[b->len++] = (char)ch;
    } else if (ch < 0x20) {
      memcpy(b->data + b->len, "\\u00", 4);
      b->len += 4;
      b->data[b->len++] = digits[ch >> 4];
      b->data[b->len++] = digits[ch & 15];
    } else {
      b->data[b->len++] = (char)ch;
    }
  }
  b->data[b->len++] = '"';
  b->data[b->len] = 0;
}
