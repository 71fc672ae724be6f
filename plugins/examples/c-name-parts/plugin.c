// text.name-parts: splits a person's full name into a first and a last name.
//
// A step plugin in C that maps data without any I/O, written with the helper library
// (plugins/sdk/c/tern_step.h). The step's configuration:
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
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define TERN_STEP_IMPLEMENTATION
#include "../../sdk/c/tern_step.h"

const tern_step_info TERN_STEP_INFO = {
    .name = "text.name-parts",
    .version = "0.1.0",
    .description = "Splits a full name into first name (first word) and last name (the rest), spelt as written",
    .config_schema =
        "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"name\"],"
        "\"properties\":{"
        "\"name\":{\"type\":\"string\",\"description\":\"The full name (placeholders allowed).\"},"
        "\"first_as\":{\"type\":\"string\",\"default\":\"first_name\",\"description\":\"Variable for the first name.\"},"
        "\"last_as\":{\"type\":\"string\",\"default\":\"last_name\",\"description\":\"Variable for the last name.\"}}}",
};

// Copies `name` with runs of whitespace collapsed to one space and the ends trimmed.
static char *normalize(const char *name) {
  char *out = malloc(strlen(name) + 1), *w = out;
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

int tern_run(tern_step *s) {
  const char *name = tern_config(s, "name");
  const char *first_as = tern_config(s, "first_as"), *last_as = tern_config(s, "last_as");
  if (!name) return tern_fail(s, TERN_INVALID_CONFIG, "`name` is missing or not a string");
  char *clean = normalize(name);
  if (!clean) return tern_fail(s, TERN_FATAL, "out of memory");
  const char *outcome, *first_name = clean, *last_name = "";
  char *space = strchr(clean, ' ');
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
  tern_log(TERN_DEBUG, outcome);
  tern_set(s, first_as ? first_as : "first_name", first_name);
  tern_set(s, last_as ? last_as : "last_name", last_name);
  tern_outcome(s, outcome);
  free(clean);
  return TERN_OK;
}
