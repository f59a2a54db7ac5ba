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

impl Drop for Ctxt {
    fn drop(&mut self) {
        // invariant: every driver path calls `check`; a context dropped with its errors
        // unread would silently accept a wrong definition.
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            debug_assert!(false, "flext-macros: Ctxt dropped without check()");
        }
    }
}
