//! `#[step(undo = ..)]`: the undos of completed steps run in reverse order when a later
//! step or a postcondition fails, before the `on_error` hook; never on a rule violation.
//! Per-run state lives in the step outputs, so running the same instance twice cannot
//! undo the previous run's effects.

use std::sync::Mutex;

use flext::codes;
use flext::prelude::*;

/// Records every effect, in order.
#[derive(Default)]
struct Ledger(Mutex<Vec<String>>);

impl Ledger {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

struct PlaceOrder {
    ledger: Ledger,
    quantity: Mutex<u32>,
    card_declined: Mutex<bool>,
    max_total: u64,
}

#[derive(Debug, PartialEq)]
struct Reservation(u32);

#[domain_service(on_error = report)]
impl PlaceOrder {
    #[business_rule(code = "order.quantity.positive")]
    fn quantity_positive(&self) -> RuleResult {
        ensure!(
            *self.quantity.lock().unwrap() > 0,
            "quantity must be positive"
        )
    }

    #[step(undo = release)]
    fn reserve(&self) -> Result<Reservation> {
        let n = *self.quantity.lock().unwrap();
        self.ledger.push(format!("reserve {n}"));
        Ok(Reservation(n))
    }

    fn release(&self, reservation: &Reservation) -> Result<()> {
        self.ledger.push(format!("release {}", reservation.0));
        Ok(())
    }

    #[step(undo = refund)]
    fn charge(&self, reservation: &Reservation) -> Result<u64> {
        if *self.card_declined.lock().unwrap() {
            return Err(Error::conflict("order.card.declined", "card declined"));
        }
        let total = u64::from(reservation.0) * 100;
        self.ledger.push(format!("charge {total}"));
        Ok(total)
    }

    fn refund(&self, total: &u64) -> Result<()> {
        self.ledger.push(format!("refund {total}"));
        Ok(())
    }

    #[step(undo = cancel_shipment)]
    fn ship(&self, reservation: &Reservation, total: &u64) -> Result<String> {
        self.ledger
            .push(format!("ship {} for {total}", reservation.0));
        Ok(format!("parcel-{}", reservation.0))
    }

    fn cancel_shipment(&self, parcel: &str) -> Result<()> {
        self.ledger.push(format!("cancel {parcel}"));
        Ok(())
    }

    #[postcondition(code = "order.total.limit")]
    fn within_limit(&self, _parcel: &String) -> RuleResult {
        let n = u64::from(*self.quantity.lock().unwrap());
        ensure!(n * 100 <= self.max_total, "total over the limit")
    }

    fn report(&self, error: Error) -> Error {
        self.ledger.push(format!("hook {}", error.code()));
        error
    }
}

fn order(max_total: u64) -> PlaceOrder {
    PlaceOrder {
        ledger: Ledger::default(),
        quantity: Mutex::new(2),
        card_declined: Mutex::new(false),
        max_total,
    }
}

#[test]
fn a_failing_later_step_undoes_the_completed_ones_in_reverse_order() {
    let svc = order(10_000);
    let ctx = Context::new();
    assert_eq!(svc.execute_sync(&ctx).unwrap(), "parcel-2");
    assert_eq!(
        svc.ledger.take(),
        ["reserve 2", "charge 200", "ship 2 for 200"]
    );

    // The same instance again: only this run's reservation is released.
    *svc.quantity.lock().unwrap() = 3;
    *svc.card_declined.lock().unwrap() = true;
    let err = svc.execute_sync(&ctx).unwrap_err();
    assert_eq!(err.code(), "order.card.declined");
    assert_eq!(
        svc.ledger.take(),
        ["reserve 3", "release 3", "hook order.card.declined"]
    );
}

#[test]
fn a_failing_postcondition_undoes_every_step_including_the_last() {
    let svc = order(10_000);
    let ctx = Context::new();
    assert!(svc.execute_sync(&ctx).is_ok());
    svc.ledger.take();

    *svc.quantity.lock().unwrap() = 500;
    let err = svc.execute_sync(&ctx).unwrap_err();
    assert_eq!(err.code(), "order.total.limit");
    assert_eq!(
        svc.ledger.take(),
        [
            "reserve 500",
            "charge 50000",
            "ship 500 for 50000",
            "cancel parcel-500",
            "refund 50000",
            "release 500",
            "hook order.total.limit",
        ]
    );
}

#[test]
fn a_rule_violation_undoes_nothing() {
    let svc = order(10_000);
    let ctx = Context::new();
    assert!(svc.execute_sync(&ctx).is_ok());
    svc.ledger.take();

    *svc.quantity.lock().unwrap() = 0;
    let err = svc.execute_sync(&ctx).unwrap_err();
    assert_eq!(err.code(), "order.quantity.positive");
    assert_eq!(svc.ledger.take(), ["hook order.quantity.positive"]);
}

struct Transfer {
    ledger: Ledger,
}

#[domain_service]
impl Transfer {
    #[step(undo = unhold)]
    async fn hold(&self, ctx: &Context) -> Result<u32> {
        let _ = ctx;
        self.ledger.push("hold");
        Ok(1)
    }

    async fn unhold(&self, hold: &u32, ctx: &Context) -> Result<()> {
        let _ = ctx;
        self.ledger.push(format!("unhold {hold}"));
        Err(Error::infrastructure("bank.down", "bank unreachable"))
    }

    #[step]
    async fn send(&self, hold: &u32) -> Result<u32> {
        let _ = hold;
        Err(Error::timeout("bank.timeout", "no answer"))
    }
}

#[tokio::test]
async fn an_async_undo_that_fails_reports_an_incomplete_rollback() {
    let svc = Transfer {
        ledger: Ledger::default(),
    };
    let err = svc.execute(&Context::new()).await.unwrap_err();
    assert_eq!(svc.ledger.take(), ["hold", "unhold 1"]);
    assert_eq!(err.kind(), ErrorKind::CompensationFailed);
    assert_eq!(err.code(), codes::SERVICE_UNDO_FAILED);
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("bank.timeout"), "{cause}");
}
