//! The console in a real browser: Debian's Chromium, driven through chromedriver by
//! WebDriver (fantoccini), against the console example's parcel service with a stuck
//! saga. The operator filters the sagas, opens the stuck one from the keyboard, tries an
//! abort the log refuses (it is past its pivot) and sees why, then resumes it with a
//! reason and watches it complete. Screenshots go to `target/console/`.
//!
//! Needs `chromedriver` and `chromium` on the `PATH` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them); `FLEXT_CHROMEDRIVER` and
//! `FLEXT_CHROMIUM` name other binaries.

#[path = "../../examples/console/app.rs"]
#[allow(dead_code)]
mod app;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use flext::saga::SagaState;
use serde_json::json;

/// chromedriver on a free port, killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let binary =
            std::env::var("FLEXT_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{binary}` ({e}): install chromium and chromium-driver (apt-get install chromium chromium-driver), or set FLEXT_CHROMEDRIVER")
            });
        // Until it listens.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let chromium =
        std::env::var("FLEXT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("chromedriver did not start a Chromium session: {e}"))
}

/// Waits (up to 15 s) until `script` returns `true` in the page; panics with `what`.
async fn until(client: &Client, what: &str, script: &str) {
    for _ in 0..150 {
        if client.execute(script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notice = client
        .execute(
            "return document.getElementById('notice').textContent",
            vec![],
        )
        .await
        .unwrap();
    panic!("{what}: not seen within 15 s (notice: {notice})");
}

fn shots() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        )
        .join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(shots().join(name), png).unwrap();
}

fn key(k: Key) -> String {
    char::from(k).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resumes_a_stuck_saga_in_the_browser() {
    let work = std::env::temp_dir().join(format!(
        "flext-console-browser-{}-{}",
        std::process::id(),
        flext::saga::now_ms()
    ));
    std::fs::create_dir_all(&work).unwrap();
    let service = app::start(&work.join("parcels.db")).await.unwrap();
    let states: Vec<(u32, SagaState)> = service.sagas.iter().map(|(p, _, s)| (*p, *s)).collect();
    assert_eq!(
        states,
        [
            (1, SagaState::Stuck),
            (2, SagaState::Completed),
            (3, SagaState::Compensated)
        ]
    );
    let stuck = service.sagas[0].1.to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = app::router(&service, Some("alice".to_owned()));
    tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });

    let driver = Driver::start().await;
    let client = browser(&driver, &work.join("profile")).await;
    client.goto(&format!("http://{addr}/ops")).await.unwrap();
    until(
        &client,
        "three sagas listed",
        "return document.querySelectorAll('#sagas button[data-saga-id]').length === 3",
    )
    .await;
    until(
        &client,
        "signed in as alice",
        "return document.getElementById('who').textContent === 'Signed in as alice'",
    )
    .await;

    // Every control is labelled, and every button says what it does.
    let unlabelled = client
        .execute(
            "return [...document.querySelectorAll('input, select, textarea')].filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id)
                .concat([...document.querySelectorAll('button')].filter(b => !(b.getAttribute('aria-label') || b.textContent.trim())).map(b => b.id || b.outerHTML));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!([]), "controls without a label");

    // Filter: stuck sagas only, then by the start of the id.
    client
        .find(Locator::Id("state-filter"))
        .await
        .unwrap()
        .select_by_value("stuck")
        .await
        .unwrap();
    until(&client, "only the stuck saga listed", &format!(
        "const b = document.querySelectorAll('#sagas button[data-saga-id]'); return b.length === 1 && b[0].dataset.sagaId === '{stuck}'"
    ))
    .await;
    let search = client.find(Locator::Id("id-filter")).await.unwrap();
    search.send_keys(&stuck[..6]).await.unwrap();
    search.send_keys(&key(Key::Enter)).await.unwrap();
    until(&client, "the search keeps the stuck saga", &format!(
        "const b = document.querySelectorAll('#sagas button[data-saga-id]'); return b.length === 1 && b[0].dataset.sagaId === '{stuck}'"
    ))
    .await;
    screenshot(&client, "1-filtered.png").await;

    // From the keyboard: Tab from the search box to the Filter button, then to the
    // saga, and Enter opens it.
    search.send_keys(&key(Key::Tab)).await.unwrap();
    client
        .active_element()
        .await
        .unwrap()
        .send_keys(&key(Key::Tab))
        .await
        .unwrap();
    let focused = client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("data-saga-id").await.unwrap().as_deref(),
        Some(stuck.as_str()),
        "Tab reaches the saga"
    );
    focused.send_keys(&key(Key::Enter)).await.unwrap();
    until(
        &client,
        "the timeline shows where it stuck",
        "return !!document.querySelector('#timeline li[data-kind=stuck]')",
    )
    .await;
    let timeline = client
        .find(Locator::Id("timeline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        timeline.contains("STUCK at print_label (2 attempts): carrier.down"),
        "{timeline}"
    );

    // An abort past the pivot: the dialog says what stays done; without the box ticked
    // the log refuses, and the page says why.
    client
        .find(Locator::Id("action-abort"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let warning = client
        .find(Locator::Id("confirm-warning"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        warning.contains("take_payment cannot be undone"),
        "{warning}"
    );
    client
        .find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys("customer asked to cancel")
        .await
        .unwrap();
    screenshot(&client, "2-abort-dialog.png").await;
    client
        .find(Locator::Id("confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&client, "the refusal", "return document.getElementById('notice').textContent.startsWith('Refused: ') && document.getElementById('notice').textContent.includes('past its pivot')").await;
    screenshot(&client, "3-refused.png").await;

    // An empty reason is not sent.
    client
        .find(Locator::Id("action-resume"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Id("confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let asked = client
        .find(Locator::Id("confirm-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(asked.contains("Give a reason"), "{asked}");

    // Resume with a reason: the carrier is back, and the saga completes.
    client
        .find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys("the carrier is back")
        .await
        .unwrap();
    client
        .find(Locator::Id("confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &client,
        "the saga completed",
        "return document.getElementById('saga-state')?.textContent === 'completed'",
    )
    .await;
    let timeline = client
        .find(Locator::Id("timeline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        timeline.contains("resume by alice: the carrier is back"),
        "{timeline}"
    );
    assert!(
        timeline.contains("step print_label completed"),
        "{timeline}"
    );
    // The projection catches up with the parcel shipped, and the audit shows both tries.
    until(&client, "the projection caught up", "const c = document.querySelectorAll('#projections tbody td'); return c.length > 2 && c[0].textContent === 'shipped' && c[2].textContent === '0' && c[1].textContent === '2'").await;
    until(
        &client,
        "two audit rows",
        "return document.querySelectorAll('#audit tbody tr').length === 2",
    )
    .await;
    screenshot(&client, "4-resumed.png").await;

    let record = service.operations.saga(&stuck).await.unwrap();
    assert_eq!(record.summary.state, SagaState::Completed);
    let audit: Vec<String> = service
        .operations
        .audit()
        .iter()
        .map(|a| format!("{} {} {}", a.principal, a.action, a.outcome))
        .collect();
    assert_eq!(
        audit,
        [
            "alice abort refused: flext.saga.past_pivot",
            "alice resume done"
        ]
    );

    client.close().await.unwrap();
    drop(driver);
    service.shutdown().await;
    std::fs::remove_dir_all(&work).ok();
}
