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

/// Each step's successors (its `next` or the following step, `on_error`, the targets in its
/// own fields); `steps.len()` stands for "the run ends".
fn successors(steps: &[CompiledStep], facts: &Facts) -> Vec<Vec<usize>> {
    let n = steps.len();
    (0..n)
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
        .collect()
}

/// Every step reachable from `start` along `edges` without passing through `avoid` (which is
/// not included); `start` itself is included unless it is `avoid`.
fn reach(start: &[usize], edges: &[Vec<usize>], avoid: usize) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack: Vec<usize> = start.to_vec();
    while let Some(i) = stack.pop() {
        if i == avoid || i >= edges.len() || !seen.insert(i) {
            continue;
        }
        stack.extend(edges[i].iter().copied());
    }
    seen
}

/// Finds the body of each repeating step (`for_each`): the steps on a way from its `body`
/// back to it. Reports a body that never comes back (`body-never-returns`), and marks each
/// step with the loops whose body holds it ([`CompiledStep::loops`]) and the innermost one that
/// catches its failures ([`CompiledStep::caught_by`]).
pub(crate) fn loop_bodies(steps: &mut [CompiledStep], facts: &Facts, diags: &mut Vec<Diagnostic>) {
    let n = steps.len();
    let succ = successors(steps, facts);
    let mut pred = vec![Vec::new(); n];
    for (i, out) in succ.iter().enumerate() {
        for &j in out.iter().filter(|&&j| j < n) {
            pred[j].push(i);
        }
    }
    // Each loop's body, first as found; then without the loops that enclose it.
    let mut bodies: Vec<(usize, HashSet<usize>)> = Vec::new();
    for (l, step) in steps.iter().enumerate() {
        let Some(repeat) = step.behavior.repeats else { continue };
        let forward = reach(&[repeat.body], &succ, l);
        let backward = reach(&pred[l], &pred, l);
        if !backward.contains(&repeat.body) {
            let field =
                step.jumps.iter().find(|j| j.jump == Jump::Step(repeat.body)).map_or("", |j| j.pointer.as_str());
            let first = &steps[repeat.body].id;
            diags.push(
                Diagnostic::error(
                    "body-never-returns",
                    format!("/steps/{l}{field}"),
                    format!(
                        "the body of `{}` starts at `{first}`, but no way from there leads back to `{}`",
                        step.id, step.id
                    ),
                )
                .with_hint(format!("end the body with a step whose `next` is `{}`", step.id)),
            );
            continue;
        }
        let body: HashSet<usize> = forward.intersection(&backward).copied().collect();
        bodies.push((l, body));
    }
    // A loop inside another one can reach the outer loop (a body step's `on_error` going to
    // it), and then each is in the other's body. The outer one is the one every way from the
    // flow's first step to the inner one passes (it dominates it): it is taken out of the inner
    // loop's body, so that coming from the outer loop starts the inner one anew.
    let snapshot: Vec<(usize, HashSet<usize>)> = bodies.clone();
    for (l, body) in &mut bodies {
        for (m, other) in &snapshot {
            let mutual = m != l && body.contains(m) && other.contains(l);
            if mutual && !reach(&[0], &succ, *m).contains(l) {
                body.remove(m);
            }
        }
    }
    for (l, body) in &bodies {
        let (l, step) = (*l, &steps[*l]);
        let exit = match step.next {
            Some(Jump::Step(k)) => Some(k),
            Some(Jump::End) => None,
            None => Some(l + 1).filter(|&k| k < n),
        };
        if let Some(k) = exit.filter(|k| *k == l || body.contains(k)) {
            let at = if step.next.is_some() { format!("/steps/{l}/next") } else { format!("/steps/{l}") };
            diags.push(
                Diagnostic::error(
                    "loop-exit-in-body",
                    at,
                    format!(
                        "after its last item `{}` would go on to `{}`, which is the loop itself or a step of its body, so the loop would start over",
                        step.id, steps[k].id
                    ),
                )
                .with_hint(format!("give `{}` a `next` outside its body (a step after the loop, or `end`)", step.id)),
            );
        }
    }
    // For each step, the loops whose body holds it: (size of the body, loop).
    let mut within: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for (l, body) in &bodies {
        for &i in body {
            within[i].push((body.len(), *l));
        }
    }
    let catches = |l: usize| steps[l].behavior.repeats.is_some_and(|r| r.catches_failures);
    let found: Vec<(Vec<usize>, Option<usize>)> = within
        .into_iter()
        .map(|mut loops| {
            loops.sort_unstable();
            let loops: Vec<usize> = loops.into_iter().map(|(_, l)| l).collect();
            let caught_by = loops.iter().copied().find(|&l| catches(l));
            (loops, caught_by)
        })
        .collect();
    for (step, (loops, caught_by)) in steps.iter_mut().zip(found) {
        step.loops = loops;
        step.caught_by = caught_by;
    }
}

/// Reports unreachable steps and loops without a pausing step. `roots` are steps reachable
/// without an edge (the flow-level `on_error` step).
pub(crate) fn check_graph(steps: &[CompiledStep], facts: &Facts, roots: &[usize], diags: &mut Vec<Diagnostic>) {
    let n = steps.len();
    let succ = successors(steps, facts);

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
        // A loop through a pausing step waits for the user; one through a repeating step
        // (`for_each`) runs a bounded number of times.
        if !is_cycle || scc.iter().any(|&i| steps[i].behavior.pauses || steps[i].behavior.repeats.is_some()) {
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
