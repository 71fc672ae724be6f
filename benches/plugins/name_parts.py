# The C example's logic (text.name-parts) in Python, for the plugin benchmark: the first word
# and the rest, spelt as written. Written with the helper library, as an author would.
from tern_step import Result, step


def run(config, variables, invocation):
    words = config["name"].split()
    outcome = "empty" if not words else "single" if len(words) == 1 else "full"
    first, last = (words[0] if words else ""), " ".join(words[1:])
    return Result({config.get("first_as", "first_name"): first, config.get("last_as", "last_name"): last}, outcome)


WitWorld = step(name="py.name-parts", version="0.1.0", description="Splits a full name into first and last name (Python)",
                config={"name": {"type": "string"}, "first_as": {"type": "string"}, "last_as": {"type": "string"}},
                required=["name"], run=run)
