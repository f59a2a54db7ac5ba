//! How many intervals hold one instant at most: what a concurrency limit is checked by,
//! from the effects' own start and end times.

/// The most of `intervals` (start, end) that hold one instant; a start and an end at
/// one instant count as both holding it.
pub fn most_at_once(intervals: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort_by_key(|&(at, delta)| (at, -delta));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}
