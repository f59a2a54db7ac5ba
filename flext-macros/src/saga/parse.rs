//! `#[saga]` input -> a typed model that keeps the user's spans.

use darling::FromMeta;
use darling::util::Flag;
use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::common::{Errors, error_at, is_context, parse_attr_args, result_ok_type};

/// Options of `#[saga(...)]`.
#[derive(Default, FromMeta)]
#[darling(default)]
pub struct SagaArgs {
    pub name: Option<String>,
    #[darling(rename = "crate")]
    pub krate: Option<syn::Path>,
}

/// Options of `#[saga_step(...)]`.
#[derive(Default, FromMeta)]
#[darling(default)]
pub struct StepArgs {
    pub compensate: Option<syn::Ident>,
    pub retries: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub pivot: Flag,
}

/// A parameter of a step or compensation after `&self`.
pub enum Param {
    Context,
    /// `&T`: the output of an earlier step (for a compensation, the first one is the
    /// step's own output).
    Output(Box<syn::Type>, Box<syn::Type>),
    /// Anything else: injected with `FromState`.
    Injected(Box<syn::Type>),
}

pub struct Method {
    pub ident: syn::Ident,
    pub is_async: bool,
    pub params: Vec<Param>,
    pub output: Option<Box<syn::Type>>,
    pub ok_type: Option<syn::Type>,
}

pub struct Step {
    pub method: Method,
    pub compensate: Option<syn::Ident>,
    pub retries: Option<u32>,
    pub backoff_ms: u64,
    pub timeout_ms: Option<u64>,
    pub pivot: Option<proc_macro2::Span>,
}

pub struct Saga {
    pub item: syn::ItemImpl,
    pub args: SagaArgs,
    pub name: String,
    pub steps: Vec<Step>,
    /// Every method that is not a step, by name, for compensations.
    pub others: Vec<Method>,
}

const ROLE: &str = "saga_step";

pub fn method(sig: &syn::Signature, role: &str, errors: &mut Errors) -> Method {
    match sig.inputs.first() {
        Some(syn::FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => errors.push(error_at(
            &sig.ident,
            format!(
                "a {role} takes `&self` first: `fn {}(&self, ...)`",
                sig.ident
            ),
        )),
    }
    let params = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(pt) if is_context(&pt.ty) => Some(Param::Context),
            syn::FnArg::Typed(pt) => match &*pt.ty {
                syn::Type::Reference(r) => Some(Param::Output(pt.ty.clone(), r.elem.clone())),
                _ => Some(Param::Injected(pt.ty.clone())),
            },
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) => Some(ty.clone()),
        syn::ReturnType::Default => None,
    };
    let ok_type = output.as_deref().and_then(result_ok_type).cloned();
    Method {
        ident: sig.ident.clone(),
        is_async: sig.asyncness.is_some(),
        params,
        output,
        ok_type,
    }
}

impl Saga {
    pub fn from_tokens(args: TokenStream, item: syn::ItemImpl, errors: &mut Errors) -> Saga {
        let args = darling::ast::NestedMeta::parse_meta_list(args)
            .map_err(darling::Error::from)
            .and_then(|metas| SagaArgs::from_list(&metas));
        let args = errors.handle(args).unwrap_or_default();
        let mut item = item;
        if let Some((_, path, _)) = &item.trait_ {
            errors.push(error_at(path, "`#[saga]` goes on an inherent `impl MySaga { ... }` block: it writes the `Saga` impl itself"));
        }
        if let Some(g) = item.generics.params.first() {
            errors.push(error_at(
                g,
                "a saga cannot be generic: recovery finds the saga's type by name after a restart",
            ));
        }
        let name = args.name.clone().unwrap_or_else(|| match &*item.self_ty {
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default(),
            other => other.to_token_stream().to_string(),
        });
        let mut steps = Vec::new();
        let mut others = Vec::new();
        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            let mut attr = None;
            f.attrs.retain(|a| {
                if a.path().segments.last().is_some_and(|s| s.ident == ROLE) {
                    if attr.is_some() {
                        errors.push(error_at(a, "a method has one `#[saga_step]`"));
                    }
                    attr = Some(a.clone());
                    false
                } else {
                    true
                }
            });
            match attr {
                Some(attr) => {
                    let step_args: StepArgs =
                        errors.handle(parse_attr_args(&attr)).unwrap_or_default();
                    let method = method(&f.sig, "`#[saga_step]`", errors);
                    match (&method.output, &method.ok_type) {
                        (None, _) => errors.push(error_at(
                            &method.ident,
                            format!("a `#[saga_step]` returns `flext::Result<T>`, where `T` is what its compensation and later steps receive: add `-> Result<T>` to `{}`", method.ident),
                        )),
                        (Some(ty), None) => errors.push(error_at(
                            ty,
                            "write the step's return type as `Result<T>` (or `Result<T, E>`): the saga logs `T` and hands it to the compensation",
                        )),
                        _ => {}
                    }
                    let pivot = step_args.pivot.is_present().then(|| step_args.pivot.span());
                    steps.push(Step {
                        method,
                        compensate: step_args.compensate,
                        retries: step_args.retries,
                        backoff_ms: step_args.backoff_ms.unwrap_or(100),
                        timeout_ms: step_args.timeout_ms,
                        pivot,
                    });
                }
                None => {
                    let mut scratch = Errors::default();
                    others.push(method(&f.sig, "compensation", &mut scratch));
                }
            }
        }
        Saga {
            item,
            args,
            name,
            steps,
            others,
        }
    }
}

/// Normalised tokens of a type, to match a parameter `&T` with an earlier output `T`.
pub fn type_key(ty: &syn::Type) -> String {
    ty.to_token_stream().to_string().replace(' ', "")
}

/// Whether a step whose output is `output` satisfies a parameter `&wanted`: the same type,
/// or the target `String` and `Vec<T>` dereference to (`&str`, `&[T]`), so that steps can
/// take the borrowed forms clippy asks for.
pub fn produces(output: &syn::Type, wanted: &syn::Type) -> bool {
    let (out, want) = (type_key(output), type_key(wanted));
    if out == want {
        return true;
    }
    match wanted {
        syn::Type::Path(p) if p.path.is_ident("str") => {
            out == "String" || out.ends_with("::String")
        }
        syn::Type::Slice(slice) => {
            let inner = type_key(&slice.elem);
            out == format!("Vec<{inner}>") || out.ends_with(&format!("::Vec<{inner}>"))
        }
        _ => false,
    }
}
