//! Keeping a saga's lease while a long step runs.

use std::time::Duration;

use uuid::Uuid;

use super::SagaRunner;

impl SagaRunner {
    /// Runs `work` while renewing saga `id`'s lease every third of its duration, so that
    /// a step longer than the lease keeps its saga. A renewal that fails (the lease was
    /// taken over) stops the heartbeat; the next write then fails with
    /// `flext.saga.lease_lost` and this runner stops driving the saga.
    pub(super) async fn with_heartbeat<T>(
        &self,
        id: Uuid,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        if self.lease.duration_ms < 3 {
            // No lease worth keeping (tests use zero): nothing to renew.
            return work.await;
        }
        let period = Duration::from_millis(self.lease.duration_ms / 3);
        let heartbeat = async {
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = self.log.renew(id, &self.lease).await {
                    tracing::warn!(saga_id = %id, error = %e, "lease renewal failed");
                    return std::future::pending::<std::convert::Infallible>().await;
                }
            }
        };
        let work = std::pin::pin!(work);
        let heartbeat = std::pin::pin!(heartbeat);
        match futures_util::future::select(work, heartbeat).await {
            futures_util::future::Either::Left((out, _)) => out,
            futures_util::future::Either::Right((never, _)) => match never {},
        }
    }
}
