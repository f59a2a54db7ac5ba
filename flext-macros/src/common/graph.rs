//! The one topological order the macros compute (rules after rules, workflow steps after
//! their dependencies): Kahn's algorithm, stable, and on a cycle the cycle itself as a
//! path, for an error that names it.

/// A cycle found while ordering: the nodes ordered before it was found, and the cycle as
/// a path in which each node waits for the next and the last waits for the first.
pub struct Cycle {
    pub ordered: Vec<usize>,
    pub path: Vec<usize>,
}

/// The nodes `0..waits_for.len()` in an order where each comes after every node it waits
/// for; among the nodes free to go, the one first in `base` goes first (so that an
/// order with no constraints is `base` itself).
pub fn topological(base: &[usize], waits_for: &[Vec<usize>]) -> Result<Vec<usize>, Cycle> {
    let n = waits_for.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = base
            .iter()
            .copied()
            .find(|&i| !done[i] && waits_for[i].iter().all(|&p| done[p]));
        match ready {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                return Err(Cycle {
                    path: cycle(waits_for, &done),
                    ordered: order,
                });
            }
        }
    }
    Ok(order)
}

/// Every node not done waits on another one not done: walking what they wait for from
/// any of them revisits a node, and the walk from there on is the cycle.
fn cycle(waits_for: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let Some(start) = (0..done.len()).find(|&i| !done[i]) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut current = start;
    loop {
        let Some(&next) = waits_for[current].iter().find(|&&p| !done[p]) else {
            return Vec::new();
        };
        if let Some(pos) = path.iter().position(|&r| r == next) {
            return path.split_off(pos);
        }
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::topological;

    #[test]
    fn base_order_is_kept_where_nothing_waits() {
        let order = topological(&[2, 0, 1], &[vec![], vec![], vec![]]).ok();
        assert_eq!(order, Some(vec![2, 0, 1]));
        let order = topological(&[0, 1, 2], &[vec![2], vec![], vec![]]).ok();
        assert_eq!(order, Some(vec![1, 2, 0]));
    }

    #[test]
    fn a_cycle_is_given_as_its_path() {
        // 0 waits for 1, 1 for 2, 2 for 1; 3 is free.
        let Err(cycle) = topological(&[0, 1, 2, 3], &[vec![1], vec![2], vec![1], vec![]]) else {
            panic!("no cycle found");
        };
        assert_eq!(cycle.ordered, [3]);
        assert_eq!(cycle.path, [1, 2]);
        let Err(own) = topological(&[0], &[vec![0]]) else {
            panic!("no cycle found");
        };
        assert_eq!(own.path, [0]);
    }
}
