//! The one choice every backend makes inside its dispatch write: which waiting items
//! the queue's limits let start.

use std::collections::HashMap;

use uuid::Uuid;

use super::DequeueRequest;

/// A waiting item as [`pick`] sees it.
pub(crate) struct Candidate<'a> {
    pub(crate) saga_id: Uuid,
    pub(crate) partition: &'a str,
}

/// Which `candidates` (in priority order) a pass may start: as many as the limit leaves
/// free of `running`, no more than the rate limit leaves of `started_in_window`, and per
/// partition key no more than its limit leaves of `by_partition`. Every backend calls
/// it inside the write that claims them.
pub(crate) fn pick(
    request: &DequeueRequest,
    candidates: &[Candidate<'_>],
    running: u64,
    by_partition: &HashMap<String, u64>,
    started_in_window: u64,
) -> Vec<Uuid> {
    let mut free = request.max as u64;
    if let Some(limit) = request.limit {
        free = free.min(u64::from(limit).saturating_sub(running));
    }
    if let Some(rate) = request.rate {
        free = free.min(u64::from(rate.starts).saturating_sub(started_in_window));
    }
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut chosen = Vec::new();
    for c in candidates {
        if chosen.len() as u64 >= free {
            break;
        }
        if let Some(limit) = request.partition_limit
            && !c.partition.is_empty()
        {
            let n = counts
                .entry(c.partition)
                .or_insert_with(|| by_partition.get(c.partition).copied().unwrap_or(0));
            if *n >= u64::from(limit) {
                continue;
            }
            *n += 1;
        }
        chosen.push(c.saga_id);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::{Lease, Rate};

    fn request(
        limit: Option<u32>,
        partition_limit: Option<u32>,
        rate: Option<Rate>,
    ) -> DequeueRequest {
        DequeueRequest {
            queue: "q".into(),
            limit,
            partition_limit,
            rate,
            max: 100,
            lease: Lease {
                owner: "r/1".into(),
                duration_ms: 1000,
            },
            now_ms: 0,
        }
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect()
    }

    #[test]
    fn the_limit_leaves_what_runs_and_the_rate_what_started() {
        let ids = ids(6);
        let c: Vec<Candidate<'_>> = ids
            .iter()
            .map(|&saga_id| Candidate {
                saga_id,
                partition: "",
            })
            .collect();
        let none = HashMap::new();
        assert_eq!(
            pick(&request(Some(3), None, None), &c, 1, &none, 0),
            ids[..2]
        );
        assert!(pick(&request(Some(3), None, None), &c, 5, &none, 0).is_empty());
        let rate = Some(Rate {
            starts: 4,
            per_ms: 1000,
        });
        assert_eq!(pick(&request(None, None, rate), &c, 0, &none, 3), ids[..1]);
        assert_eq!(pick(&request(None, None, None), &c, 0, &none, 0), ids);
    }

    #[test]
    fn a_partition_at_its_limit_is_skipped_and_the_next_ones_start() {
        let ids = ids(4);
        let parts = ["a", "a", "b", ""];
        let c: Vec<Candidate<'_>> = ids
            .iter()
            .zip(parts)
            .map(|(&saga_id, partition)| Candidate { saga_id, partition })
            .collect();
        let running = HashMap::from([("b".to_owned(), 1)]);
        // One per key: the first `a`, not the second; `b` already runs one; no key is free.
        assert_eq!(
            pick(&request(None, Some(1), None), &c, 1, &running, 0),
            [ids[0], ids[3]]
        );
    }
}
