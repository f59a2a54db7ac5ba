//! CQRS user management: the source documents' user system on the flext bus.
//!
//! Commands create and update users in a write model; each change publishes an event
//! (`UserCreated`, `UserUpdated`) that a read-model projection turns into per-department
//! statistics, and that an audit log records; queries read the projection. The bus runs
//! a middleware stack of tracing, authorization (commands need the `admin` role),
//! validation (the commands' business rules) and a timeout. At the end the registry
//! report, the documents' handler health report, is printed as JSON.
//!
//! ```text
//! cargo run --example cqrs_users
//! RUST_LOG=info cargo run --example cqrs_users   # with the dispatch spans
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use flext::middleware::{Authorize, Timeout, Tracing, Validation};
use flext::prelude::*;
use flext::{MessageKind, PublishReport};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ messages

#[command(output = String, validate)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    email: String,
    department: String,
}

#[business_rules]
impl CreateUser {
    #[business_rule(code = "user.name.required")]
    fn name_present(&self) -> RuleResult {
        ensure!(!self.name.trim().is_empty(), "a name is required").map_err(|v| v.on("name"))
    }

    #[business_rule(code = "user.email.format")]
    fn email_valid(&self) -> RuleResult {
        let ok = self
            .email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        ensure!(ok, "`{}` is not an email address", self.email).map_err(|v| v.on("email"))
    }

    #[business_rule(code = "user.department.required")]
    fn department_present(&self) -> RuleResult {
        ensure!(
            !self.department.trim().is_empty(),
            "a department is required"
        )
        .map_err(|v| v.on("department"))
    }
}

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    user_id: String,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

#[query(output = Option<UserView>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GetUser {
    user_id: String,
}

#[query(output = BTreeMap<String, DepartmentStats>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GetDepartmentStats;

#[event(name = "user.created")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    name: String,
    email: String,
    department: String,
}

#[event(name = "user.updated")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserUpdated {
    user_id: String,
    before: UserView,
    after: UserView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserView {
    user_id: String,
    name: String,
    department: String,
    active: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct DepartmentStats {
    user_count: u32,
    active_users: u32,
}

// ------------------------------------------------------------------ write side

#[derive(Default)]
struct UserStore {
    users: Mutex<HashMap<String, UserView>>,
    emails: Mutex<HashMap<String, String>>,
}

fn poisoned() -> Error {
    Error::internal("store.poisoned", "a store lock was poisoned")
}

#[command_handler]
async fn create_user(
    cmd: CreateUser,
    ctx: &Context,
    bus: &Bus,
    store: State<UserStore>,
) -> Result<String> {
    let email = cmd.email.to_lowercase();
    let user_id = {
        let mut emails = store.emails.lock().map_err(|_| poisoned())?;
        if let Some(existing) = emails.get(&email) {
            return Err(Error::conflict(
                "user.email.taken",
                format!("{email} is already registered as {existing}"),
            ));
        }
        let user_id = format!("u-{:03}", emails.len() + 1);
        emails.insert(email.clone(), user_id.clone());
        user_id
    };
    let view = UserView {
        user_id: user_id.clone(),
        name: cmd.name.clone(),
        department: cmd.department.clone(),
        active: true,
    };
    store
        .users
        .lock()
        .map_err(|_| poisoned())?
        .insert(user_id.clone(), view);
    let event = UserCreated {
        user_id: user_id.clone(),
        name: cmd.name,
        email,
        department: cmd.department,
    };
    report_failures(bus.publish(event, ctx).await);
    Ok(user_id)
}

#[command_handler]
async fn update_user(
    cmd: UpdateUser,
    ctx: &Context,
    bus: &Bus,
    store: State<UserStore>,
) -> Result<()> {
    let (before, after) = {
        let mut users = store.users.lock().map_err(|_| poisoned())?;
        let user = users.get_mut(&cmd.user_id).ok_or_else(|| {
            Error::not_found("user.not_found", format!("no user {}", cmd.user_id))
        })?;
        let before = user.clone();
        if let Some(d) = cmd.department {
            user.department = d;
        }
        if let Some(a) = cmd.active {
            user.active = a;
        }
        (before, user.clone())
    };
    if before != after {
        let event = UserUpdated {
            user_id: cmd.user_id,
            before,
            after,
        };
        report_failures(bus.publish(event, ctx).await);
    }
    Ok(())
}

fn report_failures(report: PublishReport) {
    for (handler, error) in report.failures() {
        println!(
            "  ! subscriber {handler} of {} failed: {error}",
            report.event
        );
    }
}

// ------------------------------------------------------------------ read side

/// The read model: user views and per-department statistics, built from events only.
#[derive(Default)]
struct UserProjection {
    users: Mutex<HashMap<String, UserView>>,
    departments: Mutex<BTreeMap<String, DepartmentStats>>,
}

#[handlers]
impl UserProjection {
    #[event_handler]
    fn on_user_created(&self, e: UserCreated) -> Result<()> {
        let view = UserView {
            user_id: e.user_id.clone(),
            name: e.name,
            department: e.department.clone(),
            active: true,
        };
        self.users
            .lock()
            .map_err(|_| poisoned())?
            .insert(e.user_id, view);
        let mut departments = self.departments.lock().map_err(|_| poisoned())?;
        let stats = departments.entry(e.department).or_default();
        stats.user_count += 1;
        stats.active_users += 1;
        Ok(())
    }

    #[event_handler]
    fn on_user_updated(&self, e: UserUpdated) -> Result<()> {
        let mut departments = self.departments.lock().map_err(|_| poisoned())?;
        let old = departments.entry(e.before.department.clone()).or_default();
        old.user_count -= 1;
        old.active_users -= u32::from(e.before.active);
        let new = departments.entry(e.after.department.clone()).or_default();
        new.user_count += 1;
        new.active_users += u32::from(e.after.active);
        departments.retain(|_, s| s.user_count > 0);
        self.users
            .lock()
            .map_err(|_| poisoned())?
            .insert(e.user_id, e.after);
        Ok(())
    }

    #[query_handler]
    fn get_user(&self, q: GetUser) -> Result<Option<UserView>> {
        Ok(self
            .users
            .lock()
            .map_err(|_| poisoned())?
            .get(&q.user_id)
            .cloned())
    }

    #[query_handler]
    fn department_stats(&self, _: GetDepartmentStats) -> Result<BTreeMap<String, DepartmentStats>> {
        Ok(self.departments.lock().map_err(|_| poisoned())?.clone())
    }
}

/// A second subscriber of the same events.
#[derive(Default)]
struct AuditLog(Mutex<Vec<String>>);

#[event_handler]
fn audit_created(e: UserCreated, ctx: &Context, log: State<AuditLog>) -> Result<()> {
    let line = format!(
        "created {} (correlation {})",
        e.user_id,
        ctx.correlation_id()
    );
    log.0.lock().map_err(|_| poisoned())?.push(line);
    Ok(())
}

// ------------------------------------------------------------------ the scenario

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let bus = Bus::builder()
        .state(UserStore::default())
        .state(UserProjection::default())
        .state(AuditLog::default())
        .middleware(Tracing)
        .middleware(Authorize::new(|principal, dispatch| {
            dispatch.kind() != MessageKind::Command
                || principal.is_some_and(|p| p.has_role("admin"))
        }))
        .middleware(Validation)
        .middleware(Timeout::default_after(Duration::from_secs(2)))
        .build()?;

    let admin = Context::new().with_principal(Principal::new("alice").with_role("admin"));
    let viewer = Context::new().with_principal(Principal::new("bob").with_role("viewer"));

    println!("== commands");
    let people = [
        ("Ada Lovelace", "ada@example.com", "Engineering"),
        ("Grace Hopper", "grace@example.com", "Engineering"),
        ("Edsger Dijkstra", "edsger@example.com", "Research"),
        ("Barbara Liskov", "barbara@example.com", "Research"),
        ("Ken Thompson", "ken@example.com", "Operations"),
        ("", "not-an-email", "Sales"),
        ("Ada Again", "ADA@example.com", "Sales"),
    ];
    let mut ids = Vec::new();
    for (name, email, department) in people {
        let cmd = CreateUser {
            name: name.into(),
            email: email.into(),
            department: department.into(),
        };
        match bus.send(cmd, &admin).await {
            Ok(id) => {
                println!("created {id}: {name} <{email}> in {department}");
                ids.push(id);
            }
            Err(e) => println!("rejected <{email}>: {e}"),
        }
    }
    let denied = CreateUser {
        name: "Mallory".into(),
        email: "mallory@example.com".into(),
        department: "Sales".into(),
    };
    if let Err(e) = bus.send(denied, &viewer).await {
        println!("rejected <mallory@example.com>: {e}");
    }

    let moved = UpdateUser {
        user_id: ids[1].clone(),
        department: Some("Research".into()),
        active: None,
    };
    bus.send(moved, &admin).await?;
    println!("moved {} to Research", ids[1]);
    bus.send_json(
        "UpdateUser",
        &format!(r#"{{"user_id": "{}", "active": false}}"#, ids[4]),
        &admin,
    )
    .await?;
    println!("deactivated {} (through send_json)", ids[4]);
    if let Err(e) = bus
        .send_json(
            "UpdateUser",
            r#"{"user_id": "u-001", "active": "no"}"#,
            &admin,
        )
        .await
    {
        println!("rejected JSON: {e}");
    }

    println!("\n== queries (read model)");
    let grace = bus
        .query(
            GetUser {
                user_id: ids[1].clone(),
            },
            &viewer,
        )
        .await?;
    println!("{}: {:?}", ids[1], grace);
    let stats = bus.query(GetDepartmentStats, &viewer).await?;
    println!("{:<12} {:>5} {:>7}", "department", "users", "active");
    for (department, s) in &stats {
        println!("{department:<12} {:>5} {:>7}", s.user_count, s.active_users);
    }

    println!("\n== registry report");
    println!("{}", serde_json::to_string_pretty(&bus.report())?);
    Ok(())
}
