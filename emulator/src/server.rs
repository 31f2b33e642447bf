//! The HTTP server: one axum router serving Calendar (`/calendar/v3/`), People (`/v1/`),
//! OAuth (`/token`, `/o/oauth2/auth`) and the control plane (`/_emulator/`) on one port,
//! and [`EmulatorServer`], a running instance that tests and `crmsync` embed.

use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::errors::EmulatorError;
use crate::state::Emulator;
use crate::{api, control, oauth};

/// The full router over `emulator`'s state.
pub fn router(emulator: Emulator) -> Router {
    Router::new()
        .route("/token", post(oauth::token))
        .route("/o/oauth2/auth", get(oauth::authorize))
        .route("/o/oauth2/v2/auth", get(oauth::authorize))
        .nest("/_emulator", control::routes())
        .fallback(api::handle)
        .with_state(emulator)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// A handler bug must not drop the connection: answer 500 in an envelope both client
/// crates parse (Calendar's `errors[]` plus People's `status`).
fn panic_response(
    _: Box<dyn std::any::Any + Send + 'static>,
) -> axum::http::Response<axum::body::Body> {
    tracing::error!("emulator handler panicked");
    let body = serde_json::json!({"error": {
        "errors": [{"domain": "global", "reason": "backendError", "message": "Internal error encountered."}],
        "code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}});
    axum::http::Response::builder()
        .status(500)
        .header("content-type", "application/json; charset=UTF-8")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap_or_default()
}

/// A running emulator.
#[derive(Debug)]
pub struct EmulatorServer {
    base_url: String,
    emulator: Emulator,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorServer {
    /// Binds `listen` and serves in the background.
    pub async fn start(listen: SocketAddr) -> Result<Self, EmulatorError> {
        Self::start_with(Emulator::new(), listen).await
    }

    /// Binds `127.0.0.1:0` (a free loopback port).
    pub async fn start_local() -> Result<Self, EmulatorError> {
        Self::start(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves an existing emulator state.
    pub async fn start_with(emulator: Emulator, listen: SocketAddr) -> Result<Self, EmulatorError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: listen,
                source,
            })?;
        let base_url = format!("http://{addr}");
        emulator.set_base_url(&base_url);
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(emulator.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator server stopped with an error");
            }
        });
        tracing::info!(%base_url, "Google Workspace emulator listening");
        Ok(EmulatorServer {
            base_url,
            emulator,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for EmulatorServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
