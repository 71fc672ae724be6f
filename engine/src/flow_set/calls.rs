//! The checks across a set of flows: every `call_flow` names a flow of the set and matches its
//! interface (its `inputs` and `outputs`). They need every flow of the set, so they run after
//! each flow compiled on its own ([`load_files`](super::load_files)); like the checks of one
//! flow, they do no I/O and report every problem at once, at the caller's JSON pointers.

use crate::diagnostics::{Diagnostic, nearest, pointer_push};
use crate::ids::VarName;
use crate::step::{CompiledFlow, FlowCall};

/// Every problem of the calls of each flow in `flows`, in the same order as `flows`.
/// `broken` are the ids of the set's flows that do not load (their own problems are reported
/// with them): a call to one is reported as that, not as a call to a flow that is missing.
pub fn check_calls(flows: &[&CompiledFlow], broken: &[&str]) -> Vec<Vec<Diagnostic>> {
    flows.iter().map(|caller| check_these_calls(&caller.calls, flows, broken)).collect()
}

/// Every problem of `calls` (of one flow, loaded or not) against the flows of the set.
pub fn check_these_calls(calls: &[FlowCall], flows: &[&CompiledFlow], broken: &[&str]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for call in calls {
        if broken.contains(&call.flow.as_str()) {
            diags.push(
                Diagnostic::error(
                    "called-flow-invalid",
                    call.pointer.clone(),
                    format!(
                        "step `{}` calls flow `{}`, which does not load (its problems are reported with its file)",
                        call.step, call.flow
                    ),
                )
                .with_hint("fix the called flow first; this call is checked against it once it loads"),
            );
            continue;
        }
        let Some(callee) = flows.iter().find(|f| f.id == call.flow) else {
            let ids = flows.iter().map(|f| f.id.as_str()).chain(broken.iter().copied());
            let mut d = Diagnostic::error(
                "unknown-flow",
                call.pointer.clone(),
                format!("step `{}` calls flow `{}`, which is not in this set of flows", call.step, call.flow),
            );
            d = match nearest(call.flow.as_str(), ids) {
                Some(near) => d.with_hint(format!("did you mean `{near}`?")),
                None => d.with_hint(
                    "calls are checked against the flows loaded together: put the called flow's file in the same folder and validate the folder (`tern validate FOLDER`)",
                ),
            };
            diags.push(d);
            continue;
        };
        let started_by = match callee.trigger {
            Some(crate::flow::Trigger::Error) => Some("a failed run (it is the error flow, reading `{{error.*}}`)"),
            Some(crate::flow::Trigger::IntegrationEvent { .. }) => {
                Some("an integration event (it reads `{{event.*}}`)")
            }
            _ => None,
        };
        if let Some(by) = started_by {
            diags.push(
                Diagnostic::error(
                    "uncallable-flow",
                    call.pointer.clone(),
                    format!("flow `{}` is started by {by}; a step cannot call it", callee.id),
                )
                .with_hint("move the steps both need into a flow without that trigger, and call that one from both"),
            );
            continue;
        }
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
            let at = pointer_push(&format!("{}/inputs", call.step_pointer), extra.as_str());
            diags.push(undeclared("input", at, extra, callee));
        }
        for (mine, theirs) in call.outputs.iter().filter(|(_, t)| !callee.outputs.contains(t)) {
            let at = pointer_push(&format!("{}/outputs", call.step_pointer), mine.as_str());
            diags.push(undeclared("output", at, theirs, callee));
        }
    }
    diags
}

/// A call names an input (`kind` "input") or output ("output") that `callee` does not declare:
/// the diagnostic at `at`, with the declared names and the nearest one.
fn undeclared(kind: &str, at: String, name: &VarName, callee: &CompiledFlow) -> Diagnostic {
    let names = if kind == "input" { &callee.inputs } else { &callee.outputs };
    let list: Vec<&str> = names.iter().map(VarName::as_str).collect();
    let shown = if list.is_empty() { "none".to_string() } else { list.join(", ") };
    let code = if kind == "input" { "unknown-input" } else { "unknown-output" };
    let d =
        Diagnostic::error(code, at, format!("flow `{}` has no {kind} `{name}`; its {kind}s are: {shown}", callee.id));
    match nearest(name.as_str(), list.into_iter()) {
        Some(near) => d.with_hint(format!("did you mean `{near}`?")),
        None => d.with_hint(format!("declare it in flow `{}`'s \"{kind}s\"", callee.id)),
    }
}
