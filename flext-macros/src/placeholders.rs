//! No message names a placeholder: every error the macros write names the user's own
//! types (the aggregate, the event, `String`), never `_`, `MyEvent` or a `str` the user
//! did not write. Two nets: wrong definitions of every family run through parse and
//! check, their messages read; and every string the macro sources hold, read for a
//! `My...` stand-in, so that one put back in a message no case reaches still fails.

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::Ctxt;
use crate::common::driver::Family;
use crate::common::kind::Kind;

/// What in `message` stands in for a name the user wrote, if anything.
fn placeholder(message: &str) -> Option<String> {
    for bare in ["`_`", "impl _", "<_>", "`&_`", "a `str`"] {
        if message.contains(bare) {
            return Some(bare.to_owned());
        }
    }
    stand_in(message)
}

/// A `MyThing` in `text`: `My` followed by an upper-case letter, at the start of a word.
fn stand_in(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(2)).find_map(|i| {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        (starts_word && &bytes[i..i + 2] == b"My" && bytes[i + 2].is_ascii_uppercase()).then(|| {
            let end = (i..bytes.len())
                .find(|&j| !bytes[j].is_ascii_alphanumeric())
                .unwrap_or(bytes.len());
            text[i..end].to_owned()
        })
    })
}

/// The messages `F` gives for `item` under `args`.
fn messages<F: Family>(config: F::Config, args: TokenStream, item: TokenStream) -> Vec<String> {
    let cx = Ctxt::new();
    let item: F::Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => panic!("the case does not parse: {e}"),
    };
    let mut model = F::parse(&cx, config, args, item);
    model.check(&cx);
    match cx.check() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// Every wrong definition below, with the messages it gives.
fn corpus() -> Vec<(&'static str, Vec<String>)> {
    use crate::aggregate::{Behaviour, Root};
    use crate::domain_service::{Mode, Service};
    use crate::handler::Handler;
    use crate::message::MessageDef;
    use crate::projection::ProjectionDef;
    use crate::saga::Saga;
    use crate::workflow::WorkflowDef;
    vec![
        (
            "aggregate without an id",
            messages::<Root>(
                (),
                quote!(),
                quote!(
                    struct Account {
                        balance: u64,
                    }
                ),
            ),
        ),
        (
            "apply shapes",
            messages::<Behaviour>(
                (),
                quote!(),
                quote! {
                    impl Account {
                        #[apply] fn none(&mut self) {}
                        #[apply] fn by_value(&self, event: Deposited) -> Result<()> { Ok(()) }
                        #[apply] fn no_self(event: &Deposited) {}
                        #[command_handler] fn decide(&self) -> Result<Events<Self>> { todo!() }
                        #[command_handler] fn assoc() -> Result<Events<Self>> { todo!() }
                        #[business_rule] fn rule(&self) -> RuleResult { Ok(()) }
                        #[business_rule] fn rule_by_value(&self, c: Deposit, d: u8) -> RuleResult { Ok(()) }
                    }
                },
            ),
        ),
        (
            "projection shapes",
            messages::<ProjectionDef>(
                (),
                quote!(),
                quote! {
                    impl Balances {
                        #[apply] fn none(&self) -> Result<()> { Ok(()) }
                        #[apply] fn first(&mut self, e: Deposited) -> Result<()> { Ok(()) }
                        #[apply] fn no_result(&self, uow: &SqliteUnitOfWork, e: &Deposited) {}
                    }
                },
            ),
        ),
        (
            "projection applying nothing",
            messages::<ProjectionDef>((), quote!(), quote!(impl Balances {})),
        ),
        (
            "projection on a trait impl",
            messages::<ProjectionDef>((), quote!(), quote!(impl SqliteProjection for Balances {})),
        ),
        (
            "saga on a trait impl",
            messages::<Saga>(
                (),
                quote!(),
                quote! {
                    impl Saga for Trip { #[saga_step] fn book(&self) -> Result<u8> { Ok(1) } }
                },
            ),
        ),
        (
            "workflow on a trait impl",
            messages::<WorkflowDef>(
                (),
                quote!(),
                quote! {
                    impl Workflow for Import { #[workflow_step] async fn a(&self) -> Result<u8> { Ok(1) } }
                },
            ),
        ),
        (
            "workflow parameters",
            messages::<WorkflowDef>(
                (),
                quote!(),
                quote! {
                    impl Import {
                        #[workflow_step] async fn count(&self) -> Result<u32> { Ok(1) }
                        #[workflow_step] async fn other(&self) -> Result<u32> { Ok(2) }
                        #[workflow_step(depends_on = [count])] async fn greet(&self, name: &str) -> Result<()> { Ok(()) }
                        #[workflow_step(depends_on = [count])] async fn label(&self, name: &String) -> Result<()> { Ok(()) }
                        #[workflow_step(depends_on = [count])] async fn rows(&self, rows: &[u8]) -> Result<()> { Ok(()) }
                        #[workflow_step(depends_on = [count, other])] async fn both(&self, n: &u32) -> Result<()> { Ok(()) }
                    }
                },
            ),
        ),
        (
            "service on a trait impl",
            messages::<Service>(
                Mode::Service,
                quote!(),
                quote! {
                    impl Run for Signup { #[step] fn a(&self) -> Result<u8> { Ok(1) } }
                },
            ),
        ),
        (
            "handler without a message",
            messages::<Handler>(
                Kind::Command,
                quote!(),
                quote! {
                    fn create_user(ctx: &Context) -> Result<u64> { Ok(1) }
                },
            ),
        ),
        (
            "command enum variant without an id",
            messages::<MessageDef>(
                Kind::Command,
                quote!(output = u64),
                quote! {
                    enum AccountCommand { Open { #[aggregate_id] id: String }, Close { reason: String } }
                },
            ),
        ),
    ]
}

#[test]
fn no_message_names_a_placeholder() {
    for (case, messages) in corpus() {
        assert!(!messages.is_empty(), "{case}: the case no longer fails");
        for m in &messages {
            assert!(
                placeholder(m).is_none(),
                "{case}: {:?} in {m}",
                placeholder(m)
            );
        }
    }
}

#[test]
fn the_real_names_are_given() {
    let all: Vec<String> = corpus().into_iter().flat_map(|(_, m)| m).collect();
    let said = |needle: &str| all.iter().any(|m| m.contains(needle));
    assert!(said("`fn by_value(&mut self, event: &Deposited)`"));
    assert!(said("event: &Deposited) -> Result<()>`"));
    assert!(said("produces a `String`, and it takes a `&str`"));
    assert!(said("produces a `String`, and it takes a `&String`"));
    assert!(said("produces a `Vec<u8>`"));
    assert!(said("`count` and `other` both produce a `u32`"));
    assert!(said("`impl Balances {"));
    assert!(said("`impl Trip {"));
}

#[test]
fn no_macro_source_holds_a_stand_in_name() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 20, "the sources were not found: {files:?}");
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name == "tests.rs" || name == "placeholders.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // The library part: test modules may name anything.
        let library = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in library.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || !code.contains('"') {
                continue;
            }
            if let Some(found) = stand_in(code) {
                panic!(
                    "{}:{}: `{found}` in a message: name the user's type",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

#[test]
fn the_nets_catch_a_placeholder() {
    assert_eq!(
        placeholder("add it to `#[aggregate] impl _`").as_deref(),
        Some("impl _")
    );
    assert_eq!(
        placeholder("take `event: &MyEvent`").as_deref(),
        Some("MyEvent")
    );
    assert_eq!(
        placeholder("a step that produces a `str`").as_deref(),
        Some("a `str`")
    );
    assert_eq!(placeholder("`fn f(&mut self, event: &Deposited)`"), None);
    assert_eq!(stand_in("Mystery and MyriadX"), None);
}
