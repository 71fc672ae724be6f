//! The checks across a set of flows: every `call_flow` names a flow of the set and matches its
//! interface (its `inputs` and `outputs`). They need every flow of the set, so they run after
//! each flow compiled on its own ([`load_files`](super::load_files)); like the checks of one
//! flow, they do no I/O and report every problem at once, at the caller's JSON pointers.

use crate::diagnostics::{Diagnostic, nearest, pointer_push};
use crate::step::CompiledFlow;

/// Every problem of the calls of each flow in `flows`, in the same order as `flows`.
pub fn check_calls(flows: &[&CompiledFlow]) -> Vec<Vec<Diagnostic>> {
    flows
        .iter()
        .map(|caller| {
            let mut diags = Vec::new();
            for call in &caller.calls {
                let Some(callee) = flows.iter().find(|f| f.id == call.flow) else {
                    let ids = flows.iter().map(|f| f.id.as_str());
                    let mut d = Diagnostic::error(
                        "unknown-flow",
                        call.pointer.clone(),
                        format!("step `{}` calls flow `{}`, which is not in this set of flows", call.step, call.flow),
                    );
                    d = match nearest(call.flow.as_str(), ids) {
                        Some(near) => d.with_hint(format!("did you mean `{near}`?")),
                        None => d.with_hint("put the called flow's file in the same folder (`tern validate FOLDER`)"),
                    };
                    diags.push(d);
                    continue;
                };
                let declared = |names: &mut dyn Iterator<Item = &str>| {
                    let list: Vec<&str> = names.collect();
                    if list.is_empty() { "none".to_string() } else { list.join(", ") }
                };
                for missing in callee.inputs.iter().filter(|i| !call.inputs.contains(*i)) {
                    diags.push(
                        Diagnostic::error(
                            "missing-input",
                            format!("{}/inputs", call.step_pointer),
                            format!(
                                "flow `{}` needs the input `{missing}`, which step `{}` does not give",
                                callee.id, call.step
                            ),
                        )
                        .with_hint(format!("add \"{missing}\": \"{{{{…}}}}\" to `inputs`")),
                    );
                }
                for extra in call.inputs.iter().filter(|i| !callee.inputs.contains(*i)) {
                    let mut d = Diagnostic::error(
                        "unknown-input",
                        pointer_push(&format!("{}/inputs", call.step_pointer), extra.as_str()),
                        format!(
                            "flow `{}` has no input `{extra}`; its inputs are: {}",
                            callee.id,
                            declared(&mut callee.inputs.iter().map(|v| v.as_str()))
                        ),
                    );
                    d = match nearest(extra.as_str(), callee.inputs.iter().map(|v| v.as_str())) {
                        Some(near) => d.with_hint(format!("did you mean `{near}`?")),
                        None => d.with_hint(format!("declare it in flow `{}`'s \"inputs\"", callee.id)),
                    };
                    diags.push(d);
                }
                for (mine, theirs) in call.outputs.iter().filter(|(_, t)| !callee.outputs.contains(t)) {
                    let mut d = Diagnostic::error(
                        "unknown-output",
                        pointer_push(&format!("{}/outputs", call.step_pointer), mine.as_str()),
                        format!(
                            "flow `{}` has no output `{theirs}`; its outputs are: {}",
                            callee.id,
                            declared(&mut callee.outputs.iter().map(|v| v.as_str()))
                        ),
                    );
                    d = match nearest(theirs.as_str(), callee.outputs.iter().map(|v| v.as_str())) {
                        Some(near) => d.with_hint(format!("did you mean `{near}`?")),
                        None => d.with_hint(format!("declare it in flow `{}`'s \"outputs\"", callee.id)),
                    };
                    diags.push(d);
                }
            }
            diags
        })
        .collect()
}
