//! `#[aggregate]` on the impl: the rules across methods (one method per event and per
//! command, a rule only for a command the aggregate decides).

use quote::ToTokens;

use super::parse::Behaviour;
use crate::common::util::type_name;
use crate::common::{Ctxt, error_at};

pub fn check(b: &Behaviour, cx: &Ctxt) {
    let key_of = |t: &syn::Type| t.to_token_stream().to_string();
    for rule in &b.rules {
        let Some(command) = &rule.command else {
            continue;
        };
        let decided = b
            .commands
            .iter()
            .any(|c| c.command.as_ref().map(key_of) == Some(key_of(command)));
        if !decided {
            cx.push(error_at(command, format!("no `#[command_handler]` of this aggregate decides `{}`: a business rule runs before the command method of the command it takes", type_name(command))));
        }
    }
    let key = |t: &syn::Type| t.to_token_stream().to_string();
    for (i, a) in b.applies.iter().enumerate() {
        let Some(event) = &a.event else { continue };
        if let Some(first) = b.applies[..i]
            .iter()
            .find(|o| o.event.as_ref().map(key) == Some(key(event)))
        {
            cx.push(error_at(event, format!("`{}` is already applied by `{}`: an aggregate applies each event in one `#[apply]` method", type_name(event), first.method)));
        }
    }
    for (i, c) in b.commands.iter().enumerate() {
        let Some(command) = &c.command else { continue };
        if let Some(first) = b.commands[..i]
            .iter()
            .find(|o| o.command.as_ref().map(key) == Some(key(command)))
        {
            cx.push(error_at(command, format!("`{}` is already decided by `{}`: an aggregate has one command method per command", type_name(command), first.method.ident)));
        }
    }
}
