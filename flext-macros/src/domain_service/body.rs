//! The body of a service's `execute`: rules, then the steps (inside a labeled block when
//! a step has an undo or the service a hook, so that a failure breaks out to the undos),
//! then postconditions, then undos and the hook on failure.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::{Arg, Link, Rule, Service};
use crate::common::respan;
use crate::common::sig::{Method, Role};

const LABEL: &str = "'__flext_run";
const POST_LABEL: &str = "'__flext_post";

/// The body of `execute`: rules, then the steps (inside a labeled block when a step has
/// an undo, so that a failure breaks out to the undos), then postconditions, then undos
/// and the hook on failure.
pub(super) struct Body<'a> {
    pub(super) svc: &'a Service,
    pub(super) p: TokenStream,
    /// Whether failures break out of the labeled block instead of returning with `?`.
    pub(super) labeled: bool,
    /// The link index of the last step.
    pub(super) last: usize,
}

impl<'a> Body<'a> {
    pub(super) fn new(svc: &'a Service) -> Body<'a> {
        Body {
            svc,
            p: svc.krate.private(),
            labeled: !svc.undos.is_empty() || svc.on_error.is_some(),
            last: svc.steps().last().map_or(0, |(i, _, _)| i),
        }
    }

    fn label() -> syn::Lifetime {
        syn::Lifetime::new(LABEL, Span::call_site())
    }

    /// `expr?`, or a match that breaks out to the undos and the hook.
    fn attempt(&self, expr: TokenStream) -> TokenStream {
        self.attempt_to(expr, LABEL)
    }

    fn attempt_to(&self, expr: TokenStream, label: &str) -> TokenStream {
        if self.labeled {
            let label = syn::Lifetime::new(label, Span::call_site());
            quote! {
                match #expr {
                    ::core::result::Result::Ok(__flext_ok) => __flext_ok,
                    ::core::result::Result::Err(__flext_error) => break #label ::core::result::Result::Err(__flext_error),
                }
            }
        } else {
            quote!(#expr?)
        }
    }

    /// Whether step `k`'s output is kept in a slot for its undo (the last step's undo runs
    /// inline, so its output stays a plain value that can be returned).
    fn slotted(&self, k: usize) -> bool {
        k != self.last && self.svc.undos.iter().any(|(i, _, _)| *i == k)
    }

    fn out(k: usize) -> syn::Ident {
        format_ident!("__flext_out{}", k)
    }

    fn slot(k: usize) -> syn::Ident {
        format_ident!("__flext_slot{}", k)
    }

    /// A reference to step `k`'s output, inside the run.
    fn borrow(&self, k: usize) -> TokenStream {
        let out = Self::out(k);
        if self.slotted(k) {
            quote!(#out)
        } else {
            quote!(&#out)
        }
    }

    pub(super) fn tokens(&self) -> TokenStream {
        let svc = self.svc;
        let p = &self.p;
        let mut run = TokenStream::new();
        if !svc.rules.is_empty() {
            let mode = if svc.fail_fast.is_some() {
                quote!(FailFast)
            } else {
                quote!(CollectAll)
            };
            run.extend(quote! {
                let mut __flext_rules = #p::Rules::new(#p::RuleMode::#mode);
            });
            for &i in &svc.rule_order {
                run.extend(self.rule_check(&svc.rules[i], quote!(__flext_rules), None));
            }
            run.extend(self.attempt(quote!(__flext_rules.finish())));
            run.extend(quote!(;));
        }
        for (k, link) in svc.links.iter().enumerate() {
            let (prelude, call) = self.call(link.method(), &svc.args[k]);
            run.extend(prelude);
            match link {
                Link::Step(m, _) => {
                    let name = m.ident.to_string();
                    let step = quote!(#p::step(#name, #call));
                    let step = match &m.output {
                        Some(ret) => respan(step, ret.span()),
                        None => step,
                    };
                    let step = self.attempt(step);
                    let o = Self::out(k);
                    run.extend(quote! { let #o = #step; });
                    if self.slotted(k) {
                        let slot = Self::slot(k);
                        run.extend(quote! { let #o = &*#slot.insert(#o); });
                    }
                }
                Link::Tap(_) => run.extend(quote! { #call; }),
            }
        }
        run.extend(self.postconditions());
        let last = Self::out(self.last);
        run.extend(quote! { ::core::result::Result::<_, #p::Error>::Ok(#last) });
        if !self.labeled {
            return run;
        }

        let slots = svc
            .undos
            .iter()
            .filter(|(k, _, _)| self.slotted(*k))
            .map(|(k, _, _)| {
                let slot = Self::slot(*k);
                quote! { let mut #slot = ::core::option::Option::None; }
            });
        let undos: Vec<TokenStream> = svc
            .undos
            .iter()
            .rev()
            .filter(|(k, _, _)| self.slotted(*k))
            .map(|(k, undo, args)| {
                let slot = Self::slot(*k);
                let (prelude, call) = self.undo_call(undo, args, quote!(__flext_done));
                quote! {
                    if let ::core::option::Option::Some(__flext_done) = &#slot {
                        #prelude
                        __flext_error = #call;
                    }
                }
            })
            .collect();
        let rebind = (!undos.is_empty()).then(|| quote!(let mut __flext_error = __flext_error;));
        let hook = match svc.on_error.as_ref().and_then(|h| svc.other(h)) {
            Some(m) => {
                let call = self.plain_call(m, Some(quote!(__flext_error)));
                let span = m.output.as_ref().map_or(Span::call_site(), |r| r.span());
                respan(call, span)
            }
            None => quote!(__flext_error),
        };
        let label = Self::label();
        quote! {
            #(#slots)*
            let __flext_result: #p::Result<_> = #label: { #run };
            match __flext_result {
                ::core::result::Result::Ok(__flext_value) => ::core::result::Result::Ok(__flext_value),
                ::core::result::Result::Err(__flext_error) => {
                    #rebind
                    #(#undos)*
                    ::core::result::Result::Err(#hook)
                }
            }
        }
    }

    /// Postconditions on the final value; when they fail, the last step's undo runs
    /// before the failure leaves the run.
    fn postconditions(&self) -> TokenStream {
        let svc = self.svc;
        if svc.postconditions.is_empty() {
            return TokenStream::new();
        }
        let p = &self.p;
        let last = Self::out(self.last);
        let inline_undo = svc.undos.iter().find(|(k, _, _)| *k == self.last);
        // With an inline undo, postcondition checks that abort break out of an inner
        // block, so that the last step is undone for them too.
        let label = if inline_undo.is_some() {
            POST_LABEL
        } else {
            LABEL
        };
        let checks: TokenStream = svc
            .postconditions
            .iter()
            .map(|rule| self.rule_check_to(rule, quote!(__flext_post), Some(quote!(&#last)), label))
            .collect();
        match inline_undo {
            None => {
                let finish = self.attempt(quote!(__flext_post.finish()));
                quote! {
                    let mut __flext_post = #p::Rules::new(#p::RuleMode::CollectAll);
                    #checks
                    #finish;
                }
            }
            Some((_, undo, args)) => {
                let post_label = syn::Lifetime::new(POST_LABEL, Span::call_site());
                let (prelude, call) = self.undo_call(undo, args, quote!(&#last));
                let label = Self::label();
                quote! {
                    let __flext_checked: #p::Result<()> = #post_label: {
                        let mut __flext_post = #p::Rules::new(#p::RuleMode::CollectAll);
                        #checks
                        __flext_post.finish()
                    };
                    if let ::core::result::Result::Err(__flext_error) = __flext_checked {
                        #prelude
                        break #label ::core::result::Result::Err(#call);
                    }
                }
            }
        }
    }

    pub(super) fn rule_check(
        &self,
        rule: &Rule,
        rules: TokenStream,
        value: Option<TokenStream>,
    ) -> TokenStream {
        self.rule_check_to(rule, rules, value, LABEL)
    }

    fn rule_check_to(
        &self,
        rule: &Rule,
        rules: TokenStream,
        value: Option<TokenStream>,
        label: &str,
    ) -> TokenStream {
        let m = &rule.method;
        let name = m.ident.to_string();
        let code = &rule.code;
        let mut prelude = TokenStream::new();
        let mut args = Vec::new();
        for param in &m.params {
            match (&param.role, &value) {
                (Role::Context, _) => args.push(quote!(__flext_ctx)),
                (_, Some(value)) => {
                    let ty = &param.ty;
                    prelude.extend(quote_spanned! {ty.span()=>
                        let __flext_checked: #ty = #value;
                    });
                    args.push(quote!(__flext_checked));
                }
                (_, None) => {}
            }
        }
        let ident = &m.ident;
        let await_ = m.asyncness.map(|_| quote!(.await));
        let check = quote!(#rules.check(#name, #code, self.#ident(#(#args),*) #await_));
        let check = match &m.output {
            Some(ret) => respan(check, ret.span()),
            None => check,
        };
        let check = self.attempt_to(check, label);
        quote! {
            {
                #prelude
                #check;
            }
        }
    }

    /// The call of a step or tap with its parameters bound as `args` says.
    fn call(&self, m: &Method, args: &[Arg]) -> (TokenStream, TokenStream) {
        let mut prelude = TokenStream::new();
        let mut values = Vec::new();
        for (n, (param, arg)) in m.params.iter().zip(args).enumerate() {
            let bind = format_ident!("__flext_arg{}", n);
            let ty = &param.ty;
            let value = match arg {
                Arg::Context => {
                    values.push(quote!(__flext_ctx));
                    continue;
                }
                Arg::Moved(j) => {
                    // Through `step_input`, so that a mismatch names the step whose
                    // output this is (a marker type named after it), on the parameter.
                    let o = Self::out(*j);
                    let p = &self.p;
                    let source = match &self.svc.links[*j] {
                        Link::Step(s, _) | Link::Tap(s) => s.ident.clone(),
                    };
                    quote! {{
                        #[allow(non_camel_case_types, dead_code)]
                        mod __flext_previous { pub struct #source {} }
                        #p::step_input::<__flext_previous::#source, #ty, _>(#o)
                    }}
                }
                Arg::Borrowed(j) => self.borrow(*j),
                Arg::Unbound => continue,
            };
            // The value on the parameter's type too: a mismatch is reported there, on
            // the user's token, not on the attribute the value was generated by.
            let value = respan(value, ty.span());
            prelude.extend(quote_spanned! {ty.span()=> let #bind: #ty = #value; });
            values.push(quote!(#bind));
        }
        let ident = &m.ident;
        let await_ = m.asyncness.map(|_| quote!(.await));
        (prelude, quote!(self.#ident(#(#values),*) #await_))
    }

    /// The call of the hook: the error, and the context where asked for.
    fn plain_call(&self, m: &Method, value: Option<TokenStream>) -> TokenStream {
        let mut value = value;
        let args = m.params.iter().filter_map(|p| match p.role {
            Role::Context => Some(quote!(__flext_ctx)),
            _ => value.take(),
        });
        let ident = &m.ident;
        let await_ = m.asyncness.map(|_| quote!(.await));
        quote!(self.#ident(#(#args),*) #await_)
    }

    /// `runtime::undo(error, name, self.undo(output))`: runs the undo of a completed step
    /// and returns the error to report.
    fn undo_call(
        &self,
        undo: &syn::Ident,
        args: &[Arg],
        output: TokenStream,
    ) -> (TokenStream, TokenStream) {
        let p = &self.p;
        let Some(m) = self.svc.other(undo) else {
            return (TokenStream::new(), quote!(__flext_error));
        };
        let mut prelude = TokenStream::new();
        let mut values = Vec::new();
        for (param, arg) in m.params.iter().zip(args) {
            match arg {
                Arg::Context => values.push(quote!(__flext_ctx)),
                Arg::Borrowed(j) => {
                    let ty = &param.ty;
                    // Through `undo_input`, so that a mismatch names the step undone.
                    let source = match &self.svc.links[*j] {
                        Link::Step(s, _) | Link::Tap(s) => s.ident.clone(),
                    };
                    let output = quote! {{
                        #[allow(non_camel_case_types, dead_code)]
                        mod __flext_undone { pub struct #source {} }
                        #p::undo_input::<__flext_undone::#source, #ty, _>(#output)
                    }};
                    let output = respan(output, ty.span());
                    prelude
                        .extend(quote_spanned! {ty.span()=> let __flext_undo_in: #ty = #output; });
                    values.push(quote!(__flext_undo_in));
                }
                _ => {}
            }
        }
        let ident = &m.ident;
        let name = ident.to_string();
        let await_ = m.asyncness.map(|_| quote!(.await));
        let call = quote!(#p::undo(__flext_error, #name, self.#ident(#(#values),*) #await_));
        let call = match &m.output {
            Some(ret) => respan(call, ret.span()),
            None => call,
        };
        (prelude, call)
    }
}
