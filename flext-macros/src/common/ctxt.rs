//! The error context of one macro invocation (serde_derive's `Ctxt`): every parse and
//! check error is pushed here and all of them are reported together. Dropping a context
//! whose errors were never taken is a bug in the macro, caught by a panic in debug
//! builds of the macro crate.

use std::cell::RefCell;

/// Collects `syn::Error`s; [`Ctxt::check`] combines them.
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Ctxt {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records one error.
    pub fn push(&self, error: syn::Error) {
        if let Some(errors) = self.errors.borrow_mut().as_mut() {
            errors.push(error);
        }
    }

    /// Whether any error has been recorded so far.
    pub fn has_errors(&self) -> bool {
        self.errors.borrow().as_ref().is_some_and(|e| !e.is_empty())
    }

    /// How many errors have been recorded so far (used by the unit tests).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.errors.borrow().as_ref().map_or(0, Vec::len)
    }

    /// Takes the errors of `signature`, a context that checked one signature, as one
    /// error at the first one's token, naming every fix: the mistakes in one signature
    /// cost the user one error, which says all that is wrong with it.
    pub fn push_as_one(&self, signature: Ctxt) {
        let Err(errors) = signature.check() else {
            return;
        };
        let mut all: Vec<syn::Error> = errors.into_iter().collect();
        if all.len() == 1 {
            self.push(all.remove(0));
            return;
        }
        let messages: Vec<String> = all.iter().map(ToString::to_string).collect();
        // Spanned over the first error's whole range: its `compile_error!` tokens start
        // and end where it does.
        self.push(syn::Error::new_spanned(
            all[0].to_compile_error(),
            join_fixes(&messages),
        ));
    }

    /// Ends the context: `Err` with every error combined, if any was recorded.
    pub fn check(self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .borrow_mut()
            .take()
            .unwrap_or_default()
            .into_iter();
        match errors.next() {
            None => Ok(()),
            Some(mut first) => {
                first.extend(errors);
                Err(first)
            }
        }
    }
}

/// One sentence from the messages of one signature: the subject they share ("an
/// `#[apply]` method ") said once, then "it": "an `#[apply]` method evolves the state:
/// ...; it cannot fail ...; and it takes its event by reference: ...".
fn join_fixes(messages: &[String]) -> String {
    // The same fix for a second parameter is said once.
    let mut distinct: Vec<&str> = Vec::new();
    for m in messages {
        if !distinct.contains(&m.as_str()) {
            distinct.push(m);
        }
    }
    let first = distinct.first().copied().unwrap_or("");
    let mut shared = first.len();
    for m in &distinct[1..] {
        shared = shared.min(
            first
                .chars()
                .zip(m.chars())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a.len_utf8())
                .sum(),
        );
    }
    // The subject only: up to its last " method " ("a projection's `#[apply]` method "),
    // so that "it" never swallows a verb the messages happen to share.
    let shared = first[..shared]
        .rfind(" method ")
        .map_or(0, |i| i + " method ".len());
    let mut out = first.to_owned();
    for (i, m) in distinct.iter().enumerate().skip(1) {
        let mut rest = if shared > 0 {
            format!("it {}", &m[shared..])
        } else {
            (*m).to_owned()
        };
        // A signature already spelled out is not spelled out again.
        if let Some(at) = rest.find(": `fn ")
            && out.contains(&rest[at + 2..])
        {
            rest.truncate(at);
        }
        out.push_str(if i + 1 == distinct.len() {
            "; and "
        } else {
            "; "
        });
        out.push_str(&rest);
    }
    out
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        // invariant: every driver path calls `check`; a context dropped with its errors
        // unread would silently accept a wrong definition.
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            debug_assert!(false, "flext-macros: Ctxt dropped without check()");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::join_fixes;

    #[test]
    fn a_signature_is_spelled_out_once() {
        let usage = "`fn f(&self, uow: &SqliteUnitOfWork, event: &Deposited) -> Result<()>`";
        let joined = join_fixes(&[
            format!("a projection's `#[apply]` method takes `&self`: {usage}"),
            format!("a projection's `#[apply]` method takes the unit of work first: {usage}"),
        ]);
        assert_eq!(
            joined,
            format!(
                "a projection's `#[apply]` method takes `&self`: {usage}; and it takes the unit of work first"
            )
        );
    }

    #[test]
    fn the_shared_subject_is_said_once() {
        let joined = join_fixes(&[
            "an `#[apply]` method evolves the state: take `&mut self`".into(),
            "an `#[apply]` method returns nothing".into(),
            "an `#[apply]` method takes its event by reference".into(),
        ]);
        assert_eq!(
            joined,
            "an `#[apply]` method evolves the state: take `&mut self`; it returns nothing; and it takes its event by reference"
        );
        assert_eq!(
            join_fixes(&["take x".into(), "remove y".into()]),
            "take x; and remove y"
        );
    }
}
