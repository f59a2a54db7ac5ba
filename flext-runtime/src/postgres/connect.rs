//! How a [`PgDatabase`] connects: [`PgDatabaseBuilder`] (pool size, connect and wait
//! timeouts, retries while the server is not up yet, TLS through rustls), and the one
//! classification of PostgreSQL's errors into a `flext.store.*` code per cause, naming
//! the host, port, database and user, never the password.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, Pool, PoolError, Runtime, TimeoutType};
use tokio_postgres::NoTls;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgDatabase;
use crate::error::{Error, Result};

/// Where a database is, for messages: `host:port/database as user`, never the password.
#[derive(Clone)]
pub(crate) struct Target(Arc<str>);

impl Target {
    pub(crate) fn of(config: &tokio_postgres::Config) -> Target {
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(host, port)| match host {
                Host::Tcp(h) => format!("{h}:{port}"),
                Host::Unix(p) => format!("{}:{port}", p.display()),
            })
            .collect();
        let hosts = if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        };
        let db = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        let user = config.get_user().unwrap_or("(default user)");
        Target(crate::input::echo(&format!("{hosts}/{db} as {user}")).into())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// PostgreSQL's error as a flext error: one `flext.store.*` code per cause (SQLSTATE for
/// the server's errors, the I/O error's kind for the connection's), a message naming
/// `target` when known and what to do, and the driver's error as the source.
pub(crate) fn classify(e: tokio_postgres::Error, target: Option<&Target>) -> Error {
    use crate::codes::*;
    let at = target.map_or_else(String::new, |t| format!(" ({t})"));
    let (code, what) = match e.as_db_error().map(|d| d.code().code()) {
        Some("28P01" | "28000") => (
            STORE_AUTH_FAILED,
            "the server refused the credentials: check the user and password".to_owned(),
        ),
        Some("3D000") => (
            STORE_NO_DATABASE,
            "the database does not exist: create it, or check the URL's database name".to_owned(),
        ),
        Some("57P03" | "57P01" | "57P02") => (
            STORE_STARTING_UP,
            "the server is starting up, shutting down or recovering: retry shortly".to_owned(),
        ),
        Some("53300") => (
            STORE_UNAVAILABLE,
            "the server has no connection slot free: lower the pool sizes or raise max_connections"
                .to_owned(),
        ),
        Some("53100") => (STORE_DISK_FULL, "the server's disk is full".to_owned()),
        Some("25006") => (
            STORE_READ_ONLY,
            "the server is read-only (a standby?)".to_owned(),
        ),
        Some(_) => (STORE_FAILED, "the statement failed".to_owned()),
        None => match io_kind(&e) {
            Some(std::io::ErrorKind::ConnectionRefused) => (
                STORE_UNAVAILABLE,
                "the connection was refused: is the server running and listening there?".to_owned(),
            ),
            Some(_) => (STORE_UNAVAILABLE, "the connection failed".to_owned()),
            None if e.is_closed() => (STORE_UNAVAILABLE, "the connection is closed".to_owned()),
            None if e.to_string().contains("timed out") => (
                STORE_UNAVAILABLE,
                "connecting timed out: is the host reachable?".to_owned(),
            ),
            None => (STORE_FAILED, "the call failed".to_owned()),
        },
    };
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The driver's message, then its causes ("error serializing parameter 0:
            // ..."), which say what went wrong.
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail.push_str(&format!(": {s}"));
                source = s.source();
            }
            detail
        }
    };
    let message = format!("postgres{at}: {what}: {}", crate::input::echo(&detail));
    Error::infrastructure(code, message).with_source(e)
}

fn io_kind(e: &tokio_postgres::Error) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// A pool's error, classified, naming `target`.
pub(crate) fn pool_error(e: PoolError, target: &Target, wait: Option<Duration>) -> Error {
    match e {
        PoolError::Backend(e) => classify(e, Some(target)),
        PoolError::Timeout(TimeoutType::Wait) => Error::infrastructure(
            crate::codes::STORE_UNAVAILABLE,
            format!(
                "postgres ({target}): no pooled connection came free within {} ms: raise \
                 PgDatabaseBuilder::max_connections, or find what holds them",
                wait.map_or(0, |w| w.as_millis())
            ),
        ),
        PoolError::Timeout(_) => Error::infrastructure(
            crate::codes::STORE_UNAVAILABLE,
            format!("postgres ({target}): connecting timed out: is the host reachable?"),
        ),
        other => Error::infrastructure(
            crate::codes::STORE_FAILED,
            format!("postgres ({target}): no connection from the pool: {other}"),
        ),
    }
}

/// `url` as a connection configuration; its password never appears in the error.
pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    url.parse().map_err(|e| {
        Error::validation(
            crate::codes::STORE_BAD_CONFIG,
            format!(
                "{} is not a PostgreSQL URL: {e}",
                crate::input::echo(&crate::input::redact_url(url))
            ),
        )
    })
}

#[derive(Clone)]
pub(crate) enum Tls {
    /// TLS when the URL asks for it (`sslmode=require`), verified against the Mozilla
    /// roots (`webpki-roots`); none otherwise.
    Auto,
    /// TLS verified against these root certificates.
    Roots(Vec<rustls::pki_types::CertificateDer<'static>>),
    /// TLS with the caller's configuration.
    Config(Arc<rustls::ClientConfig>),
}

/// How [`PgDatabase`] connects; from [`PgDatabase::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use flext::postgres::PgDatabase;
/// # async fn run() -> flext::Result<()> {
/// let db = PgDatabase::builder("postgres://app@db.internal/payments?sslmode=require")
///     .max_connections(32)
///     .connect_timeout(Duration::from_secs(5))
///     .wait_timeout(Duration::from_secs(10))
///     // The service starts before its database: keep trying for up to a minute.
///     .retry_connect_for(Duration::from_secs(60))
///     .tls_root_certificates_pem(&std::fs::read("/etc/ssl/db-ca.pem").unwrap())
///     .connect()
///     .await?;
/// # let _ = db; Ok(()) }
/// ```
pub struct PgDatabaseBuilder {
    config: Result<tokio_postgres::Config>,
    max_connections: usize,
    connect_timeout: Duration,
    wait_timeout: Duration,
    retry_for: Duration,
    tls: Result<Tls>,
}

impl fmt::Debug for PgDatabaseBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgDatabaseBuilder")
            .field(
                "target",
                &self.config.as_ref().map(|c| Target::of(c).to_string()),
            )
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("wait_timeout", &self.wait_timeout)
            .field("retry_for", &self.retry_for)
            .finish_non_exhaustive()
    }
}

impl PgDatabase {
    /// A builder connecting to `url` (`postgres://user:password@host:port/db`, with
    /// libpq's `sslmode=disable|prefer|require` understood). Defaults: 16 connections,
    /// a connect timeout of 10 s, a wait for a free connection of 30 s, no retry at
    /// start, TLS only when the URL requires it (verified against the Mozilla roots).
    pub fn builder(url: &str) -> PgDatabaseBuilder {
        PgDatabaseBuilder {
            config: parse_url(url),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(30),
            retry_for: Duration::ZERO,
            tls: Ok(Tls::Auto),
        }
    }

    /// A database on a pool the caller configured (its size, timeouts, TLS, hooks);
    /// creates or upgrades flext's tables.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn from_pool(pool: Pool) -> Result<Self> {
        let db = PgDatabase {
            pool,
            target: Target(Arc::from("the given pool")),
            wait_timeout: None,
        };
        db.migrate().await?;
        Ok(db)
    }
}

impl PgDatabaseBuilder {
    /// The most connections the pool opens (default 16).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long opening one connection may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call waits for a free pooled connection (default 30 s).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Keeps trying to connect for up to `period` (with backoff from 100 ms to 5 s)
    /// while the server refuses connections, cannot be reached or is starting up, so
    /// that a service can start before its database (default: no retry). Wrong
    /// credentials, a missing database and a malformed URL fail at once.
    pub fn retry_connect_for(mut self, period: Duration) -> Self {
        self.retry_for = period;
        self
    }

    /// Connects over TLS, verifying the server's certificate against the root
    /// certificates in `pem` (a self-signed server certificate is its own root). The
    /// server name checked is the URL's host.
    pub fn tls_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        use rustls::pki_types::pem::PemObject;
        let roots: std::result::Result<Vec<_>, _> =
            rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect();
        self.tls = match roots {
            Ok(roots) if !roots.is_empty() => Ok(Tls::Roots(roots)),
            Ok(_) => Err(bad_tls("the PEM text holds no certificate")),
            Err(e) => Err(bad_tls(&format!("the PEM text does not parse: {e}"))),
        };
        self
    }

    /// Connects over TLS with the caller's rustls configuration (client certificates,
    /// other roots, another crypto provider).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Ok(Tls::Config(config));
        self
    }

    /// Connects, then creates or upgrades flext's tables (once, under an advisory lock,
    /// when several processes start at once).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.store.bad_config`,
    /// for a URL that does not parse or TLS settings that do not; otherwise
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure), naming host,
    /// port, database and user: `flext.store.unavailable` (refused, unreachable, timed
    /// out), `flext.store.starting_up`, `flext.store.auth_failed`,
    /// `flext.store.no_database`, or `flext.store.failed` when the schema cannot be
    /// created. With [`retry_connect_for`](Self::retry_connect_for), the first two are
    /// retried until the period ends.
    pub async fn connect(self) -> Result<PgDatabase> {
        let mut config = self.config?;
        config.connect_timeout(self.connect_timeout);
        let target = Target::of(&config);
        let manager = match tls_for(&config, self.tls?)? {
            Some(tls) => Manager::new(config, tls),
            None => Manager::new(config, NoTls),
        };
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.wait_timeout))
            .create_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| {
                Error::validation(
                    crate::codes::STORE_BAD_CONFIG,
                    format!("postgres ({target}): the pool cannot be built: {e}"),
                )
            })?;
        let db = PgDatabase {
            pool,
            target: target.clone(),
            wait_timeout: Some(self.wait_timeout),
        };
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(100);
        loop {
            match db.migrate().await {
                Ok(()) => return Ok(db),
                Err(e)
                    if matches!(
                        e.code(),
                        crate::codes::STORE_UNAVAILABLE | crate::codes::STORE_STARTING_UP
                    ) && Instant::now() + backoff < deadline =>
                {
                    tracing::info!(target_db = %target, code = e.code(), retry_in_ms = backoff.as_millis() as u64, "the database is not up yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn bad_tls(why: &str) -> Error {
    Error::validation(
        crate::codes::STORE_BAD_CONFIG,
        format!("postgres TLS: {why}"),
    )
}

/// The TLS connector for `config`: the one given, or, when the URL requires TLS and
/// none was given, one verified against the Mozilla roots; `None` for plain TCP.
pub(crate) fn tls_for(
    config: &tokio_postgres::Config,
    tls: Tls,
) -> Result<Option<MakeRustlsConnect>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = |roots: rustls::RootCertStore| {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| bad_tls(&e.to_string()))
    };
    let config = match tls {
        Tls::Config(c) => (*c).clone(),
        Tls::Roots(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| bad_tls(&format!("a root certificate is not usable: {e}")))?;
            }
            client(roots)?
        }
        Tls::Auto if config.get_ssl_mode() == SslMode::Require => client(
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        )?,
        Tls::Auto => return Ok(None),
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

pub(crate) async fn connect_one(
    url: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>, Target)> {
    let config = parse_url(url)?;
    let target = Target::of(&config);
    let fail = |e| classify(e, Some(&target));
    let (client, task) = match tls_for(&config, Tls::Auto)? {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(fail)?;
            (
                client,
                tokio::spawn(async move {
                    let _ = connection.await;
                }),
            )
        }
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(fail)?;
            (
                client,
                tokio::spawn(async move {
                    let _ = connection.await;
                }),
            )
        }
    };
    Ok((client, task, target))
}
