//! "Did you mean" suggestions for names users type (message names in JSON dispatch).

/// The candidate closest to `name`, if one is close enough to be a likely typo
/// (Jaro-Winkler similarity above 0.8).
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
