//! The accept loop: HTTP/1.1 connections with a header-read timeout (a client that trickles its
//! headers — slowloris — is cut off; axum::serve has no such setting), and a graceful
//! shutdown that lets in-flight requests finish (at most 30 s).

use std::future::Future;
use std::time::Duration;

use axum::Router;

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The peer's address, for handlers that need it (the console's sign-in throttle).
                let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                let service = hyper_util::service::TowerToHyperService::new(app);
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read_timeout);
                let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection closed");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("in-flight requests did not finish in 30 s"),
    }
}
