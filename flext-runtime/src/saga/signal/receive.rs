//! A signal step reached by the runner: its receipt (the signal recorded, one taken from
//! the inbox, or its timeout) or the saga's wait.

use super::{NO_LIMIT_MS, Reached, Receipt, waiting_owner};
use crate::error::Result;
use crate::saga::lease::Claim;
use crate::saga::progress::Progress;
use crate::saga::{
    SagaOutcome, SagaRunner, SagaState, SignalRecord, SignalSpec, StepSpec, Transition, now_ms,
};

impl SagaRunner {
    /// Brings signal step `index` to its receipt: the one recorded, else the first
    /// signal of its name in the inbox that no step took, else the timeout once it is
    /// due; otherwise the saga waits (one write, leased to no runner).
    pub(in crate::saga) async fn reach_signal(
        &self,
        claim: &Claim,
        spec: &StepSpec,
        signal: SignalSpec,
        index: usize,
        p: &mut Progress,
    ) -> Result<Reached> {
        if p.receipts.get(index).is_some_and(Option::is_some) {
            return Ok(Reached::Ready);
        }
        let inbox = self.log.signals(claim.id).await?;
        let receipt = match untaken(&inbox, signal.name, p) {
            Some(kept) => Receipt {
                sender: Some(kept.sender.clone()),
                payload: Some(kept.payload.clone()),
            },
            None => {
                let until_ms = match p.waiting {
                    Some((at, until)) if at == index => until,
                    _ => signal.wait_ms.map(|ms| now_ms().saturating_add(ms)),
                };
                if until_ms.is_none_or(|until| now_ms() < until) {
                    return self
                        .wait(claim, spec, signal.name, index, until_ms, p)
                        .await
                        .map(Reached::Parked);
                }
                Receipt {
                    sender: None,
                    payload: None,
                }
            }
        };
        self.take(claim, index, signal.name.to_owned(), receipt, p)
            .await
    }

    /// Records what signal (or child) step `index` runs with, before it runs
    /// ([`Transition::SignalReceived`] of `signal`), so that a step run again after a
    /// crash sees the same.
    pub(in crate::saga) async fn take(
        &self,
        claim: &Claim,
        index: usize,
        signal: String,
        receipt: Receipt,
        p: &mut Progress,
    ) -> Result<Reached> {
        self.write(
            claim,
            &Transition::SignalReceived {
                index,
                signal,
                sender: receipt.sender.clone(),
                payload: receipt.payload.clone(),
            },
            SagaState::Running,
        )
        .await?;
        p.receipts[index] = Some(receipt);
        p.waiting = None;
        Ok(Reached::Ready)
    }

    /// Records that the saga waits at signal step `index` and lets it go. A signal sent
    /// between the inbox read and this write found the saga still leased to this runner
    /// and handed nothing over: the inbox is read again after the write, and such a
    /// signal is sent again (kept once) to hand the saga over.
    pub(in crate::saga) async fn wait(
        &self,
        claim: &Claim,
        spec: &StepSpec,
        name: &str,
        index: usize,
        until_ms: Option<u64>,
        p: &Progress,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        let transition = Transition::Waiting {
            index,
            signal: name.to_owned(),
            until_ms,
        };
        let until = until_ms.unwrap_or(NO_LIMIT_MS);
        self.park(claim, transition, waiting_owner(name), until)
            .await?;
        tracing::info!(
            step = spec.name,
            signal = name,
            ?until_ms,
            "saga waits for a signal"
        );
        let inbox = self.log.signals(claim.id).await?;
        if let Some(kept) = untaken(&inbox, name, p) {
            self.log.send_signal(kept).await?;
            self.nudge.notify_one();
        }
        Ok(SagaOutcome::Waiting {
            saga_id: claim.id,
            step: spec.name.to_owned(),
            signal: name.to_owned(),
            until_ms,
        })
    }
}
/// The first signal named `name` in `inbox` whose sender no step of the saga took yet.
fn untaken<'a>(inbox: &'a [SignalRecord], name: &str, p: &Progress) -> Option<&'a SignalRecord> {
    inbox.iter().find(|s| {
        s.name == name
            && !p
                .receipts
                .iter()
                .flatten()
                .any(|r| r.sender.as_deref() == Some(s.sender.as_str()))
    })
}
