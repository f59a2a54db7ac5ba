//! `#[projection]`'s rules across methods: one method per event.

use quote::ToTokens;

use super::parse::ProjectionDef;
use crate::common::util::type_name;
use crate::common::{Ctxt, error_at};

pub fn check(p: &ProjectionDef, cx: &Ctxt) {
    let key = |t: &syn::Type| t.to_token_stream().to_string();
    for (i, h) in p.handlers.iter().enumerate() {
        let Some(event) = &h.event else { continue };
        if let Some(first) = p.handlers[..i]
            .iter()
            .find(|o| o.event.as_ref().map(key) == Some(key(event)))
        {
            cx.push(error_at(event, format!("`{}` is already applied by `{}`: a projection applies each event in one method", type_name(event), first.method)));
        }
    }
}
