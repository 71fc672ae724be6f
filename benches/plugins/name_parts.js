// The C example's logic (text.name-parts) in JavaScript, for the plugin benchmark: the first
// word and the rest, spelt as written.
export function describe() {
  return {
    name: "js.name-parts",
    version: "0.1.0",
    description: "Splits a full name into first and last name (JavaScript)",
    configSchema: JSON.stringify({
      type: "object",
      required: ["name"],
      properties: { name: { type: "string" }, first_as: { type: "string" }, last_as: { type: "string" } },
    }),
    outputSchema: null,
  };
}

export function run(invocation, configJson, variablesJson) {
  const config = JSON.parse(configJson);
  const words = config.name.trim().split(/\s+/).filter((w) => w.length > 0);
  const first = words[0] ?? "";
  const last = words.slice(1).join(" ");
  const outcome = words.length === 0 ? "empty" : words.length === 1 ? "single" : "full";
  return {
    variablesJson: JSON.stringify({ [config.first_as ?? "first_name"]: first, [config.last_as ?? "last_name"]: last }),
    outcome,
  };
}
