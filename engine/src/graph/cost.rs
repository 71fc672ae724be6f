//! How much work `layout-rs` would do for a graph, measured before asking it.
//!
//! `layout-rs` 0.1 checks reachability by walking every path (its depth-first search forgets
//! visited nodes on the way back), after each edge it adds. Its work grows with the number of
//! paths through the graph, which doubles with each diamond: a few dozen steps with branches
//! that meet again can keep it busy for minutes. [`paths`] follows its construction (an edge
//! is turned around when its target already reaches its source) and counts the paths of the
//! result, so a picture too costly to lay out is refused at once instead.

/// The work `layout-rs` would do for a graph of `n` nodes and these edges: edges² × [`paths`]
/// (its check after each edge walks every path from each edge's target), saturating.
pub(super) fn work(n: usize, edges: &[(usize, usize)]) -> u64 {
    let e = u64::try_from(edges.len()).unwrap_or(u64::MAX);
    e.saturating_mul(e).saturating_mul(paths(n, edges))
}

/// The most paths starting at any one node once the edges are turned into a DAG the way
/// `layout-rs` does it, saturating at `u64::MAX`. `edges` are pairs of node indexes below `n`.
fn paths(n: usize, edges: &[(usize, usize)]) -> u64 {
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        if a == b || a >= n || b >= n {
            continue;
        }
        if reaches(&succ, b, a) {
            succ[b].push(a);
        } else {
            succ[a].push(b);
        }
    }
    // Paths from each node, in reverse topological order (the graph is a DAG now).
    let mut count: Vec<Option<u64>> = vec![None; n];
    for start in 0..n {
        let mut stack = vec![(start, false)];
        while let Some((v, done)) = stack.pop() {
            if done {
                let total = succ[v].iter().fold(1u64, |acc, w| acc.saturating_add(count[*w].unwrap_or(0)));
                count[v] = Some(total);
            } else if count[v].is_none() {
                stack.push((v, true));
                stack.extend(succ[v].iter().filter(|w| count[**w].is_none()).map(|w| (*w, false)));
            }
        }
    }
    count.into_iter().flatten().max().unwrap_or(0)
}

/// Whether `to` can be reached from `from`.
fn reaches(succ: &[Vec<usize>], from: usize, to: usize) -> bool {
    let mut seen = vec![false; succ.len()];
    let mut stack = vec![from];
    while let Some(v) = stack.pop() {
        if v == to {
            return true;
        }
        if !std::mem::replace(&mut seen[v], true) {
            stack.extend(succ[v].iter().copied());
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{paths, work};

    #[test]
    fn paths_double_with_each_diamond_and_back_edges_are_turned() {
        // a chain of 3: paths from the first node are [0], [0,1], [0,1,2].
        assert_eq!(paths(3, &[(0, 1), (1, 2)]), 3);
        // 0 → 1 → 2 → 0: the back edge is turned around, 0 → 1 → 2 and 0 → 2.
        assert_eq!(paths(3, &[(0, 1), (1, 2), (2, 0)]), 4);
        // k diamonds in a row: 2^k ways through.
        let k = 40;
        let mut edges = Vec::new();
        for d in 0..k {
            let (top, left, right, bottom) = (3 * d, 3 * d + 1, 3 * d + 2, 3 * d + 3);
            edges.extend([(top, left), (top, right), (left, bottom), (right, bottom)]);
        }
        assert!(paths(3 * k + 1, &edges) > 1 << k);
        assert_eq!(paths(2, &[(0, 0), (0, 1)]), 2, "self-loops do not count");
        assert_eq!(work(3, &[(0, 1), (1, 2)]), 4 * 3);
        assert!(work(3 * k + 1, &edges) > 1 << 50);
    }
}
