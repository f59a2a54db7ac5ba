//! The user-registration domain service of the example, shared with
//! `tests/test_user_registration.rs` so that the test checks exactly what the example
//! runs.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{Datelike, NaiveDate};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

/// One line of the input file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub profile: Profile,
    #[serde(default)]
    pub notifications: Notifications,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    pub email: bool,
    pub sms: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            email: true,
            sms: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: Option<NaiveDate>,
    pub active: bool,
}

/// In-memory users, keyed by lower-cased email. Ids are sequential so that the example's
/// output is reproducible.
#[derive(Default)]
pub struct UserRepository {
    users: Mutex<HashMap<String, User>>,
    next_id: Mutex<u32>,
}

impl UserRepository {
    pub async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self.lock()?.get(&email.to_lowercase()).cloned())
    }

    pub fn insert(&self, email: &str) -> Result<User> {
        let mut next = self
            .next_id
            .lock()
            .map_err(|_| Error::internal("users.poisoned", "user repository lock poisoned"))?;
        *next += 1;
        let user = User {
            id: format!("user-{:04}", *next),
            email: email.to_lowercase(),
            first_name: String::new(),
            last_name: String::new(),
            date_of_birth: None,
            active: false,
        };
        let mut users = self.lock()?;
        if users.contains_key(&user.email) {
            return Err(Error::conflict(
                "user.email.taken",
                format!("{} is already registered", user.email),
            ));
        }
        users.insert(user.email.clone(), user.clone());
        Ok(user)
    }

    pub fn save(&self, user: &User) -> Result<()> {
        self.lock()?.insert(user.email.clone(), user.clone());
        Ok(())
    }

    pub fn remove(&self, email: &str) -> Result<Option<User>> {
        Ok(self.lock()?.remove(&email.to_lowercase()))
    }

    pub fn count(&self) -> usize {
        self.users.lock().map(|u| u.len()).unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, User>>> {
        self.users
            .lock()
            .map_err(|_| Error::internal("users.poisoned", "user repository lock poisoned"))
    }
}

/// An outbox of sent mail; mailboxes listed as undeliverable bounce, the way an SMTP
/// server answers `550 mailbox unavailable`.
#[derive(Default)]
pub struct Mailer {
    pub undeliverable: Vec<String>,
    pub sent: Mutex<Vec<String>>,
}

impl Mailer {
    pub async fn send_welcome(&self, user: &User) -> Result<()> {
        if self.undeliverable.contains(&user.email) {
            return Err(Error::infrastructure(
                "mail.undeliverable",
                format!(
                    "welcome mail to {} bounced: 550 mailbox unavailable",
                    user.email
                ),
            ));
        }
        self.sent
            .lock()
            .map_err(|_| Error::internal("mail.poisoned", "mailer lock poisoned"))?
            .push(user.email.clone());
        Ok(())
    }
}

/// A published domain event, enriched with the ids of the context it was published in.
#[derive(Debug, Clone, Serialize)]
pub struct UserRegistered {
    pub event_id: flext::Uuid,
    pub correlation_id: flext::Uuid,
    pub causation_id: Option<flext::Uuid>,
    pub user_id: String,
    pub email: String,
    pub notifications: Notifications,
}

#[derive(Default)]
pub struct EventLog {
    pub events: Mutex<Vec<UserRegistered>>,
}

const BLOCKED_DOMAINS: [&str; 3] = ["temp-mail.org", "10minutemail.com", "mailinator.com"];
const SPECIAL: &str = "!@#$%^&*()_+-=";
const MINIMUM_AGE_YEARS: i32 = 13;

/// The service: the registration request plus the dependencies it uses.
pub struct RegisterUser<'a> {
    pub request: Registration,
    pub today: NaiveDate,
    pub users: &'a UserRepository,
    pub mailer: &'a Mailer,
    pub events: &'a EventLog,
}

impl<'a> RegisterUser<'a> {
    pub fn new(request: Registration, today: NaiveDate, registry: &'a Registry) -> Self {
        RegisterUser {
            request,
            today,
            users: &registry.users,
            mailer: &registry.mailer,
            events: &registry.events,
        }
    }
}

#[domain_service]
impl RegisterUser<'_> {
    #[business_rule(code = "user.email.format")]
    fn email_has_valid_format(&self) -> RuleResult {
        ensure!(
            is_valid_email(&self.request.email),
            "`{}` is not a valid email address",
            self.request.email
        )
        .map_err(|v| v.on("email"))
    }

    #[business_rule(code = "user.email.domain_blocked", after = email_has_valid_format)]
    fn email_domain_allowed(&self) -> RuleResult {
        let domain = self
            .request
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase());
        let blocked = domain
            .as_deref()
            .is_some_and(|d| BLOCKED_DOMAINS.contains(&d));
        ensure!(!blocked, "disposable email domains are not allowed").map_err(|v| v.on("email"))
    }

    #[business_rule(code = "user.password.policy")]
    fn password_meets_policy(&self) -> std::result::Result<(), Vec<RuleViolation>> {
        let p = &self.request.password;
        let mut violations = Vec::new();
        if p.chars().count() < 8 {
            violations.push(
                RuleViolation::new("must be at least 8 characters")
                    .with_code("user.password.length")
                    .on("password"),
            );
        }
        let missing: Vec<&str> = [
            (p.chars().any(char::is_uppercase), "an uppercase letter"),
            (p.chars().any(char::is_lowercase), "a lowercase letter"),
            (p.chars().any(|c| c.is_ascii_digit()), "a digit"),
            (
                p.chars().any(|c| SPECIAL.contains(c)),
                "a special character",
            ),
        ]
        .into_iter()
        .filter_map(|(present, what)| (!present).then_some(what))
        .collect();
        if !missing.is_empty() {
            violations.push(
                RuleViolation::new(format!("must contain {}", missing.join(", ")))
                    .with_code("user.password.characters")
                    .on("password"),
            );
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    #[business_rule(code = "user.profile.required")]
    fn profile_is_complete(&self) -> std::result::Result<(), Vec<RuleViolation>> {
        let p = &self.request.profile;
        let violations: Vec<_> = [
            ("profile.first_name", &p.first_name),
            ("profile.last_name", &p.last_name),
            ("profile.date_of_birth", &p.date_of_birth),
        ]
        .into_iter()
        .filter(|(_, value)| value.as_deref().is_none_or(|v| v.trim().is_empty()))
        .map(|(field, _)| RuleViolation::new("is required").on(field))
        .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    #[business_rule(code = "user.age.minimum", after = profile_is_complete)]
    fn old_enough(&self) -> RuleResult {
        // A missing date is reported by `profile_is_complete`.
        let Some(dob) = self
            .request
            .profile
            .date_of_birth
            .as_deref()
            .filter(|d| !d.trim().is_empty())
        else {
            return Ok(());
        };
        let dob = NaiveDate::parse_from_str(dob, "%Y-%m-%d").map_err(|_| {
            RuleViolation::new(format!("`{dob}` is not a date in YYYY-MM-DD form"))
                .with_code("user.profile.date_of_birth")
                .on("profile.date_of_birth")
        })?;
        ensure!(
            dob <= self.today,
            code = "user.profile.date_of_birth",
            "{dob} is in the future"
        )
        .map_err(|v| v.on("profile.date_of_birth"))?;
        let age = years_between(dob, self.today);
        ensure!(
            age >= MINIMUM_AGE_YEARS,
            "must be at least {MINIMUM_AGE_YEARS} years old, is {age}"
        )
        .map_err(|v| v.on("profile.date_of_birth"))
    }

    /// Needs the repository, so it is async and may abort with an infrastructure error.
    #[business_rule(code = "user.email.taken")]
    async fn email_is_unique(&self) -> Result<()> {
        match self.users.find_by_email(&self.request.email).await? {
            Some(existing) => Err(RuleViolation::new(format!(
                "{} is already registered as {}",
                self.request.email, existing.id
            ))
            .on("email")
            .into()),
            None => Ok(()),
        }
    }

    /// The documents' `map_error(handle_failure)`, as an undo: when a later step fails
    /// (a bounced welcome mail, say), the account is removed again, so a retry of the
    /// same registration can succeed. The account travels in the step's output, so
    /// nothing about one run is kept on the service.
    #[step(undo = remove_account)]
    fn create_account(&self) -> Result<User> {
        self.users.insert(&self.request.email)
    }

    fn remove_account(&self, created: &User) -> Result<()> {
        self.users.remove(&created.email)?;
        tracing::info!(user_id = %created.id, "account rolled back");
        Ok(())
    }

    #[step]
    fn set_up_profile(&self, created: &User) -> Result<User> {
        let mut user = created.clone();
        let p = &self.request.profile;
        user.first_name = p.first_name.clone().unwrap_or_default();
        user.last_name = p.last_name.clone().unwrap_or_default();
        user.date_of_birth = p
            .date_of_birth
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        self.users.save(&user)?;
        Ok(user)
    }

    #[step]
    async fn send_welcome(&self, user: User) -> Result<User> {
        if self.request.notifications.email {
            self.mailer.send_welcome(&user).await?;
        }
        Ok(user)
    }

    #[step]
    fn activate(&self, mut user: User) -> Result<User> {
        user.active = true;
        self.users.save(&user)?;
        Ok(user)
    }

    #[tap]
    fn publish_registered(&self, user: &User, ctx: &Context) {
        let event_ctx = ctx.child();
        let event = UserRegistered {
            event_id: event_ctx.id(),
            correlation_id: event_ctx.correlation_id(),
            causation_id: event_ctx.causation_id(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            notifications: self.request.notifications.clone(),
        };
        match self.events.events.lock() {
            Ok(mut events) => events.push(event),
            // The documents' rule: a failed publication is logged, never fails the
            // registration.
            Err(_) => {
                tracing::warn!(user_id = %user.id, "event log poisoned; UserRegistered not published")
            }
        }
    }

    #[postcondition(code = "user.active")]
    fn account_is_active(&self, user: &User) -> RuleResult {
        ensure!(user.active, "a registered account must be active")
    }
}

fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c));
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains("..");
    let tld_ok = tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic());
    local_ok && host_ok && tld_ok
}

fn years_between(from: NaiveDate, to: NaiveDate) -> i32 {
    let mut years = to.year() - from.year();
    if (to.month(), to.day()) < (from.month(), from.day()) {
        years -= 1;
    }
    years
}

/// Everything one run of the batch needs.
#[derive(Default)]
pub struct Registry {
    pub users: UserRepository,
    pub mailer: Mailer,
    pub events: EventLog,
}

/// Registers every record of `text` (JSON Lines) in order and returns one report line per
/// record: the created user, every violation with its code, or why the record is
/// malformed.
pub async fn register_all(text: &str, today: NaiveDate, registry: &Registry) -> Vec<String> {
    let mut lines = Vec::new();
    for (line, record) in flext::input::json_lines::<Registration>(text) {
        let report = match record {
            Err(e) => match e.violations() {
                [v] => format!("line {line:>2}: malformed record: {v}"),
                _ => format!("line {line:>2}: malformed record: {e}"),
            },
            Ok(request) => {
                let email = request.email.clone();
                match RegisterUser::new(request, today, registry)
                    .execute(&Context::new())
                    .await
                {
                    Ok(user) => format!("line {line:>2}: created {} <{}>", user.id, user.email),
                    Err(e) if e.violations().is_empty() => {
                        format!("line {line:>2}: failed <{email}>: {e}")
                    }
                    Err(e) => {
                        let all: Vec<String> =
                            e.violations().iter().map(ToString::to_string).collect();
                        format!("line {line:>2}: rejected <{email}>: {}", all.join("; "))
                    }
                }
            }
        };
        lines.push(report);
    }
    lines
}
