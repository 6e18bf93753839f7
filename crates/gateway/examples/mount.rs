//! Mounting the gateway's routers inside an existing axum application: the service keeps its
//! own routes, and gains the data plane (`/v1/...`), the admin and auth APIs and the health
//! checks, each behind its own guard. The database must be migrated (`portcullis migrate`) and
//! `DATABASE_URL` name the runtime role, as for `portcullis serve`.
//!
//! ```bash
//! DATABASE_URL=postgres://portcullis_app@127.0.0.1/portcullis \
//!   cargo run -p portcullis-gateway --example mount
//! ```
//!
//! The example makes a new key-encryption key at each start, so provider keys saved through it
//! do not outlive the process; a deployment loads its own (`secrets.kek` of `portcullis serve`).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use portcullis_core::crypto::Keyring;
use portcullis_gateway::spend::SpendOptions;
use portcullis_gateway::{AppState, Egress};
use portcullis_policy::spend::PriceTable;
use portcullis_storage::{Db, DbOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL to the runtime role")?;
    let db = Db::connect_lazy(&DbOptions::new(url.into()))?;
    let state = AppState::builder(
        db,
        Keyring::generate()?,
        SpendOptions::new(PriceTable::builtin()?),
    )
    // Peers whose X-Forwarded-For is believed: none here (the default).
    .trusted_proxies(Vec::new())
    .egress(Egress::default())
    .build()?;
    portcullis_gateway::dataplane::spawn_change_listener(&state);
    let background = state.background.clone();

    // The application's own routes, and the gateway's beside them.
    let app = Router::new()
        .route("/hello", get(|| async { "the application's own route" }))
        .merge(portcullis_gateway::router(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    // The client's address reaches the audit trail and the throttles through ConnectInfo.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    // The change listener stops; queued ledger and log writes are written first.
    background.finish(std::time::Duration::from_secs(10)).await;
    Ok(())
}
