//! Serving a fake: bind an axum router on a loopback address and keep it running until
//! the returned [`Served`] is dropped. Every fake in this crate starts this way.

use std::net::SocketAddr;

use axum::Router;

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct Served {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (`127.0.0.1:0` for a random port) and serves `router` in the background.
pub async fn try_serve(router: Router, addr: &str) -> std::io::Result<Served> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(Served { addr, task })
}

/// [`try_serve`] on a random loopback port; a fake that cannot bind fails the test.
pub async fn serve(router: Router, what: &str) -> Served {
    try_serve(router, "127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}
