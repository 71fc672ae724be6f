# crm.contact-name: looks a contact up in a Teamleader-style CRM through an integration and
# maps its first and last name into two variables.
#
# The host injects the integration's bearer token (and refreshes it); this code never sees it.
# Outcomes: "found", "not_found" (the CRM answered 404). Written with the helper library
# (plugins/sdk/python/tern_step.py): JSON in and out, errors as values, `fetch` through the host.
from tern_step import Result, StepError, fetch, step


def run(config, variables, invocation):
    answer = fetch(config["url"], method="POST", json={"id": config["contact_id"]},
                   headers={"accept": "application/json"}, integration=config["integration"])
    if answer.status == 404:
        return Result({}, outcome="not_found")
    if answer.status == 429 or answer.status >= 500:
        raise StepError("retryable", f"the CRM answered {answer.status}")
    if answer.status != 200:
        raise StepError("fatal", f"the CRM answered {answer.status}")
    contact = answer.json().get("data", {})
    return Result({config["first_as"]: contact.get("first_name"),
                   config["last_as"]: contact.get("last_name")}, outcome="found")


def text(description):
    return {"type": "string", "description": description}


WitWorld = step(name="crm.contact-name", version="0.1.0",
                description="Looks up a CRM contact's first and last name through an OAuth integration",
                config={"integration": text("The integration whose token is sent."),
                        "url": text("The CRM's contacts.info endpoint."),
                        "contact_id": text("The contact's id (placeholders allowed)."),
                        "first_as": text("The variable for the first name."),
                        "last_as": text("The variable for the last name.")},
                required=["integration", "url", "contact_id", "first_as", "last_as"], run=run)
