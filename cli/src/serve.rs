//! What every server role does the same way: logging, the shutdown
//! signal, the listener, and serving gRPC with a bounded shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// How long requests in progress may take once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Logs to stderr; `SLUICE_LOG` (or `RUST_LOG`) sets the level, info by default.
pub fn init_logging() {
    init_logging_at("info");
}

/// Logs to stderr at `default` unless `SLUICE_LOG` (or `RUST_LOG`) says otherwise.
pub fn init_logging_at(default: &str) {
    let filter = std::env::var("SLUICE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Listens for SIGINT and SIGTERM from the moment it is called (before the
/// process announces itself, so an early signal is a clean shutdown too);
/// the returned future resolves on the first of them.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Binds `addr`, with a message naming the flag to change on failure.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (set --grpc-addr)"))
}

/// Accepted connections, with Nagle off.
pub fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
}

/// Serves `router` on `listener` until `cancel`, then gives requests in
/// progress [`SHUTDOWN_GRACE`]; connections still open after it do not keep
/// the process alive.
pub async fn serve(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let server = router.serve_with_incoming_shutdown(
        tokio_stream_listener(listener),
        cancel.clone().cancelled_owned(),
    );
    tokio::select! {
        served = server => served.context("the gRPC server failed"),
        _ = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after the shutdown signal; closing them");
            Ok(())
        }
    }
}

/// Cancels `cancel` on SIGTERM or SIGINT.
pub fn cancel_on_signal(
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
}
