//! Routing by action: the Rust counterpart of Python's `Network_{action}` methods.
//!
//! A handler type lists its routes once, in an associated function; the table is built when the
//! server (or client) is created and shared by every connection. A game has a handful of
//! actions, and for up to [`SCAN_MAX`] of them the table is an inline list scanned in order
//! (the length compare rejects most names at once): measured faster than hashing at every
//! size up to 32 (`benches/route_table.rs`: 12 ns against 21 ns per lookup with 4 routes, 16
//! against 21 with 16). A larger table hashes the action string in place (it is borrowed from
//! the read buffer) with a fast non-cryptographic hash: action names come from peers, but the
//! table only ever holds the application's own names, so collisions cannot be forced into
//! anything worse than a short probe.

use std::fmt;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Most routes kept in a scanned list; one more moves the table to a hash map.
const SCAN_MAX: usize = 16;

/// A table from action names to handlers of type `H`.
pub(crate) enum ActionTable<H> {
    Scan(SmallVec<[(Box<str>, H); 8]>),
    /// Keyed by bytes, as received actions are looked up (every key was inserted as a `str`).
    Hash(FxHashMap<Box<[u8]>, H>),
}

impl<H> Default for ActionTable<H> {
    fn default() -> Self {
        ActionTable::Scan(SmallVec::new())
    }
}

impl<H> ActionTable<H> {
    pub(crate) fn insert(&mut self, action: &str, handler: H) {
        let replaced = match self {
            ActionTable::Scan(list) => {
                if let Some(slot) = list.iter_mut().find(|(k, _)| **k == *action) {
                    slot.1 = handler;
                    true
                } else if list.len() < SCAN_MAX {
                    list.push((action.into(), handler));
                    false
                } else {
                    let mut map: FxHashMap<Box<[u8]>, H> = list
                        .drain(..)
                        .map(|(k, h)| (k.into_boxed_bytes(), h))
                        .collect();
                    map.insert(action.as_bytes().into(), handler);
                    *self = ActionTable::Hash(map);
                    false
                }
            }
            ActionTable::Hash(map) => map.insert(action.as_bytes().into(), handler).is_some(),
        };
        if replaced {
            log::warn!("repod: route {action:?} registered twice; the last one wins");
        }
    }

    /// The handler of `action`, compared as bytes: a received message's action is looked up
    /// without decoding it as a string first.
    pub(crate) fn get(&self, action: impl AsRef<[u8]>) -> Option<&H> {
        let action = action.as_ref();
        match self {
            ActionTable::Scan(list) => list
                .iter()
                .find(|(k, _)| k.len() == action.len() && k.as_bytes() == action)
                .map(|(_, h)| h),
            ActionTable::Hash(map) => map.get(action),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            ActionTable::Scan(list) => list.len(),
            ActionTable::Hash(map) => map.len(),
        }
    }

    pub(crate) fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            ActionTable::Scan(list) => Box::new(list.iter().map(|(k, _)| &**k)),
            ActionTable::Hash(map) => Box::new(
                map.keys()
                    .map(|k| std::str::from_utf8(k).unwrap_or_default()),
            ),
        }
    }
}

impl<H> fmt::Debug for ActionTable<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.names().collect();
        names.sort_unstable();
        f.debug_set().entries(names).finish()
    }
}

/// Runs `f`, turning a panic into its message, so one connection's bug does not take down a
/// server that serves thousands.
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        if let Some(s) = p.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = p.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_tables_find_every_route() {
        for n in [0usize, 1, 16, 17, 40] {
            let mut t = ActionTable::default();
            for i in 0..n {
                t.insert(&format!("a{i}"), i);
            }
            assert_eq!(
                matches!(t, ActionTable::Hash(_)),
                n > SCAN_MAX,
                "{n} routes"
            );
            assert_eq!(t.len(), n);
            for i in 0..n {
                assert_eq!(t.get(format!("a{i}")), Some(&i));
            }
            assert_eq!(t.get("a"), None);
            assert_eq!(t.get("missing"), None);
            // Registering again replaces, in both forms.
            if n > 0 {
                t.insert("a0", 99);
                assert_eq!((t.get("a0"), t.len()), (Some(&99), n));
            }
        }
    }
}
