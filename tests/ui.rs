//! Compile-time guarantees: each `tests/ui/<macro>/fail/*.rs` must fail to compile with
//! exactly the `.stderr` beside it; each `pass/*.rs` must compile and run.
//!
//! After a deliberate change of a message: `TRYBUILD=overwrite cargo test --test ui`,
//! then read the `.stderr` diff like code.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/fail/*.rs");
    t.pass("tests/ui/*/pass/*.rs");
    // What needs the `sqlite` feature (projections).
    #[cfg(feature = "sqlite")]
    t.compile_fail("tests/ui_sqlite/*/fail/*.rs");
}
