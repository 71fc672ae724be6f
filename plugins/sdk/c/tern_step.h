// tern_step.h: the helper library for Tern step plugins written in C (built with
// `tern plugins build`, clang-19 and wasi-libc; see plugins/README.md). A single-header
// library: copy it beside your step, and in exactly one .c file write
//
//   #define TERN_STEP_IMPLEMENTATION
//   #include "tern_step.h"
//
// It implements the world's `describe` and `run` exports for you, so the step is its logic:
//
//   const tern_step_info TERN_STEP_INFO = {
//     .name = "acme.shout", .version = "0.1.0", .description = "Upper-cases a text",
//     .config_schema = "{\"type\":\"object\",\"required\":[\"text\",\"save_as\"],"
//                      "\"properties\":{\"text\":{\"type\":\"string\"},\"save_as\":{\"type\":\"string\"}}}",
//   };
//
//   int tern_run(tern_step *s) {
//     const char *text = tern_config(s, "text");
//     if (!text) return tern_fail(s, TERN_INVALID_CONFIG, "`text` is missing");
//     ...
//     tern_set(s, tern_config(s, "save_as"), loud);
//     return TERN_OK;
//   }
//
// - `tern_config` and `tern_var` read a top-level string member of the step's configuration or
//   of the run's variables (NULL when absent or not a string); the helper owns what they return.
// - `tern_set` sets a string variable, `tern_set_json` one whose value is JSON text you wrote,
//   `tern_outcome` the outcome label; errors are values: `return tern_fail(s, kind, message)`.
// - `tern_log` writes to Tern's log. For HTTP, call the generated `tern_step_host_http_fetch`
//   (plugins/README.md, "A plugin in C").
// No stdio, time or exit: plugins get no WASI.
#ifndef TERN_STEP_H
#define TERN_STEP_H

#include <stddef.h>

#include "step.h"  // generated from the world by `tern plugins build`

// What `describe` returns. `output_schema` may be NULL.
typedef struct {
  const char *name, *version, *description, *config_schema, *output_schema;
} tern_step_info;

// One execution of the step.
typedef struct tern_step tern_step;

typedef enum { TERN_INVALID_CONFIG, TERN_RETRYABLE, TERN_FATAL } tern_error_kind;
typedef enum { TERN_TRACE, TERN_DEBUG, TERN_INFO, TERN_WARN, TERN_ERROR } tern_log_level;

#define TERN_OK 0

// Yours: the step's description and its logic (return TERN_OK or tern_fail(...)).
extern const tern_step_info TERN_STEP_INFO;
int tern_run(tern_step *s);

const char *tern_config(tern_step *s, const char *key);
const char *tern_var(tern_step *s, const char *key);
const char *tern_message_text(tern_step *s);
void tern_set(tern_step *s, const char *variable, const char *value);
void tern_set_json(tern_step *s, const char *variable, const char *json);
void tern_outcome(tern_step *s, const char *label);
int tern_fail(tern_step *s, tern_error_kind kind, const char *message);
void tern_log(tern_log_level level, const char *message);

#ifdef TERN_STEP_IMPLEMENTATION
#include <stdlib.h>
#include <string.h>

// A small, strict JSON reader and writer: enough to read the string members of an object and
// to write the output object. Not a general-purpose library.
typedef struct {
  char *data;
  size_t len, cap;
} json_buf;

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

// One top-level string member of an object: its name and decoded value (both malloc'd).
typedef struct {
  char *name, *value;
} json_member;

// Reads every top-level member of the JSON object in `json[0..len)` whose value is a string,
// in one pass, into `*out` (malloc'd; `*n` of them). Returns -1 when the document is not a
// valid JSON object, 0 otherwise.
static int json_string_members(const char *json, size_t len, json_member **out, int *n) {
  *out = NULL;
  *n = 0;
  int cap = 0;
  cursor c = {json, json + len};
  skip_ws(&c);
  if (c.p >= c.end || *c.p != '{') return -1;
  c.p++;
  skip_ws(&c);
  if (c.p < c.end && *c.p == '}') return 0;
  for (;;) {
    skip_ws(&c);
    char *name = NULL;
    if (read_string(&c, &name)) return -1;
    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != ':') { free(name); return -1; }
    skip_ws(&c);
    if (c.p < c.end && *c.p == '"') {
      char *value = NULL;
      if (read_string(&c, &value)) { free(name); return -1; }
      if (*n == cap) {
        cap = cap ? cap * 2 : 8;
        json_member *grown = realloc(*out, (size_t)cap * sizeof **out);
        if (!grown) abort();
        *out = grown;
      }
      (*out)[(*n)++] = (json_member){name, value};
    } else {
      free(name);
      if (skip_value(&c, 1)) return -1;
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

static void json_put_raw(json_buf *b, const char *s) {
  size_t n = strlen(s);
  reserve(b, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

static void json_put_string(json_buf *b, const char *s) {
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

// Strings the helper handed out, freed after the run.
typedef struct tern_owned {
  char *text;
  struct tern_owned *next;
} tern_owned;

// A document's string members, read on first use.
typedef struct {
  step_string_t *json;
  json_member *members;
  int n, read;
} tern_doc;

struct tern_step {
  step_invocation_t *invocation;
  tern_doc config, variables;
  json_buf out;
  char *outcome;
  tern_error_kind error_kind;
  char *error;
  tern_owned *owned;
};

static const char *tern_lookup(tern_doc *d, const char *key) {
  if (!d->read) {
    d->read = 1;
    json_string_members((const char *)d->json->ptr, d->json->len, &d->members, &d->n);
  }
  for (int i = 0; key && i < d->n; i++) {
    if (strcmp(d->members[i].name, key) == 0) return d->members[i].value;
  }
  return NULL;
}

static void tern_doc_free(tern_doc *d) {
  for (int i = 0; i < d->n; i++) {
    free(d->members[i].name);
    free(d->members[i].value);
  }
  free(d->members);
}

const char *tern_config(tern_step *s, const char *key) { return tern_lookup(&s->config, key); }
const char *tern_var(tern_step *s, const char *key) { return tern_lookup(&s->variables, key); }

const char *tern_message_text(tern_step *s) {
  char *text = malloc(s->invocation->message_text.len + 1);
  if (!text) abort();
  memcpy(text, s->invocation->message_text.ptr, s->invocation->message_text.len);
  text[s->invocation->message_text.len] = 0;
  tern_owned *o = malloc(sizeof *o);
  if (!o) abort();
  o->text = text;
  o->next = s->owned;
  s->owned = o;
  return text;
}

void tern_set_json(tern_step *s, const char *variable, const char *json) {
  json_put_raw(&s->out, s->out.len ? "," : "{");
  json_put_string(&s->out, variable);
  json_put_raw(&s->out, ":");
  json_put_raw(&s->out, json);
}

void tern_set(tern_step *s, const char *variable, const char *value) {
  json_put_raw(&s->out, s->out.len ? "," : "{");
  json_put_string(&s->out, variable);
  json_put_raw(&s->out, ":");
  json_put_string(&s->out, value);
}

void tern_outcome(tern_step *s, const char *label) {
  free(s->outcome);
  s->outcome = strdup(label);
}

int tern_fail(tern_step *s, tern_error_kind kind, const char *message) {
  free(s->error);
  s->error_kind = kind;
  s->error = strdup(message ? message : "failed");
  return -1;
}

void tern_log(tern_log_level level, const char *message) {
  step_string_t text;
  step_string_set(&text, message);
  tern_step_host_log((tern_step_host_log_level_t)level, &text);
}

void exports_step_describe(step_step_info_t *ret) {
  step_string_dup(&ret->name, TERN_STEP_INFO.name);
  step_string_dup(&ret->version, TERN_STEP_INFO.version);
  step_string_dup(&ret->description, TERN_STEP_INFO.description);
  step_string_dup(&ret->config_schema, TERN_STEP_INFO.config_schema ? TERN_STEP_INFO.config_schema : "{\"type\":\"object\"}");
  ret->output_schema.is_some = TERN_STEP_INFO.output_schema != NULL;
  if (TERN_STEP_INFO.output_schema) step_string_dup(&ret->output_schema.val, TERN_STEP_INFO.output_schema);
}

// Arguments are the plugin's (freed here); results are freed by the generated post-return
// function after the host has copied them.
bool exports_step_run(step_invocation_t *invocation, step_string_t *config_json, step_string_t *variables_json,
                      step_output_t *ret, step_step_error_t *err) {
  tern_step s = {invocation, {config_json, NULL, 0, 0}, {variables_json, NULL, 0, 0}, {0}, NULL, TERN_FATAL, NULL, NULL};
  int status = tern_run(&s);
  bool ok = status == TERN_OK && !s.error;
  if (ok) {
    json_put_raw(&s.out, s.out.len ? "}" : "{}");
    ret->variables_json.ptr = (uint8_t *)s.out.data;
    ret->variables_json.len = s.out.len;
    ret->outcome.is_some = s.outcome != NULL;
    if (s.outcome) step_string_dup(&ret->outcome.val, s.outcome);
  } else {
    free(s.out.data);
    err->tag = s.error_kind == TERN_INVALID_CONFIG ? TERN_STEP_HOST_STEP_ERROR_INVALID_CONFIG
               : s.error_kind == TERN_RETRYABLE    ? TERN_STEP_HOST_STEP_ERROR_RETRYABLE
                                                   : TERN_STEP_HOST_STEP_ERROR_FATAL;
    step_string_dup(&err->val.fatal, s.error ? s.error : "tern_run returned an error without tern_fail");  // one layout for the three
  }
  free(s.outcome);
  free(s.error);
  tern_doc_free(&s.config);
  tern_doc_free(&s.variables);
  while (s.owned) {
    tern_owned *next = s.owned->next;
    free(s.owned->text);
    free(s.owned);
    s.owned = next;
  }
  step_invocation_free(invocation);
  step_string_free(config_json);
  step_string_free(variables_json);
  return ok;
}
#endif  // TERN_STEP_IMPLEMENTATION
#endif  // TERN_STEP_H
