//! A TCP forwarder that cuts its connections on demand: requests already
//! forwarded reach the server, their responses never reach the client —
//! the "lost response" a retrying client must not turn into a duplicate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards 127.0.0.1:`addr` to `target` until dropped.
#[derive(Debug)]
pub struct CuttingForwarder {
    pub addr: SocketAddr,
    /// Bumped to cut every connection open at that moment.
    cut: watch::Sender<u64>,
    cuts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingForwarder {
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, _) = watch::channel(0u64);
        let cuts = Arc::new(AtomicU64::new(0));
        let cut_rx = cut.subscribe();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        // Dropping both sockets resets them mid-flight.
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            cut,
            cuts,
            task,
        })
    }

    /// Cuts every open connection now.
    pub fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::Relaxed);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for CuttingForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
