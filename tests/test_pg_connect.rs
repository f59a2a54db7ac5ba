//! Connecting to PostgreSQL as a deployment does: each failure names its cause, the
//! host, port, database and user under one code, and never the password; a service
//! started before its database connects once the server is up; TLS with `sslmode=require`
//! against a self-signed certificate.

#![cfg(feature = "postgres")]

use std::time::Duration;

use flext::codes;
use flext::event_store::{EventStore, NewEvent, StreamId};
use flext::postgres::{PgDatabase, TestCluster};
use flext::prelude::*;

fn port_of(url: &str) -> u16 {
    let after = url.rsplit_once(':').unwrap().1;
    after.split('/').next().unwrap().parse().unwrap()
}

fn no_secret(err: &Error, secret: &str) {
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!format!("{err:?}").contains(secret), "{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        assert!(!s.to_string().contains(secret), "{s}");
        source = s.source();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_failure_names_its_cause_and_never_the_password() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let port = port_of(cluster.url());
    cluster.require_passwords().unwrap();
    let admin = PgDatabase::connect(cluster.url()).await.unwrap();
    admin
        .client()
        .await
        .unwrap()
        .batch_execute("CREATE ROLE app LOGIN SUPERUSER PASSWORD 'right-horse-battery'")
        .await
        .unwrap();

    // A wrong password.
    let url = format!("postgres://app:wrong-staple@127.0.0.1:{port}/postgres");
    let err = PgDatabase::connect(&url).await.unwrap_err();
    assert_eq!(err.code(), codes::STORE_AUTH_FAILED, "{err}");
    assert!(
        err.message()
            .contains(&format!("127.0.0.1:{port}/postgres as app")),
        "{err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver's error is kept"
    );
    no_secret(&err, "wrong-staple");

    // A database that does not exist.
    let url = format!("postgres://flext@127.0.0.1:{port}/no_such_db");
    let err = PgDatabase::connect(&url).await.unwrap_err();
    assert_eq!(err.code(), codes::STORE_NO_DATABASE, "{err}");
    assert!(err.message().contains("no_such_db"), "{err}");

    // Nothing listening: refused, naming host and port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:right-horse-battery@127.0.0.1:{closed}/postgres");
    let err = PgDatabase::connect(&url).await.unwrap_err();
    assert_eq!(err.code(), codes::STORE_UNAVAILABLE, "{err}");
    assert!(
        err.message().contains(&format!("127.0.0.1:{closed}")),
        "{err}"
    );
    assert!(err.message().contains("refused"), "{err}");
    no_secret(&err, "right-horse-battery");

    // A malformed URL: the password is hidden in the message.
    let err = PgDatabase::connect("postgres://app:hunter2@127.0.0.1:notaport/db")
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::STORE_BAD_CONFIG, "{err}");
    assert!(err.message().contains("app:***@"), "{err}");
    no_secret(&err, "hunter2");

    // The right password connects; neither the database nor its builder shows it.
    let url = format!("postgres://app:right-horse-battery@127.0.0.1:{port}/postgres");
    let builder = PgDatabase::builder(&url);
    assert!(
        !format!("{builder:?}").contains("right-horse"),
        "{builder:?}"
    );
    let db = builder.connect().await.unwrap();
    assert!(!format!("{db:?}").contains("right-horse"), "{db:?}");
    assert!(format!("{db:?}").contains("as app"), "{db:?}");
}

/// A service starts while its server is down: without retries the connect fails at once
/// as unavailable; with them it connects once the server starts, and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_before_its_database_connects_once_the_server_is_up() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    cluster.kill().unwrap();

    let err = PgDatabase::connect(&url).await.unwrap_err();
    assert_eq!(err.code(), codes::STORE_UNAVAILABLE, "{err}");

    let connecting = tokio::spawn({
        let url = url.clone();
        async move {
            PgDatabase::builder(&url)
                .retry_connect_for(Duration::from_secs(120))
                .connect()
                .await
        }
    });
    // Let it fail a few times against the stopped server before the server comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !connecting.is_finished(),
        "still trying while the server is down"
    );
    let restarted = tokio::task::spawn_blocking(move || {
        cluster.restart().unwrap();
        cluster
    });
    let _cluster = restarted.await.unwrap();
    let db = connecting.await.unwrap().unwrap();
    let store = db.event_store();
    let stream = StreamId::new("Started", "s-1");
    let event = NewEvent::new("started", 1, serde_json::json!({}), &Context::new());
    assert_eq!(store.append(&stream, 0, &[event]).await.unwrap(), 1);
}

/// A self-signed certificate for 127.0.0.1 and localhost, from the `openssl` tool.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl tool (apt-get install openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_over_tls_with_sslmode_require_to_a_self_signed_server() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("flext-tls-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);
    cluster.enable_tls(&cert, &key).unwrap();
    let url = format!(
        "{}?sslmode=require",
        cluster.fresh_database().await.unwrap()
    );

    let db = PgDatabase::builder(&url)
        .tls_root_certificates_pem(cert.as_bytes())
        .connect()
        .await
        .unwrap();
    let ssl: bool = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the session is encrypted");
    let stream = StreamId::new("Tls", "t-1");
    let event = NewEvent::new("sealed", 1, serde_json::json!({"n": 1}), &Context::new());
    db.event_store().append(&stream, 0, &[event]).await.unwrap();

    // Required but not trusted (the certificate is not among the Mozilla roots): refused.
    let err = PgDatabase::connect(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A server in recovery refuses connections with SQLSTATE 57P03 ("the database system is
/// not accepting connections", as while it starts up): reported as starting up (a cause
/// `retry_connect_for` retries), naming the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_starting_up_is_reported_as_such() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let port = port_of(cluster.url());
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart_in_recovery().unwrap();
        cluster
    })
    .await
    .unwrap();
    let err = PgDatabase::connect(cluster.url()).await.unwrap_err();
    assert_eq!(err.code(), codes::STORE_STARTING_UP, "{err}");
    assert!(
        err.message().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.message().contains("57P03"), "{err}");
}
