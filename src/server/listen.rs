//! The listening socket every worker accepts from, replaceable while serving: a reload that
//! changes `listen` binds the new address, workers move their accept loops to it, and the old
//! socket closes once none uses it. Connections already accepted are not touched.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::state::Rebind;

/// Pending connections the kernel queues while every worker is busy (std's default is 128).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` for serving (address reuse, a deep backlog). Call it inside a runtime.
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The current listening socket (`None` once closed for shutdown) and the address the config
/// asked for.
#[derive(Debug)]
pub struct Listen {
    current: watch::Sender<Socket>,
    requested: Mutex<SocketAddr>,
}

impl Listen {
    /// Serves `listener`, bound for the config's `requested` address.
    pub fn new(listener: std::net::TcpListener, requested: SocketAddr) -> Self {
        Listen {
            current: watch::Sender::new(Some(Arc::new(listener))),
            requested: Mutex::new(requested),
        }
    }

    /// Moves serving to `addr` if the config now asks for another address than before. On error
    /// (the port is taken, say) the old socket keeps serving.
    pub fn rebind(&self, addr: SocketAddr) -> io::Result<bool> {
        let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        if *requested == addr {
            return Ok(false);
        }
        let listener = bind(addr)?.into_std()?;
        let bound = listener.local_addr()?;
        self.current.send_replace(Some(Arc::new(listener)));
        *requested = addr;
        tracing::info!(listen = %bound, "now listening on the new address");
        Ok(true)
    }

    /// Follows the current socket.
    pub(super) fn subscribe(&self) -> watch::Receiver<Socket> {
        self.current.subscribe()
    }

    /// Closes the socket (once the workers' handles are gone too): shutdown refuses new clients
    /// while in-flight requests drain.
    pub(super) fn close(&self) {
        self.current.send_replace(None);
    }
}

impl Rebind for Listen {
    fn rebind(&self, address: SocketAddr) -> io::Result<bool> {
        Listen::rebind(self, address)
    }
}

/// The socket workers accept from; `None` once closed.
pub(super) type Socket = Option<Arc<std::net::TcpListener>>;

/// A worker's own handle on the current socket (registered with its runtime); `None` once the
/// socket is closed.
pub(super) fn for_this_runtime(socket: &Socket) -> io::Result<Option<tokio::net::TcpListener>> {
    match socket {
        Some(socket) => Ok(Some(tokio::net::TcpListener::from_std(
            socket.try_clone()?,
        )?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rebinding_to_the_same_address_is_a_no_op_and_a_new_one_moves() {
        let first = bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .into_std()
            .unwrap();
        let requested: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let listen = Listen::new(first, requested);
        let sockets = listen.subscribe();
        assert!(!listen.rebind(requested).unwrap());
        assert!(!sockets.has_changed().unwrap());
        assert!(listen.rebind("127.0.0.1:0".parse().unwrap()).unwrap());
        assert!(sockets.has_changed().unwrap());
    }

    #[tokio::test]
    async fn a_taken_port_keeps_the_old_socket() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let first = bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .into_std()
            .unwrap();
        let old = first.local_addr().unwrap();
        let listen = Listen::new(first, old);
        let sockets = listen.subscribe();
        // Another process's socket, without SO_REUSEPORT: the bind must fail.
        let busy = taken.local_addr().unwrap();
        assert!(listen.rebind(busy).is_err());
        let current = sockets.borrow().clone().unwrap();
        assert_eq!(current.local_addr().unwrap(), old);
    }
}
