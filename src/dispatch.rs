//! Routing by action: the Rust counterpart of Python's `Network_{action}` methods.
//!
//! A handler type lists its routes once, in an associated function; the table is built when the
//! server (or client) is created and shared by every connection. Looking a route up hashes the
//! action string in place (it is borrowed from the read buffer) with a fast non-cryptographic
//! hash: action names come from peers, but the table only ever holds the application's own
//! names, so collisions cannot be forced into anything worse than a short probe.

use std::fmt;

use rustc_hash::FxHashMap;

/// A table from action names to handlers of type `H`.
pub(crate) struct ActionTable<H> {
    map: FxHashMap<Box<str>, H>,
}

impl<H> Default for ActionTable<H> {
    fn default() -> Self {
        ActionTable {
            map: FxHashMap::default(),
        }
    }
}

impl<H> ActionTable<H> {
    pub(crate) fn insert(&mut self, action: &str, handler: H) {
        if self.map.insert(action.into(), handler).is_some() {
            log::warn!("repod: route {action:?} registered twice; the last one wins");
        }
    }

    pub(crate) fn get(&self, action: &str) -> Option<&H> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get(action)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|k| &**k)
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
