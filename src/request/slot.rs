//! A client connection's place under `max_connections`, which a request can carry past the end
//! of its connection's task (a WebSocket tunnel keeps it).

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::OwnedSemaphorePermit;

/// A client connection's place under `max_connections` and in `gatehouse_connections_active`,
/// released when the last holder (the connection, or the tunnel it became) lets go.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<(OwnedSemaphorePermit, Active)>);

impl ConnectionSlot {
    /// Holds `permit` and counts the connection in `active` until the last clone is dropped.
    pub fn new(permit: OwnedSemaphorePermit, active: &IntGauge) -> Self {
        ConnectionSlot(Arc::new((permit, Active::new(active))))
    }
}

/// Counts a connection in `gatehouse_connections_active` for as long as it lives.
struct Active(IntGauge);

impl Active {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Active(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[test]
    fn the_slot_is_released_when_its_last_holder_lets_go() {
        let permits = Arc::new(Semaphore::new(1));
        let gauge = IntGauge::new("active", "test").unwrap();
        let slot = ConnectionSlot::new(Arc::clone(&permits).try_acquire_owned().unwrap(), &gauge);
        let tunnel = slot.clone();
        assert_eq!((permits.available_permits(), gauge.get()), (0, 1));
        drop(slot);
        assert_eq!((permits.available_permits(), gauge.get()), (0, 1));
        drop(tunnel);
        assert_eq!((permits.available_permits(), gauge.get()), (1, 0));
    }
}
