//! The `kv-server` binary: parse flags, bind the ports, run until SIGINT or
//! SIGTERM.

use clap::Parser;
use kv_server::config::Flags;
use kv_server::transport::peer_addr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let flags = Flags::parse();
    let peers = flags.peers()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let peer_url = flags.listen_peer.as_ref().unwrap_or(&peers[&flags.id]);
        let peer_listener = TcpListener::bind(peer_addr(peer_url)?)
            .await
            .map_err(|e| anyhow::anyhow!("binding the peer address {peer_url}: {e}"))?;
        let client_addr = format!("{}:{}", flags.client_host, flags.port);
        let client_listener = TcpListener::bind(&client_addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding the client address {client_addr}: {e}"))?;
        info!(id = flags.id, peer = %peer_url, client = %client_addr, "kv-server listening");
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutting down");
            signal.cancel();
        });
        kv_server::server::run(flags, peer_listener, client_listener, shutdown).await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
