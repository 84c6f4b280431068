//! Snapshots this host's reads are using: planned by a GetFlightInfo in the last
//! minute (its DoGet is on the way), or streaming now. Expiry keeps them, so a read
//! never loses its files under it. Reads served by other processes are not seen:
//! their protection is the retention itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::command::TableName;

#[derive(Default)]
pub struct Pins {
    state: Arc<Mutex<HashMap<(TableName, i64), Pin>>>,
}

#[derive(Default)]
struct Pin {
    /// Until when a planned read may still come for it.
    until: Option<Instant>,
    streams: usize,
}

/// Held while a read streams: its snapshots stay pinned until it is dropped.
pub struct PinGuard {
    state: Arc<Mutex<HashMap<(TableName, i64), Pin>>>,
    keys: Vec<(TableName, i64)>,
}

impl Pins {
    /// `snapshots` were just planned: keep them `for_how_long`.
    pub fn planned(&self, snapshots: &[(TableName, i64)], for_how_long: Duration) {
        let until = Instant::now() + for_how_long;
        let mut state = self.state.lock().expect("pins");
        for key in snapshots {
            let pin = state.entry(key.clone()).or_default();
            pin.until = Some(pin.until.map_or(until, |u| u.max(until)));
        }
    }

    /// `snapshots` are being read until the guard is dropped.
    pub fn streaming(&self, snapshots: Vec<(TableName, i64)>) -> PinGuard {
        let mut state = self.state.lock().expect("pins");
        for key in &snapshots {
            state.entry(key.clone()).or_default().streams += 1;
        }
        PinGuard {
            state: self.state.clone(),
            keys: snapshots,
        }
    }

    /// The snapshots of `table` pinned now.
    pub fn of(&self, table: &TableName) -> HashSet<i64> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("pins");
        state.retain(|_, pin| pin.streams > 0 || pin.until.is_some_and(|u| u > now));
        state
            .keys()
            .filter(|(name, _)| name == table)
            .map(|(_, id)| *id)
            .collect()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("pins");
        for key in &self.keys {
            if let Some(pin) = state.get_mut(key) {
                pin.streams = pin.streams.saturating_sub(1);
            }
        }
    }
}
