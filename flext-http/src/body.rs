//! A body's shape before it is decoded: how deep it nests, and integers written with a
//! fraction.

/// How deep `body`'s arrays and objects nest, outside strings, without decoding it.
#[cfg(test)]
pub(crate) fn depth(body: &[u8]) -> usize {
    scan(body).0
}

/// How deep `body`'s arrays and objects nest, outside strings, and whether a number has
/// a fraction or an exponent; without decoding it.
pub(crate) fn scan(body: &[u8]) -> (usize, bool) {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    let mut floats = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'.' | b'e' | b'E' => floats = true,
            _ => {}
        }
    }
    (deepest, floats)
}

/// `body` with every number outside strings that has a fraction or an exponent but an
/// integral value exactly representable (below 2^53) written as an integer (`2.0` and
/// `2e3` as `2` and `2000`): JSON Schema counts them as integers, and so does a field of
/// an integer type here. `None` when nothing changes or the body is not UTF-8.
pub(crate) fn integral_numbers(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut last, mut changed) = (0, 0, false);
    let (mut in_string, mut escaped) = (false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let token = &text[start..i];
            if token.contains(['.', 'e', 'E'])
                && let Ok(value) = token.parse::<f64>()
                && value.fract() == 0.0
                && value.abs() < 9_007_199_254_740_992.0
                // `-0.0` keeps its sign for a float field.
                && !(value == 0.0 && token.starts_with('-'))
            {
                out.push_str(&text[last..start]);
                // Exact: an integral f64 below 2^53 converts to i64 without loss.
                #[allow(clippy::cast_possible_truncation)]
                out.push_str(&(value as i64).to_string());
                last = i;
                changed = true;
            }
            continue;
        }
        i += 1;
    }
    changed.then(|| {
        out.push_str(&text[last..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::{depth, integral_numbers};

    #[test]
    fn integral_numbers_become_integers_and_nothing_else_changes() {
        assert_eq!(
            integral_numbers(br#"{"a": 116100.0, "b": 2e3, "c": -1.0E0, "d": 2.5, "e": "3.0"}"#)
                .as_deref(),
            Some(r#"{"a": 116100, "b": 2000, "c": -1, "d": 2.5, "e": "3.0"}"#)
        );
        assert_eq!(integral_numbers(br#"{"d": 2.5, "s": "1.0\"2.0"}"#), None);
        assert_eq!(integral_numbers(br#"{"big": 1e300}"#), None);
        assert_eq!(integral_numbers(br#"{"x": -0.0}"#), None);
    }

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(depth(br#"{"a": 1}"#), 1);
        assert_eq!(depth(br#"{"a": [[1], {"b": []}]}"#), 4);
        assert_eq!(depth(br#"{"a": "[[[[\"]]]]"}"#), 1);
        assert_eq!(depth(b""), 0);
    }
}
