// text.name-parts: splits a person's full name into a first and a last name.
//
// A step plugin in C that maps data without any I/O. The step's configuration:
//
//   {"id": "split", "type": "text.name-parts", "name": "{{full_name}}",
//    "first_as": "first_name", "last_as": "last_name",
//    "outcomes": {"empty": "ask_name"}}
//
// `name` is rendered by Tern before the plugin sees it. The first word is the first name, the
// rest the last name, both spelt as written (names are not re-cased: "de la Cruz", "McAdams").
// `first_as` and `last_as` default to `first_name` and `last_name`; the schema states those
// defaults, so Tern knows which variables the step sets when a flow leaves them out. The
// plugin returns the outcome `empty` when the name has no letters, `single` for one word,
// `full` else.
//
// Memory: arguments belong to the plugin (freed here); returned strings are allocated with
// malloc and freed by the generated post-return function after the host has copied them.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "step.h"

static const char CONFIG_SCHEMA[] =
    "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"name\"],"
    "\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"The full name (placeholders allowed).\"},"
    "\"first_as\":{\"type\":\"string\",\"default\":\"first_name\",\"description\":\"Variable for the first name.\"},"
    "\"last_as\":{\"type\":\"string\",\"default\":\"last_name\",\"description\":\"Variable for the last name.\"}}}";

void exports_step_describe(step_step_info_t *ret) {
  step_string_dup(&ret->name, "text.name-parts");
  step_string_dup(&ret->version, "0.1.0");
  step_string_dup(&ret->description, "Splits a full name into first name (first word) and last name (the rest), spelt as written");
  step_string_dup(&ret->config_schema, CONFIG_SCHEMA);
  ret->output_schema.is_some = false;
}

static void log_debug(const char *text) {
  step_string_t message;
  step_string_set(&message, text);
  tern_step_host_log(TERN_STEP_HOST_LOG_LEVEL_DEBUG, &message);
}

// Copies `name` with runs of whitespace collapsed to one space and the ends trimmed.
static char *normalize(const char *name) {
  size_t n = strlen(name);
  char *out = malloc(n + 1), *w = out;
  if (!out) return NULL;
  int pending_space = 0;
  for (const char *p = name; *p; p++) {
    if (isspace((unsigned char)*p)) {
      pending_space = w != out;
      continue;
    }
    if (pending_space) *w++ = ' ';
    pending_space = 0;
    *w++ = *p;
  }
  *w = 0;
  return out;
}

static int has_letter(const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (isalpha(c) || c >= 0x80) return 1;  // bytes of non-ASCII letters count
  }
  return 0;
}

static bool fail(step_step_error_t *err, uint8_t tag, const char *message) {
  err->tag = tag;
  step_string_dup(&err->val.fatal, message);  // the three cases share one layout
  return false;
}

bool exports_step_run(step_invocation_t *invocation, step_string_t *config_json, step_string_t *variables_json,
                      step_output_t *ret, step_step_error_t *err) {
  static const char *const keys[] = {"name", "first_as", "last_as"};
  char *values[3];
  int parsed = json_get_strings((const char *)config_json->ptr, config_json->len, keys, values, 3);
  char *name = values[0], *first_as = values[1], *last_as = values[2];
  step_invocation_free(invocation);
  step_string_free(config_json);
  step_string_free(variables_json);
  bool ok = false;
  if (parsed < 0) {
    fail(err, TERN_STEP_HOST_STEP_ERROR_INVALID_CONFIG, "the configuration is not a JSON object");
    goto done;
  }
  if (!name) {
    fail(err, TERN_STEP_HOST_STEP_ERROR_INVALID_CONFIG, "`name` is missing or not a string");
    goto done;
  }
  char *clean = normalize(name);
  if (!clean) {
    fail(err, TERN_STEP_HOST_STEP_ERROR_FATAL, "out of memory");
    goto done;
  }
  const char *outcome;
  char *space = strchr(clean, ' ');
  const char *first_name = clean, *last_name = "";
  if (!has_letter(clean)) {
    outcome = "empty";
    first_name = "";
  } else if (!space) {
    outcome = "single";
  } else {
    *space = 0;
    last_name = space + 1;
    outcome = "full";
  }
  log_debug(outcome);

  json_buf out = {0};
  json_put_raw(&out, "{");
  json_put_string(&out, first_as ? first_as : "first_name");
  json_put_raw(&out, ":");
  json_put_string(&out, first_name);
  json_put_raw(&out, ",");
  json_put_string(&out, last_as ? last_as : "last_name");
  json_put_raw(&out, ":");
  json_put_string(&out, last_name);
  json_put_raw(&out, "}");
  ret->variables_json.ptr = (uint8_t *)out.data;  // ownership passes to the post-return free
  ret->variables_json.len = out.len;
  ret->outcome.is_some = true;
  step_string_dup(&ret->outcome.val, outcome);
  free(clean);
  ok = true;
done:
  free(name);
  free(first_as);
  free(last_as);
  return ok;
}
