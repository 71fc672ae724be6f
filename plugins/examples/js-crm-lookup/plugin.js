// crm.lookup-contact: looks a contact up in a Teamleader-style CRM through an integration.
//
// The host injects the integration's bearer token (and refreshes it); this code never sees it.
// Outcomes: "found" (the contact is in `save_as`), "not_found" (the CRM answered 404).
// Written with the helper library (plugins/sdk/js/tern-step.js): JSON in and out, errors as
// values, `http.fetch` through the host.
import { http, step, StepError } from "../../sdk/js/tern-step.js";

export const { describe, run } = step({
  name: "crm.lookup-contact",
  version: "0.1.0",
  description: "Looks up a CRM contact by id through an OAuth integration",
  config: {
    integration: { type: "string", description: "The integration whose token is sent." },
    url: { type: "string", description: "The CRM's contacts.info endpoint." },
    contact_id: { type: "string", description: "The contact's id (placeholders allowed)." },
    save_as: { type: "string", description: "The variable that receives the contact." },
  },
  required: ["integration", "url", "contact_id", "save_as"],
  run(config) {
    const answer = http.fetch({
      method: "POST",
      url: config.url,
      json: { id: config.contact_id },
      headers: { accept: "application/json" },
      integration: config.integration,
    });
    if (answer.status === 404) return { variables: { [config.save_as]: null }, outcome: "not_found" };
    if (answer.status === 429 || answer.status >= 500) throw new StepError("retryable", `the CRM answered ${answer.status}`);
    if (answer.status !== 200) throw new StepError("fatal", `the CRM answered ${answer.status}`);
    const body = answer.json();
    return { variables: { [config.save_as]: body.data ?? body }, outcome: "found" };
  },
});
