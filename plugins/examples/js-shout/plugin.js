// text.shout: upper-cases a text into a variable. The whole step, with the helper library.
import { step } from "../../sdk/js/tern-step.js";

export const { describe, run } = step({
  name: "text.shout",
  version: "0.1.0",
  description: "Upper-cases a text into a variable",
  config: { text: { type: "string" }, save_as: { type: "string" } },
  required: ["text", "save_as"],
  run(config) {
    return { [config.save_as]: config.text.toUpperCase() };
  },
});
