// crm.lookup-contact: looks a contact up in a Teamleader-style CRM through an integration.
//
// The host injects the integration's bearer token (and refreshes it); this code never sees it.
// Outcomes: "found" (the contact is in `save_as`), "not_found" (the CRM answered 404).
import host from "tern:step/host@0.1.0";

const CONFIG_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["integration", "url", "contact_id", "save_as"],
  properties: {
    integration: { type: "string", description: "The integration whose token is sent." },
    url: { type: "string", description: "The CRM's contacts.info endpoint." },
    contact_id: { type: "string", description: "The contact's id (placeholders allowed)." },
    save_as: { type: "string", description: "The variable that receives the contact." },
  },
};

export function describe() {
  return {
    name: "crm.lookup-contact",
    version: "0.1.0",
    description: "Looks up a CRM contact by id through an OAuth integration",
    configSchema: JSON.stringify(CONFIG_SCHEMA),
    outputSchema: null,
  };
}

// UTF-8 by hand: QuickJS has no TextEncoder/TextDecoder.
function utf8Encode(text) {
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

function utf8Decode(bytes) {
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

// A failed import call throws an Error whose `payload` is the WIT error (`{tag, val}`).
function witError(e) {
  return e && typeof e === "object" && "payload" in e ? e.payload : e;
}

function describeError(e) {
  const err = witError(e);
  if (err && typeof err === "object" && "tag" in err) return `${err.tag}: ${err.val}`;
  return String(err);
}

export function run(invocation, configJson, variablesJson) {
  const config = JSON.parse(configJson);
  host.log("debug", `looking up contact ${config.contact_id} for step ${invocation.stepId}`);
  let response;
  try {
    response = host.httpFetch({
      method: "POST",
      url: config.url,
      headers: [["content-type", "application/json"], ["accept", "application/json"]],
      body: utf8Encode(JSON.stringify({ id: config.contact_id })),
      integration: config.integration,
      token: null,
      timeoutMs: null,
    });
  } catch (e) {
    const err = witError(e);
    const tag = err && (err.tag === "timeout" || err.tag === "failed") ? "retryable" : "fatal";
    throw { tag, val: `the CRM request failed: ${describeError(e)}` };
  }
  if (response.status === 404) {
    return { variablesJson: JSON.stringify({ [config.save_as]: null }), outcome: "not_found" };
  }
  if (response.status === 429 || response.status >= 500) {
    throw { tag: "retryable", val: `the CRM answered ${response.status}` };
  }
  if (response.status !== 200) {
    throw { tag: "fatal", val: `the CRM answered ${response.status}` };
  }
  const body = JSON.parse(utf8Decode(response.body));
  return { variablesJson: JSON.stringify({ [config.save_as]: body.data ?? body }), outcome: "found" };
}
