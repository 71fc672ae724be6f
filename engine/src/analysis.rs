//! Whole-flow checks that need every step: undefined variables, unreachable steps, and loops
//! that never wait for the user. Pure functions over the facts collected while building steps.

use std::collections::{BTreeSet, HashSet};

use crate::diagnostics::{Diagnostic, nearest};
use crate::flow::ERROR_VARIABLE;
use crate::step::{CompiledStep, Facts, Jump};
use crate::template::{RESERVED_ROOTS, Root, VarRef};

/// Fields of the built-in roots whose shape Tern defines (`contact`, `event` and integration
/// metadata carry whatever the channel, the service or the token response sent).
const ROOT_FIELDS: &[(&str, &[&str])] = &[("message", &["text", "id", "metadata"]), ("conversation", &["id"])];

/// Reports placeholders naming variables that nothing sets and misspelled fields of built-in
/// roots (`{{message.txt}}`); returns the secrets used.
pub(crate) fn check_variables(
    facts: &Facts,
    initial: &BTreeSet<&str>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeSet<String> {
    let mut defined: BTreeSet<&str> = initial.clone();
    defined.extend(facts.defines.iter().map(|(_, v)| v.as_str()));
    let mut secrets = BTreeSet::new();
    let mut seen = HashSet::new();
    for (pointer, var) in &facts.uses {
        match &var.root {
            Root::Var(name) if !defined.contains(name.as_str()) => {
                if !seen.insert((pointer.clone(), name.as_str().to_string())) {
                    continue;
                }
                let candidates = defined.iter().copied().chain(RESERVED_ROOTS.iter().copied());
                let hint = match nearest(name.as_str(), candidates) {
                    Some(n) if RESERVED_ROOTS.contains(&n) => {
                        let rest = var.raw.split_once('.').map_or(String::new(), |(_, r)| format!(".{r}"));
                        format!("did you mean `{{{{{n}{rest}}}}}`?")
                    }
                    Some(n) => format!("did you mean `{n}`?"),
                    None if name.as_str() == ERROR_VARIABLE => {
                        "only an error flow has `error`: give the flow \"trigger\": {\"type\": \"error\"}".into()
                    }
                    None => "declare it in the flow's `variables`, or set it with a step (`ask` save_as, `set_variables`, `fetch_variables` variables)".into(),
                };
                diags.push(
                    Diagnostic::error(
                        "undefined-variable",
                        pointer.clone(),
                        format!("`{{{{{var}}}}}` uses variable `{name}`, which no step sets"),
                    )
                    .with_hint(hint),
                );
            }
            Root::Secret(name) => {
                secrets.insert(name.clone());
            }
            Root::Message | Root::Conversation if seen.insert((pointer.clone(), var.raw.clone())) => {
                check_root_field(pointer, var, diags);
            }
            _ => {}
        }
    }
    secrets
}

/// `{{message.txt}}`: a field the root does not have.
fn check_root_field(pointer: &str, var: &VarRef, diags: &mut Vec<Diagnostic>) {
    let root = if var.root == Root::Message { "message" } else { "conversation" };
    let Some((_, fields)) = ROOT_FIELDS.iter().find(|(r, _)| *r == root) else { return };
    let Some(field) = var.path.first() else { return };
    if fields.contains(&field.as_str()) {
        return;
    }
    let known = fields.iter().map(|f| format!("`{root}.{f}`")).collect::<Vec<_>>().join(", ");
    let hint = match nearest(field, fields.iter().copied()) {
        Some(n) => format!("did you mean `{{{{{root}.{n}}}}}`? Known: {known}"),
        None => format!("known: {known}"),
    };
    diags.push(
        Diagnostic::error(
            "unknown-placeholder",
            pointer,
            format!("`{{{{{var}}}}}`: the {root} has no field `{field}`"),
        )
        .with_hint(hint),
    );
}

/// Reports unreachable steps and loops without a pausing step. `roots` are steps reachable
/// without an edge (the flow-level `on_error` step).
pub(crate) fn check_graph(steps: &[CompiledStep], facts: &Facts, roots: &[usize], diags: &mut Vec<Diagnostic>) {
    let n = steps.len();
    // Successors; `n` stands for "the run ends".
    let succ: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let mut out: Vec<usize> = facts.edges[i]
                .iter()
                .map(|j| match j {
                    Jump::Step(k) => *k,
                    Jump::End => n,
                })
                .collect();
            if !steps[i].behavior.terminal && steps[i].next.is_none() {
                out.push(i + 1);
            }
            if steps[i].behavior.terminal {
                out.push(n);
            }
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect();

    let mut reachable = vec![false; n + 1];
    let mut stack = vec![0];
    stack.extend_from_slice(roots);
    while let Some(i) = stack.pop() {
        if i > n || reachable[i] {
            continue;
        }
        reachable[i] = true;
        if i < n {
            stack.extend(succ[i].iter().copied());
        }
    }
    for (i, s) in steps.iter().enumerate() {
        if !reachable[i] {
            diags.push(
                Diagnostic::error("unreachable-step", format!("/steps/{i}"), format!("step `{}` can never run", s.id))
                    .with_hint("no step jumps to it and the step before it never continues to it; remove it or add a `next` that leads here"),
            );
        }
    }

    for scc in strongly_connected(&succ, n) {
        let is_cycle = scc.len() > 1 || succ[scc[0]].contains(&scc[0]);
        if !is_cycle || scc.iter().any(|&i| steps[i].behavior.pauses) {
            continue;
        }
        let members: HashSet<usize> = scc.iter().copied().collect();
        let has_exit = scc.iter().any(|&i| succ[i].iter().any(|j| !members.contains(j)));
        let names = scc.iter().map(|&i| format!("`{}`", steps[i].id)).collect::<Vec<_>>().join(" → ");
        let first = *scc.iter().min().unwrap_or(&0);
        if has_exit {
            diags.push(
                Diagnostic::warning(
                    "loop-without-pause",
                    format!("/steps/{first}"),
                    format!("steps {names} form a loop that never waits for the user"),
                )
                .with_hint("make sure a branch leaves the loop; a run is stopped after its step budget (1000 steps)"),
            );
        } else {
            diags.push(
                Diagnostic::error(
                    "endless-loop",
                    format!("/steps/{first}"),
                    format!("steps {names} loop forever without pausing"),
                )
                .with_hint("add an `ask` step inside the loop, or a `branch` that leaves it"),
            );
        }
    }
}

/// Tarjan's algorithm, iterative; node `n` (the end) is ignored. Returns the components.
fn strongly_connected(succ: &[Vec<usize>], n: usize) -> Vec<Vec<usize>> {
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut counter = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if *pos == 0 && index[v] == usize::MAX {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            let edges: Vec<usize> = succ[v].iter().copied().filter(|&w| w < n).collect();
            if *pos < edges.len() {
                let w = edges[*pos];
                *pos += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort_unstable();
                out.push(comp);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_components() {
        // 0 → 1 → 2 → 1, 2 → 3(end)
        let succ = vec![vec![1], vec![2], vec![1, 3]];
        let mut comps = strongly_connected(&succ, 3);
        comps.sort();
        assert_eq!(comps, vec![vec![0], vec![1, 2]]);
    }
}
