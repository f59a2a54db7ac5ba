//! The operator console over a parcel service with a stuck saga.
//!
//! ```text
//! cargo run --example console --features console -- [--db PATH] [--port 8080] [--read-only]
//! ```
//!
//! Ships three parcels (one sticks at its label: the carrier is down; one ships; one is
//! too heavy and is compensated), then serves the console at
//! `http://127.0.0.1:PORT/ops`, signed in as `alice` (`--read-only`: as nobody). Open
//! it, pick "stuck", open the saga, and resume it with a reason: the carrier is back,
//! and it completes.

mod app;

use std::path::PathBuf;

#[tokio::main]
async fn main() -> flext::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut db: Option<PathBuf> = None;
    let mut port = 8080u16;
    let mut user = Some("alice".to_owned());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => db = args.next().map(PathBuf::from),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--read-only" => user = None,
            other => {
                eprintln!("unknown argument `{other}`: use --db PATH, --port N, --read-only");
                std::process::exit(2);
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("flext-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| flext::Error::infrastructure("console.dir", e.to_string()))?;
    let path = db.unwrap_or_else(|| dir.join("parcels.db"));
    let app = app::start(&path).await?;
    for (parcel, id, state) in &app.sagas {
        println!("parcel {parcel}: saga {id} {state}");
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| flext::Error::infrastructure("console.bind", e.to_string()))?;
    println!("console: http://127.0.0.1:{port}/ops");
    axum::serve(listener, app::router(&app, user))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| flext::Error::infrastructure("console.serve", e.to_string()))?;
    app.shutdown().await;
    Ok(())
}
