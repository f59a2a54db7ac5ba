//! The generated `execute` of a five-rule, four-step service against the same logic
//! written by hand with `?`, in one run.
//!
//! ```text
//! cargo bench --bench domain_service
//! ```
//!
//! Both sides open the same `tracing` span (no subscriber is installed, as in a service
//! whose logging is off), evaluate the five rules collecting violations, then run the four
//! steps. `valid` measures the happy path; `invalid` an input that breaks two rules.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flext::prelude::*;

#[derive(Clone)]
struct Transfer {
    from: u64,
    to: u64,
    amount_cents: u64,
    balance_cents: u64,
    currency: &'static str,
}

#[domain_service]
impl Transfer {
    #[business_rule(code = "transfer.amount.positive")]
    fn amount_positive(&self) -> RuleResult {
        ensure!(self.amount_cents > 0, "amount must be positive")
    }

    #[business_rule(code = "transfer.accounts.distinct")]
    fn distinct_accounts(&self) -> RuleResult {
        ensure!(self.from != self.to, "cannot transfer to the same account")
    }

    #[business_rule(code = "transfer.funds")]
    fn sufficient_funds(&self) -> RuleResult {
        ensure!(
            self.amount_cents <= self.balance_cents,
            "insufficient funds"
        )
    }

    #[business_rule(code = "transfer.currency")]
    fn known_currency(&self) -> RuleResult {
        ensure!(matches!(self.currency, "EUR" | "USD"), "unknown currency")
    }

    #[business_rule(code = "transfer.limit")]
    fn under_limit(&self) -> RuleResult {
        ensure!(self.amount_cents < 100_000_000, "over the daily limit")
    }

    #[step]
    fn fee(&self) -> Result<u64> {
        Ok(self.amount_cents / 100 + 25)
    }

    #[step]
    fn debit(&self, fee: u64) -> Result<u64> {
        self.balance_cents
            .checked_sub(self.amount_cents + fee)
            .ok_or_else(|| Error::conflict("transfer.funds", "insufficient funds for the fee"))
    }

    #[step]
    fn credit(&self, remaining: u64) -> Result<(u64, u64)> {
        Ok((remaining, self.amount_cents))
    }

    #[step]
    fn receipt(&self, moved: (u64, u64)) -> Result<u64> {
        Ok(moved.0 ^ moved.1.rotate_left(7))
    }
}

/// The same service, written by hand the way one would without flext.
fn hand_written(t: &Transfer, ctx: &Context) -> Result<u64> {
    let span = tracing::info_span!(
        "domain_service",
        service = "Transfer",
        correlation_id = %ctx.correlation_id(),
        failed_at = tracing::field::Empty,
    );
    let _guard = span.enter();

    let mut violations = Vec::new();
    let checks: [(bool, &'static str, &'static str); 5] = [
        (
            t.amount_cents > 0,
            "transfer.amount.positive",
            "amount must be positive",
        ),
        (
            t.from != t.to,
            "transfer.accounts.distinct",
            "cannot transfer to the same account",
        ),
        (
            t.amount_cents <= t.balance_cents,
            "transfer.funds",
            "insufficient funds",
        ),
        (
            matches!(t.currency, "EUR" | "USD"),
            "transfer.currency",
            "unknown currency",
        ),
        (
            t.amount_cents < 100_000_000,
            "transfer.limit",
            "over the daily limit",
        ),
    ];
    for (holds, code, message) in checks {
        if !holds {
            violations.push(RuleViolation::new(message).with_code(code));
        }
    }
    if !violations.is_empty() {
        return Err(Error::rule_violations(violations));
    }

    let fee = t.amount_cents / 100 + 25;
    let remaining = t
        .balance_cents
        .checked_sub(t.amount_cents + fee)
        .ok_or_else(|| Error::conflict("transfer.funds", "insufficient funds for the fee"))?;
    let moved = (remaining, t.amount_cents);
    Ok(moved.0 ^ moved.1.rotate_left(7))
}

fn bench(c: &mut Criterion) {
    let ctx = Context::new();
    let valid = Transfer {
        from: 1,
        to: 2,
        amount_cents: 12_345,
        balance_cents: 1_000_000,
        currency: "EUR",
    };
    let invalid = Transfer {
        to: 1,
        currency: "XXX",
        ..valid.clone()
    };
    assert_eq!(
        valid.execute_sync(&ctx).unwrap(),
        hand_written(&valid, &ctx).unwrap()
    );
    assert_eq!(
        invalid.execute_sync(&ctx).unwrap_err().violations(),
        hand_written(&invalid, &ctx).unwrap_err().violations()
    );

    let mut g = c.benchmark_group("domain_service/valid");
    g.bench_function("generated", |b| {
        b.iter(|| black_box(&valid).execute_sync(black_box(&ctx)))
    });
    g.bench_function("hand_written", |b| {
        b.iter(|| hand_written(black_box(&valid), black_box(&ctx)))
    });
    g.finish();

    let mut g = c.benchmark_group("domain_service/invalid");
    g.bench_function("hand_written", |b| {
        b.iter(|| hand_written(black_box(&invalid), black_box(&ctx)))
    });
    g.bench_function("generated", |b| {
        b.iter(|| black_box(&invalid).execute_sync(black_box(&ctx)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
