//! Upcasting: upgrading a stored event's payload from the schema version it was stored
//! under to the version the code now reads, one version at a time (v1 → v2 → v3), as in
//! Axon's upcaster chains and Greg Young's "Versioning in an Event Sourced System".

use std::collections::HashMap;

use crate::error::{Error, Result};

/// One step of an upgrade: turns the payload of event `event` at schema version
/// `from_version` into its payload at `from_version + 1`.
pub type Upcaster = fn(serde_json::Value) -> Result<serde_json::Value>;

/// The registered upcasters, by event name and the version each upgrades from.
///
/// ```
/// use flext::event_store::Upcasters;
/// use serde_json::json;
///
/// // v1 had `amount` in whole euros; v2 has `amount_cents`; v3 adds `currency`.
/// let upcasters = Upcasters::new()
///     .register("account.deposited", 1, |mut v| {
///         let euros = v["amount"].as_u64().unwrap_or(0);
///         v["amount_cents"] = json!(euros * 100);
///         Ok(v)
///     })
///     .register("account.deposited", 2, |mut v| {
///         v["currency"] = json!("EUR");
///         Ok(v)
///     });
/// let now = upcasters.upcast("account.deposited", 1, 3, json!({ "amount": 5 })).unwrap();
/// assert_eq!(now, json!({ "amount": 5, "amount_cents": 500, "currency": "EUR" }));
///
/// let missing = upcasters.upcast("account.withdrawn", 1, 2, json!({})).unwrap_err();
/// assert_eq!(missing.code(), flext::codes::EVENT_NO_UPCASTER);
/// ```
#[derive(Default, Clone)]
pub struct Upcasters {
    steps: HashMap<(String, u32), Upcaster>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps: Vec<_> = self.steps.keys().collect();
        steps.sort();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `upcast` for event `event` stored under `from_version`; a later
    /// registration for the same event and version replaces it.
    pub fn register(mut self, event: &str, from_version: u32, upcast: Upcaster) -> Self {
        self.steps.insert((event.to_owned(), from_version), upcast);
        self
    }

    /// Whether no upcaster is registered.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// `payload`, stored as event `event` under schema `version`, upgraded to `target`
    /// through each registered step in turn; unchanged when `version == target`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`](crate::ErrorKind::Internal):
    /// - `flext.event.no_upcaster` when a step from some version on the way is missing
    ///   (the message names the event and that version);
    /// - `flext.event.version_too_new` when `version` is above `target` (the event was
    ///   stored by a newer program);
    /// - the error an upcaster returns, as it returned it.
    pub fn upcast(
        &self,
        event: &str,
        version: u32,
        target: u32,
        mut payload: serde_json::Value,
    ) -> Result<serde_json::Value> {
        if version > target {
            return Err(Error::internal(
                crate::codes::EVENT_VERSION_TOO_NEW,
                format!(
                    "event `{}` was stored under schema version {version}, newer than version {target} that this program reads: deploy the newer code",
                    crate::input::echo(event)
                ),
            ));
        }
        for from in version..target {
            let step = self
                .steps
                .get(&(event.to_owned(), from))
                .ok_or_else(|| {
                    Error::internal(
                        crate::codes::EVENT_NO_UPCASTER,
                        format!(
                            "event `{}` was stored under schema version {from} and this program reads version {target}, but no upcaster from version {from} is registered: register one with `Upcasters::register(\"{}\", {from}, ..)`",
                            crate::input::echo(event),
                            crate::input::echo(event)
                        ),
                    )
                })?;
            payload = step(payload)?;
        }
        Ok(payload)
    }
}
