//! The one validator of the method that reverts a step: a domain service's `undo =`, a
//! saga's or a workflow's `compensate =` (the compensating-transaction pattern). Each
//! family adds its own rules on the other parameters; what they share is here: the
//! method exists (else the signature to define, and the nearest name), takes `&self`,
//! receives the step's output by reference, and returns `Result<()>`.

use quote::ToTokens;

use super::Ctxt;
use super::sig::Method;
use super::util::{error_at, suggestion};

/// How a family names the reverting method.
pub struct Reverter {
    /// The option that names it: `undo` or `compensate`.
    pub option: &'static str,
    /// What it is called in a sentence: `undo` or `compensation`.
    pub noun: &'static str,
    /// What happens when it fails, for the return-type message.
    pub on_failure: &'static str,
    /// `async ` when the family's examples write it async.
    pub asyncness: &'static str,
}

pub const UNDO: Reverter = Reverter {
    option: "undo",
    noun: "undo",
    on_failure: "a failed undo is reported",
    asyncness: "",
};

pub const SAGA_COMPENSATION: Reverter = Reverter {
    option: "compensate",
    noun: "compensation",
    on_failure: "a failed compensation is retried",
    asyncness: "",
};

pub const WORKFLOW_COMPENSATION: Reverter = Reverter {
    option: "compensate",
    noun: "compensation",
    on_failure: "a failed compensation is retried",
    asyncness: "async ",
};

/// The `T` of `step`'s `Result<T>`, as written.
pub fn output_name(step: &Method) -> String {
    step.ok_type.as_ref().map_or_else(
        || "T".to_owned(),
        |t| t.to_token_stream().to_string().replace(' ', ""),
    )
}

/// The method `name` among `others` that reverts `step`, checked; `None` (and the error)
/// when there is no such method.
pub fn check<'m>(
    cx: &Ctxt,
    kind: &Reverter,
    others: &'m [Method],
    step: &Method,
    name: &syn::Ident,
) -> Option<&'m Method> {
    let Reverter {
        option,
        noun,
        on_failure,
        asyncness,
    } = kind;
    let output = output_name(step);
    let Some(m) = others.iter().find(|m| m.ident == *name) else {
        let candidates: Vec<String> = others.iter().map(|m| m.ident.to_string()).collect();
        cx.push(error_at(
            name,
            format!(
                "`{option} = {name}` names no method of this impl block: define `{asyncness}fn {name}(&self, output: &{output}) -> Result<()>` here{}",
                suggestion(&name.to_string(), candidates.iter().map(String::as_str))
            ),
        ));
        return None;
    };
    m.require_ref_self(cx, noun);
    if m.refs().next().is_none() {
        cx.push(error_at(
            &m.ident,
            format!(
                "the {noun} `{name}` receives the output of `{}`: add a parameter `output: &{output}`",
                step.ident
            ),
        ));
    }
    if m.output.is_none() {
        cx.push(error_at(
            &m.ident,
            format!("the {noun} `{name}` returns `flext::Result<()>` ({on_failure}): add `-> Result<()>`"),
        ));
    }
    Some(m)
}
