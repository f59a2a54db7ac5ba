//! The one model of a method or function signature that every macro family reads: the
//! receiver, each parameter with the part it plays, `async`, the return type and its
//! `Ok` type, all with the user's spans. Families give `Role::Value` and `Role::Ref`
//! their own meaning (a step's input, an earlier output, injected state, the message).

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;

use super::Ctxt;
use super::util::{error_at, result_ok_type};

/// How the method receives `self`.
pub enum Receiver {
    /// `&self`.
    Ref,
    /// `&mut self` (what an aggregate's `#[apply]` takes).
    RefMut(syn::Receiver),
    /// `self`, `self: Box<Self>`, ...
    Other(syn::Receiver),
    /// No receiver: an associated function.
    Missing,
}

/// The part a parameter plays, read from its type.
pub enum Role {
    /// `&Context` (any path ending in `Context`): the call's context.
    Context,
    /// `&Bus` (any path ending in `Bus`): the bus that dispatched the call.
    Bus,
    /// `&T`: a value borrowed from the caller; the `T`.
    Ref(Box<syn::Type>),
    /// `T` by value.
    Value,
}

pub struct Param {
    /// The parameter's name, when its pattern is a plain identifier.
    pub name: Option<syn::Ident>,
    /// The declared type, spanned at the user's tokens.
    pub ty: Box<syn::Type>,
    pub role: Role,
}

pub struct Method {
    pub ident: syn::Ident,
    pub asyncness: Option<syn::Token![async]>,
    pub receiver: Receiver,
    pub params: Vec<Param>,
    /// The declared return type, when there is one.
    pub output: Option<Box<syn::Type>>,
    /// `T` when the return type is written `Result<T>` or `Result<T, E>`.
    pub ok_type: Option<syn::Type>,
    /// The first generic parameter, if any (no family accepts one).
    pub generic: Option<syn::GenericParam>,
}

impl Method {
    pub fn from_sig(sig: &syn::Signature) -> Method {
        let receiver = match sig.receiver() {
            Some(r)
                if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() =>
            {
                Receiver::Ref
            }
            Some(r)
                if r.reference.is_some() && r.mutability.is_some() && r.colon_token.is_none() =>
            {
                Receiver::RefMut(r.clone())
            }
            Some(r) => Receiver::Other(r.clone()),
            None => Receiver::Missing,
        };
        let params = sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                syn::FnArg::Receiver(_) => None,
                syn::FnArg::Typed(pt) => Some(Param {
                    name: match &*pt.pat {
                        syn::Pat::Ident(p) => Some(p.ident.clone()),
                        _ => None,
                    },
                    ty: pt.ty.clone(),
                    role: role_of(&pt.ty),
                }),
            })
            .collect();
        let output = match &sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some(ty.clone()),
        };
        let ok_type = output.as_deref().and_then(result_ok_type).cloned();
        Method {
            ident: sig.ident.clone(),
            asyncness: sig.asyncness,
            receiver,
            params,
            output,
            ok_type,
            generic: sig
                .generics
                .params
                .iter()
                .find(|p| !matches!(p, syn::GenericParam::Lifetime(_)))
                .cloned(),
        }
    }

    pub fn is_async(&self) -> bool {
        self.asyncness.is_some()
    }

    /// The `async` keyword's span, or the name's.
    pub fn async_span(&self) -> Span {
        self.asyncness
            .map_or_else(|| self.ident.span(), |a| a.span())
    }

    /// Whether a parameter is the context.
    pub fn takes_context(&self) -> bool {
        self.params.iter().any(|p| matches!(p.role, Role::Context))
    }

    /// The parameters taken by value.
    pub fn values(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| matches!(p.role, Role::Value))
    }

    /// The parameters taken by reference (other than the context and the bus).
    pub fn refs(&self) -> impl Iterator<Item = &Param> {
        self.params
            .iter()
            .filter(|p| matches!(p.role, Role::Ref(_)))
    }

    /// Reports a receiver other than `&self` as an error for a `role` method.
    pub fn require_ref_self(&self, cx: &Ctxt, role: &str) {
        match &self.receiver {
            Receiver::Ref => {}
            Receiver::RefMut(r) | Receiver::Other(r) => cx.push(error_at(
                r,
                format!("a {role} takes `&self`, not `{}`", r.to_token_stream()),
            )),
            Receiver::Missing => cx.push(error_at(
                &self.ident,
                format!(
                    "a {role} takes `&self` as its first parameter: `fn {}(&self, ...)`",
                    self.ident
                ),
            )),
        }
    }

    /// Reports a generic parameter as an error, saying `why` a `role` cannot have one.
    pub fn reject_generics(&self, cx: &Ctxt, role: &str, why: &str) {
        if let Some(g) = &self.generic {
            cx.push(error_at(
                g,
                format!("a {role} cannot have type parameters: {why}"),
            ));
        }
    }
}

fn role_of(ty: &syn::Type) -> Role {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => {
            if last_segment_is(&r.elem, "Context") {
                Role::Context
            } else if last_segment_is(&r.elem, "Bus") {
                Role::Bus
            } else {
                Role::Ref(r.elem.clone())
            }
        }
        syn::Type::Group(g) => role_of(&g.elem),
        syn::Type::Paren(p) => role_of(&p.elem),
        _ => Role::Value,
    }
}

fn last_segment_is(ty: &syn::Type, name: &str) -> bool {
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == name && s.arguments.is_none()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn roles(sig: syn::Signature) -> Vec<&'static str> {
        Method::from_sig(&sig)
            .params
            .iter()
            .map(|p| match p.role {
                Role::Context => "ctx",
                Role::Bus => "bus",
                Role::Ref(_) => "ref",
                Role::Value => "value",
            })
            .collect()
    }

    #[test]
    fn parameters_are_classified_by_type() {
        let sig: syn::Signature =
            parse_quote!(fn f(&self, a: u32, b: &Order, c: &flext::Context, d: &Bus, e: &mut X));
        assert_eq!(roles(sig), ["value", "ref", "ctx", "bus", "value"]);
    }

    #[test]
    fn receivers_other_than_ref_self_are_told_apart() {
        let m = Method::from_sig(&parse_quote!(fn f(&mut self)));
        assert!(matches!(m.receiver, Receiver::RefMut(_)));
        let m = Method::from_sig(&parse_quote!(fn f(self)));
        assert!(matches!(m.receiver, Receiver::Other(_)));
        let m = Method::from_sig(&parse_quote!(fn f(x: u8)));
        assert!(matches!(m.receiver, Receiver::Missing));
        let m = Method::from_sig(&parse_quote!(async fn f(&self) -> Result<u8>));
        assert!(matches!(m.receiver, Receiver::Ref));
        assert!(m.is_async());
        assert_eq!(m.ok_type.unwrap().to_token_stream().to_string(), "u8");
    }

    #[test]
    fn lifetimes_are_not_generics() {
        let m = Method::from_sig(&parse_quote!(fn f<'a>(&'a self)));
        assert!(m.generic.is_none());
        let m = Method::from_sig(&parse_quote!(fn f<T>(&self)));
        assert!(m.generic.is_some());
    }
}
