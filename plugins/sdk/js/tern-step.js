// tern-step.js: the helper library for Tern step plugins written in JavaScript (built with
// componentize-qjs, see plugins/README.md). Copy it beside your step; nothing is downloaded at
// run time. It turns the `tern:step` world into plain JavaScript:
//
//   import { step, StepError, http } from "./tern-step.js";
//   export const { describe, run } = step({
//     name: "acme.shout", version: "0.1.0", description: "Upper-cases a text",
//     config: { text: { type: "string" }, save_as: { type: "string" } },
//     required: ["text", "save_as"],
//     run(config) { return { [config.save_as]: config.text.toUpperCase() }; },
//   });
//
// - `run(config, variables, invocation)` gets the step's fields and the run's variables as
//   parsed JSON, and returns the variables to set, or `{ variables, outcome }`.
// - Errors are values: `throw new StepError("retryable" | "fatal" | "invalid-config", message)`.
//   Anything else thrown (a TypeError, a failed JSON.parse) becomes a `fatal` step error with its
//   message and stack, instead of a trap with no words.
// - `http.fetch({ method, url, headers, json, body, integration, timeoutMs })` calls through
//   the host (the integration's token is injected there, never seen here) and returns
//   `{ status, headers, text(), json() }`; a refused or failed call throws a StepError
//   (`retryable` for a timeout or a network failure, `fatal` otherwise).
import host from "tern:step/host@0.1.0";

/** A step error with its kind: "invalid-config", "retryable" or "fatal". */
export class StepError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

// UTF-8 by hand: QuickJS has no TextEncoder/TextDecoder.
export function utf8Encode(text) {
  const bytes = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) bytes.push(c);
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(bytes);
}

export function utf8Decode(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let c, n;
    if (b < 0x80) { c = b; n = 1; }
    else if (b >= 0xf0) { c = b & 7; n = 4; }
    else if (b >= 0xe0) { c = b & 15; n = 3; }
    else { c = b & 31; n = 2; }
    for (let k = 1; k < n; k++) c = (c << 6) | (bytes[i + k] & 63);
    out += String.fromCodePoint(c);
    i += n;
  }
  return out;
}

/** Calls through the host; see the header of this file. */
export const http = {
  fetch({ method = "GET", url, headers = {}, json, body, integration = null, timeoutMs = null }) {
    const list = Object.entries(headers).map(([k, v]) => [k, String(v)]);
    let bytes = null;
    if (json !== undefined) {
      bytes = utf8Encode(JSON.stringify(json));
      if (!list.some(([k]) => k.toLowerCase() === "content-type")) list.push(["content-type", "application/json"]);
    } else if (body !== undefined && body !== null) {
      bytes = typeof body === "string" ? utf8Encode(body) : body;
    }
    let response;
    try {
      response = host.httpFetch({ method, url, headers: list, body: bytes, integration, token: null, timeoutMs });
    } catch (e) {
      const err = e && typeof e === "object" && "payload" in e ? e.payload : e;
      const kind = err && (err.tag === "timeout" || err.tag === "failed") ? "retryable" : "fatal";
      const words = err && typeof err === "object" && "tag" in err ? `${err.tag}: ${err.val}` : String(err);
      throw new StepError(kind, `${method} ${url} failed: ${words}`);
    }
    return {
      status: response.status,
      headers: response.headers,
      text: () => utf8Decode(response.body),
      json: () => JSON.parse(utf8Decode(response.body)),
    };
  },
};

/** Writes to Tern's log: level is "trace", "debug", "info", "warn" or "error". */
export function log(level, message) {
  host.log(level, String(message));
}

/** The `describe` and `run` exports of a step; see the header of this file. */
export function step({ name, version, description, config = {}, required = [], output = null, run }) {
  const schema = { type: "object", properties: config, required };
  return {
    describe() {
      return {
        name,
        version,
        description,
        configSchema: JSON.stringify(schema),
        outputSchema: output ? JSON.stringify({ type: "object", properties: output }) : null,
      };
    },
    run(invocation, configJson, variablesJson) {
      try {
        const result = run(JSON.parse(configJson), JSON.parse(variablesJson), invocation) ?? {};
        const hasOutcome = typeof result === "object" && "variables" in result;
        const variables = hasOutcome ? result.variables ?? {} : result;
        return { variablesJson: JSON.stringify(variables), outcome: hasOutcome ? result.outcome ?? null : null };
      } catch (e) {
        if (e instanceof StepError) throw { tag: e.kind, val: e.message };
        const words = e instanceof Error ? `${e.name}: ${e.message}${e.stack ? `\n${e.stack}` : ""}` : String(e);
        throw { tag: "fatal", val: `the step threw ${words}` };
      }
    },
  };
}
