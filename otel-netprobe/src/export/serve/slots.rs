//! The open connections as the admission decision sees them: which are answering a request,
//! since when the others are idle, and how to wake one to close it. A full server evicts the
//! longest-idle connection without a request in progress, or refuses when there is none.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use tokio::sync::Notify;

use crate::telemetry::http::HttpCounters;

/// One open connection as the admission decision sees it.
pub(super) struct Slot {
    /// Set while a request is being answered.
    busy: bool,
    /// When it last became idle (accepted, or a response produced).
    idle_since: Instant,
    /// Wakes the connection's task to close it.
    evict: Arc<Notify>,
}

/// The open connections.
#[derive(Default)]
pub(super) struct Slots {
    next: u64,
    pub(super) open: HashMap<u64, Slot>,
}

pub(super) type Table = Arc<Mutex<Slots>>;

pub(super) fn lock(t: &Table) -> std::sync::MutexGuard<'_, Slots> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) enum Admission {
    /// A slot: the connection's id, its eviction notice, and whether another connection was
    /// evicted to make room.
    Admitted(u64, Arc<Notify>, bool),
    Refused,
}

/// Takes a slot for a new connection, evicting the longest-idle connection without a request
/// in progress when the table is full.
pub(super) fn admit(table: &Table, max: usize, counters: &HttpCounters) -> Admission {
    let mut t = lock(table);
    let evicted = t.open.len() >= max;
    if evicted {
        let victim = t
            .open
            .iter()
            .filter(|(_, s)| !s.busy)
            .min_by_key(|(_, s)| s.idle_since)
            .map(|(id, _)| *id);
        let Some(victim) = victim else {
            return Admission::Refused;
        };
        // Its task counts the eviction when it ends; the slot is free from now on.
        if let Some(s) = t.open.remove(&victim) {
            s.evict.notify_one();
        }
    }
    t.next += 1;
    let id = t.next;
    let evict = Arc::new(Notify::new());
    t.open.insert(
        id,
        Slot {
            busy: false,
            idle_since: Instant::now(),
            evict: Arc::clone(&evict),
        },
    );
    counters.accepted();
    Admission::Admitted(id, evict, evicted)
}

pub(super) fn set_busy(table: &Table, id: u64, busy: bool) {
    if let Some(s) = lock(table).open.get_mut(&id) {
        s.busy = busy;
        if !busy {
            s.idle_since = Instant::now();
        }
    }
}

/// Marks a connection busy while its request is answered (not evictable).
pub(super) struct Busy {
    table: Table,
    id: u64,
}

impl Busy {
    pub(super) fn new(table: Table, id: u64) -> Self {
        set_busy(&table, id, true);
        Self { table, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        set_busy(&self.table, self.id, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_of(busy: &[bool]) -> Table {
        let table: Table = Arc::default();
        let c = HttpCounters::default();
        for _ in busy {
            assert!(matches!(admit(&table, 64, &c), Admission::Admitted(..)));
        }
        for (id, b) in busy.iter().enumerate() {
            set_busy(&table, id as u64 + 1, *b);
        }
        table
    }

    #[test]
    fn a_full_server_evicts_its_longest_idle_connection_without_a_request() {
        // Connection 2 idle since before 4; 1 and 3 are answering requests.
        let table = table_of(&[true, false, true, false]);
        set_busy(&table, 4, false);
        let c = HttpCounters::default();
        let Admission::Admitted(id, _, evicted) = admit(&table, 4, &c) else {
            panic!("refused with idle connections to evict")
        };
        assert!(evicted);
        assert_eq!(id, 5);
        let mut open: Vec<u64> = lock(&table).open.keys().copied().collect();
        open.sort_unstable();
        assert_eq!(open, [1, 3, 4, 5]);
        assert_eq!(c.accepted_total(), 1);
    }

    #[test]
    fn a_server_whose_every_connection_is_busy_refuses() {
        let table = table_of(&[true, true, true, true]);
        let c = HttpCounters::default();
        assert!(matches!(admit(&table, 4, &c), Admission::Refused));
        assert_eq!(lock(&table).open.len(), 4);
        // Below the cap nothing is evicted.
        let table = table_of(&[false, false]);
        assert!(matches!(
            admit(&table, 4, &c),
            Admission::Admitted(3, _, false)
        ));
    }
}
