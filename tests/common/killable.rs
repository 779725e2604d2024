//! A test backend on a runtime of its own, so a test can kill it outright (listener and every
//! open connection at once, as a crashed process would) and start it again on the same port.

use std::net::{Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// An echo backend that can die and come back.
pub struct KillableBackend {
    /// Where it listens (the same address after a restart).
    pub addr: SocketAddr,
    name: String,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl KillableBackend {
    /// Starts the echo backend `name` on `127.0.0.1:0`.
    pub fn start(name: &str) -> Self {
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let mut backend = KillableBackend {
            addr,
            name: name.to_string(),
            running: None,
        };
        backend.run(listener);
        backend
    }

    /// Stops it: the listener and all its connections close, so connects are refused.
    pub fn kill(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("backend thread");
        }
    }

    /// Starts it again on the same address.
    pub fn revive(&mut self) {
        assert!(self.running.is_none(), "still running");
        let listener = std::net::TcpListener::bind(self.addr).expect("rebind the same port");
        self.run(listener);
    }

    fn run(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("non-blocking");
        let (stop, stopped) = oneshot::channel::<()>();
        let name = self.name.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("backend runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    () = gatehouse_backend::serve(listener, name) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task, closing their sockets.
        });
        self.running = Some((stop, thread));
    }
}

impl Drop for KillableBackend {
    fn drop(&mut self) {
        self.kill();
    }
}
