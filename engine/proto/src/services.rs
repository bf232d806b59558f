//! Services this endpoint serves, with their in-flight limits.

use crate::ids::{ServiceId, Status};
use crate::FastMap;

struct Service {
    max_in_flight: u32,
    in_flight: u32,
}

/// Registered services. A request for an unregistered service is answered
/// `NOT_FOUND`, and one beyond its service's in-flight limit `BACKPRESSURE`,
/// both without involving the application.
#[derive(Default)]
pub(crate) struct Services {
    map: FastMap<ServiceId, Service>,
}

impl Services {
    pub fn register(&mut self, id: ServiceId, max_in_flight: u32) {
        let in_flight = self.map.get(&id).map_or(0, |s| s.in_flight);
        self.map.insert(
            id,
            Service {
                max_in_flight,
                in_flight,
            },
        );
    }

    pub fn unregister(&mut self, id: ServiceId) {
        self.map.remove(&id);
    }

    /// Admits a new call or says which status refuses it.
    pub fn admit(&mut self, id: ServiceId) -> Result<(), Status> {
        let s = self.map.get_mut(&id).ok_or(Status::NOT_FOUND)?;
        if s.in_flight >= s.max_in_flight {
            return Err(Status::BACKPRESSURE);
        }
        s.in_flight += 1;
        Ok(())
    }

    /// A call admitted earlier is answered (or abandoned).
    pub fn release(&mut self, id: ServiceId) {
        if let Some(s) = self.map.get_mut(&id) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}
