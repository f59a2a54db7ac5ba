//! `#[workflow]` input -> a typed model that keeps the user's spans.

use proc_macro2::{Span, TokenStream};

use crate::common::options::{self, Spec};
use crate::common::sig::{Method, Role};
use crate::common::symbol::*;
use crate::common::util::{take_attrs, type_name};
use crate::common::{Ctxt, Krate, error_at};

pub struct Step {
    pub method: Method,
    /// The names in `depends_on = [..]`, as written.
    pub depends_on: Vec<syn::Ident>,
    pub optional: Option<Span>,
    pub timeout_ms: Option<u64>,
    pub compensate: Option<syn::Ident>,
    /// `breaker = field`: a field of the workflow holding a `CircuitBreaker`.
    pub breaker: Option<syn::Ident>,
    /// Filled by the check: the indexes `depends_on` names.
    pub deps: Vec<usize>,
    /// Set by the check when a name in `depends_on` is not a step (its other checks
    /// would only repeat that mistake).
    pub unresolved: bool,
    /// Filled by the check: for each parameter, the step whose output it takes.
    pub sources: Vec<Option<usize>>,
    /// What is wrong with the method's own signature, held until the check adds what is
    /// wrong with its parameters, so that the step's signature is one error.
    pub signature_errors: Vec<syn::Error>,
}

pub struct WorkflowDef {
    pub item: syn::ItemImpl,
    pub krate: Krate,
    pub name: String,
    pub steps: Vec<Step>,
    /// Every method that is not a step, for compensations.
    pub others: Vec<Method>,
    /// `durable`: runs are recorded in the saga log (the input and every output serde).
    pub durable: Option<Span>,
    /// Older definitions a durable workflow resumes (`accepts = "..."`, repeatable).
    pub accepts: Vec<String>,
}

const WORKFLOW_SPEC: Spec<'static> = Spec {
    attr: WORKFLOW,
    allowed: &[NAME, DURABLE, ACCEPTS, CRATE],
    repeatable: &[ACCEPTS],
};
const STEP_SPEC: Spec<'static> = Spec {
    attr: WORKFLOW_STEP,
    allowed: &[DEPENDS_ON, OPTIONAL, TIMEOUT_MS, COMPENSATE, BREAKER],
    repeatable: &[],
};

impl WorkflowDef {
    pub fn from_syn(cx: &Ctxt, args: TokenStream, item: syn::ItemImpl) -> WorkflowDef {
        let mut name = None;
        let mut krate = None;
        let mut durable = None;
        let mut accepts = Vec::new();
        let mut first_accepts = None;
        options::parse(cx, &WORKFLOW_SPEC, args, |key, meta| {
            match key {
                NAME => name = Some(options::string(meta)?.value()),
                DURABLE => durable = Some(options::flag(meta)?),
                // Written as the error shows it: `\t` between fields, `\n` between nodes.
                ACCEPTS => {
                    first_accepts.get_or_insert(meta.path.clone());
                    accepts.push(
                        options::string(meta)?
                            .value()
                            .replace("\\t", "\t")
                            .replace("\\n", "\n"),
                    );
                }
                _ => krate = Some(options::path(meta)?),
            }
            Ok(())
        });
        if let (None, Some(path)) = (durable, &first_accepts) {
            cx.push(error_at(
                path,
                "`accepts` names older definitions a durable workflow's recorded runs were started under: add `durable` (`#[workflow(durable, accepts = \"...\")]`), or remove it",
            ));
        }
        let mut item = item;
        if let Some((_, path, _)) = &item.trait_ {
            cx.push(error_at(path, format!("`#[workflow]` goes on an inherent `impl {} {{ ... }}` block: it writes the `Workflow` impl itself", crate::common::util::type_name(&item.self_ty))));
        }
        if let Some(g) = item.generics.params.first() {
            cx.push(error_at(
                g,
                "a workflow cannot be generic: each step's statistics are kept per workflow type, resolved once",
            ));
        }
        let mut steps = Vec::new();
        let mut others = Vec::new();
        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            let ours = take_attrs(&mut f.attrs, &[WORKFLOW_STEP]);
            if let Some((_, second)) = ours.get(1) {
                cx.push(error_at(
                    second,
                    "a method has one `#[workflow_step]`: remove this one",
                ));
            }
            let method = Method::from_sig(&f.sig);
            match ours.into_iter().next() {
                Some((_, attr)) => steps.push(read_step(cx, &attr, method)),
                None => others.push(method),
            }
        }
        WorkflowDef {
            name: name.unwrap_or_else(|| type_name(&item.self_ty)),
            krate: Krate::new(krate),
            item,
            steps,
            others,
            durable,
            accepts,
        }
    }
}

fn read_step(cx: &Ctxt, attr: &syn::Attribute, method: Method) -> Step {
    let mut step = Step {
        method,
        depends_on: Vec::new(),
        optional: None,
        timeout_ms: None,
        compensate: None,
        breaker: None,
        deps: Vec::new(),
        unresolved: false,
        sources: Vec::new(),
        signature_errors: Vec::new(),
    };
    options::parse_attr(cx, &STEP_SPEC, attr, |key, meta| {
        match key {
            DEPENDS_ON => step.depends_on = options::ident_list(meta)?,
            OPTIONAL => step.optional = Some(options::flag(meta)?),
            TIMEOUT_MS => step.timeout_ms = Some(options::int(meta)?.0),
            COMPENSATE => step.compensate = Some(options::ident(meta)?),
            _ => step.breaker = Some(options::ident(meta)?),
        }
        Ok(())
    });
    let signature = Ctxt::new();
    let cx = &signature;
    let m = &step.method;
    m.require_ref_self(cx, "`#[workflow_step]`");
    m.reject_generics(
        cx,
        "`#[workflow_step]`",
        "the workflow calls it with types it must know",
    );
    if let Some(p) = m.params.iter().find(|p| matches!(p.role, Role::Bus)) {
        cx.push(error_at(&p.ty, "a `#[workflow_step]` cannot take the bus: give it to the runner as state and take it as `State<T>`, or keep it in a field of the workflow"));
    }
    match (&m.output, &m.ok_type) {
        (None, _) => cx.push(error_at(
            &m.ident,
            format!("a `#[workflow_step]` returns `flext::Result<T>`, where `T` is what the steps that depend on it receive: add `-> Result<T>` to `{}`", m.ident),
        )),
        (Some(ty), None) => cx.push(error_at(
            ty,
            "write the step's return type as `Result<T>` (or `Result<T, E>`): the workflow keeps `T` for the steps that depend on it",
        )),
        _ => {}
    }
    if let Err(errors) = signature.check() {
        step.signature_errors = errors.into_iter().collect();
    }
    step
}
