//! Stopping on a signal. `kfs broker` and `kfs consume` both stop cleanly
//! on SIGINT (Ctrl-C at a terminal) and on SIGTERM (what `kill`, `timeout`,
//! container runtimes and service managers send), as Kafka's broker and
//! console consumer do: a clean stop is what keeps a broker's restart fast
//! and a group member's progress committed.

use tokio::signal::unix::{SignalKind, signal};
use tracing::warn;

/// Completes when SIGINT or SIGTERM arrives, with the signal's name.
///
/// A signal whose handler cannot be installed is logged and never waited
/// for (rather than taken as a request to stop at once).
pub(crate) async fn stop() -> &'static str {
    async fn one(kind: SignalKind, name: &'static str) -> &'static str {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for {name}");
                std::future::pending::<()>().await;
            }
        }
        name
    }
    tokio::select! {
        name = one(SignalKind::interrupt(), "SIGINT") => name,
        name = one(SignalKind::terminate(), "SIGTERM") => name,
    }
}
