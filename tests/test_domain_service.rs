//! Behaviour of `#[domain_service]` that users rely on: the order rules and steps run in,
//! what is collected, what the error hook sees, sync and async forms.

use std::sync::Mutex;

use flext::prelude::*;

/// Records the order of effects.
#[derive(Default)]
struct Journal(Mutex<Vec<String>>);

impl Journal {
    fn note(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Ordered<'a> {
    journal: &'a Journal,
    fail: &'static [&'static str],
}

impl Ordered<'_> {
    fn rule(&self, name: &str) -> RuleResult {
        self.journal.note(name);
        ensure!(!self.fail.contains(&name), "{name} failed")
    }
}

#[domain_service]
impl Ordered<'_> {
    #[business_rule]
    fn declared_first(&self) -> RuleResult {
        self.rule("declared_first")
    }

    #[business_rule(code = "ordered.after", after = declared_last)]
    fn runs_after_last(&self) -> RuleResult {
        self.rule("runs_after_last")
    }

    #[business_rule(order = 2)]
    fn order_two(&self) -> RuleResult {
        self.rule("order_two")
    }

    #[business_rule(order = 1)]
    fn order_one(&self) -> RuleResult {
        self.rule("order_one")
    }

    #[business_rule]
    fn declared_last(&self) -> RuleResult {
        self.rule("declared_last")
    }

    #[step]
    fn start(&self, ctx: &Context) -> Result<u32> {
        self.journal
            .note(format!("start:{}", ctx.correlation_id() == ctx.id()));
        Ok(20)
    }

    #[tap]
    fn saw(&self, value: &u32) {
        self.journal.note(format!("tap:{value}"));
    }

    #[step]
    fn add(&self, n: u32) -> Result<u64> {
        self.journal.note("add");
        Ok(u64::from(n) + 1)
    }

    #[step]
    fn double(&self, ctx: &Context, n: u64) -> Result<String> {
        let _ = ctx;
        self.journal.note("double");
        Ok((n * 2).to_string())
    }

    #[postcondition(code = "ordered.result.nonempty")]
    fn not_empty(&self, out: &str) -> RuleResult {
        self.journal.note("post");
        ensure!(!out.is_empty(), "result must not be empty")
    }
}

#[test]
fn rules_run_by_order_then_declaration_then_after_and_steps_chain() {
    let journal = Journal::default();
    let svc = Ordered {
        journal: &journal,
        fail: &[],
    };
    let out = svc.execute_sync(&Context::new()).unwrap();
    assert_eq!(out, "42");
    assert_eq!(
        journal.take(),
        [
            "order_one",
            "order_two",
            "declared_first",
            "declared_last",
            "runs_after_last",
            "start:true",
            "tap:20",
            "add",
            "double",
            "post"
        ]
    );
}

#[test]
fn collect_mode_reports_every_violation_in_run_order_and_runs_no_step() {
    let journal = Journal::default();
    let svc = Ordered {
        journal: &journal,
        fail: &["runs_after_last", "order_two", "declared_first"],
    };
    let err = svc.execute_sync(&Context::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuleViolation);
    let codes: Vec<_> = err
        .violations()
        .iter()
        .map(|v| v.code.to_string())
        .collect();
    // Codes default to the method name; `code = ...` overrides.
    assert_eq!(codes, ["order_two", "declared_first", "ordered.after"]);
    assert_eq!(err.violations()[0].message, "order_two failed");
    let effects = journal.take();
    assert_eq!(effects.len(), 5, "every rule ran, no step did: {effects:?}");
}

struct FailFast<'a> {
    journal: &'a Journal,
}

#[domain_service(fail_fast)]
impl FailFast<'_> {
    #[business_rule(code = "ff.one")]
    fn one(&self) -> RuleResult {
        self.journal.note("one");
        Err(RuleViolation::new("one is broken"))
    }

    #[business_rule(code = "ff.two")]
    fn two(&self) -> RuleResult {
        self.journal.note("two");
        Err(RuleViolation::new("two is broken"))
    }

    #[step]
    fn never(&self) -> Result<()> {
        self.journal.note("step");
        Ok(())
    }
}

#[test]
fn fail_fast_stops_at_the_first_violated_rule() {
    let journal = Journal::default();
    let err = FailFast { journal: &journal }
        .execute_sync(&Context::new())
        .unwrap_err();
    assert_eq!(err.code(), "ff.one");
    assert_eq!(err.violations().len(), 1);
    assert_eq!(journal.take(), ["one"]);
}

/// A transfer that debits, then credits, and rolls the debit back from the error hook
/// when a later step fails: the documents' `map_error(handle_failure)`.
struct Transfer<'a> {
    journal: &'a Journal,
    credit_fails: bool,
}

#[domain_service(on_error = roll_back)]
impl Transfer<'_> {
    #[step]
    async fn debit(&self) -> Result<u32> {
        self.journal.note("debit");
        Ok(100)
    }

    #[step]
    async fn credit(&self, amount: u32, ctx: &Context) -> Result<u32> {
        let _ = ctx;
        if self.credit_fails {
            return Err(Error::infrastructure(
                "bank.credit",
                "credit service unavailable",
            ));
        }
        self.journal.note(format!("credit:{amount}"));
        Ok(amount)
    }

    async fn roll_back(&self, error: Error, ctx: &Context) -> Error {
        let _ = ctx;
        self.journal
            .note(format!("roll back after [{}]", error.code()));
        error.with_message("transfer rolled back: credit service unavailable")
    }
}

#[tokio::test]
async fn async_steps_and_the_error_hook() {
    let journal = Journal::default();
    let ok = Transfer {
        journal: &journal,
        credit_fails: false,
    }
    .execute(&Context::new())
    .await
    .unwrap();
    assert_eq!(ok, 100);
    assert_eq!(journal.take(), ["debit", "credit:100"]);

    let err = Transfer {
        journal: &journal,
        credit_fails: true,
    }
    .execute(&Context::new())
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert_eq!(err.code(), "bank.credit");
    assert_eq!(
        err.message(),
        "transfer rolled back: credit service unavailable"
    );
    assert_eq!(journal.take(), ["debit", "roll back after [bank.credit]"]);
}

struct Post;

#[domain_service]
impl Post {
    #[step]
    fn compute(&self) -> Result<i32> {
        Ok(-5)
    }

    #[postcondition(code = "post.positive")]
    fn positive(&self, v: &i32) -> RuleResult {
        ensure!(*v > 0, "result must be positive, got {v}")
    }

    #[postcondition(code = "post.even")]
    fn even(&self, v: &i32) -> RuleResult {
        ensure!(v % 2 == 0, "result must be even, got {v}")
    }
}

#[test]
fn postconditions_check_the_result_and_all_are_reported() {
    let err = Post.execute_sync(&Context::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuleViolation);
    let msgs: Vec<_> = err.violations().iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        [
            "[post.positive] result must be positive, got -5",
            "[post.even] result must be even, got -5"
        ]
    );
}

struct Lookup {
    down: bool,
}

#[domain_service]
impl Lookup {
    #[business_rule(code = "lookup.first")]
    fn first(&self) -> RuleResult {
        Err(RuleViolation::new("first is broken"))
    }

    /// A rule that needs a repository returns `flext::Result<()>`; an infrastructure
    /// error aborts even in collect mode.
    #[business_rule(code = "lookup.repo")]
    async fn repo(&self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        if self.down {
            Err(Error::infrastructure("repo.down", "repository unreachable"))
        } else {
            Ok(())
        }
    }

    #[step]
    fn found(&self) -> Result<&'static str> {
        Ok("found")
    }
}

#[tokio::test]
async fn an_aborting_rule_wins_over_collected_violations() {
    let err = Lookup { down: true }
        .execute(&Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    let err = Lookup { down: false }
        .execute(&Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "lookup.first");
}

#[tokio::test]
async fn a_service_future_is_send_and_can_be_spawned() {
    let handle = tokio::spawn(async {
        let ctx = Context::new();
        Lookup { down: false }
            .execute(&ctx)
            .await
            .map_err(|e| e.code().to_owned())
    });
    assert_eq!(handle.await.unwrap(), Err("lookup.first".to_owned()));
}
