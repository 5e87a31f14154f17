//! A server that freezes: a TCP front on 127.0.0.1 that forwards every connection to a
//! backend while thawed and, while frozen, accepts connections and never answers them, as
//! the kernel does for a process stopped with `kill -STOP`. Thawing forwards the held
//! connections too, as `kill -CONT` would: what the clients sent meanwhile arrives then.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// The front; dropping it closes the listener and every connection not yet forwarded.
pub struct FreezableProxy {
    addr: SocketAddr,
    frozen: watch::Sender<bool>,
    held: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl FreezableProxy {
    /// Listens on an ephemeral port of 127.0.0.1 in front of `backend`, thawed.
    pub async fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the freezable proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let (frozen, thawed) = watch::channel(false);
        let held = Arc::new(AtomicUsize::new(0));
        let counter = held.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, backend, thawed.clone(), counter.clone()));
            }
        });
        Self {
            addr,
            frozen,
            held,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on new connections are accepted and left unanswered (those forwarded
    /// already keep flowing).
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards the held connections and every new one.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Connections accepted while frozen and not forwarded yet: a client waiting on them
    /// is stuck.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut client: TcpStream,
    backend: SocketAddr,
    mut frozen: watch::Receiver<bool>,
    held: Arc<AtomicUsize>,
) {
    if *frozen.borrow_and_update() {
        held.fetch_add(1, Ordering::SeqCst);
        let thawed = frozen.wait_for(|frozen| !*frozen).await.is_ok();
        held.fetch_sub(1, Ordering::SeqCst);
        if !thawed {
            return;
        }
    }
    let Ok(mut server) = TcpStream::connect(backend).await else {
        return;
    };
    // Either side closing or resetting ends the pair; nothing to report.
    let _ = copy_bidirectional(&mut client, &mut server).await;
}
