//! A series' attribute set: its labels, formatted once when the budget admits the series and
//! shared by the points of every family on that series; renderers keep their rendering of a
//! set in its memos, so a set is rendered once while it lives, not once per point and export.

use std::{
    ops::Deref,
    sync::{Arc, OnceLock},
};

/// Attribute set of one point, in label order (OTLP names; Prometheus replaces the dots).
pub type Labels = Vec<(&'static str, String)>;

/// A point's attributes, cheap to clone. The points of one series in several families (the
/// flow metrics) share one set, which lives as long as its series is admitted to the budget; a
/// renderer may keep its rendering of a set in the set's memos, so a set is rendered once, not
/// once per point and export.
#[derive(Clone, Debug)]
pub struct Attrs(Arc<AttrSet>);

#[derive(Debug)]
struct AttrSet {
    labels: Labels,
    memos: [OnceLock<Box<[u8]>>; MEMOS],
}

/// Memo slots per attribute set; renderers choose theirs (see [`Attrs::memo`]).
pub const MEMOS: usize = 3;

impl Attrs {
    /// An attribute set.
    pub fn new(labels: Labels) -> Self {
        Self(Arc::new(AttrSet {
            labels,
            memos: Default::default(),
        }))
    }

    /// The rendering of this set kept in memo `slot` (0..[`MEMOS`]; each renderer has its
    /// own), made by `render` the first time.
    pub fn memo(
        &self,
        slot: usize,
        render: impl FnOnce(&[(&'static str, String)]) -> Vec<u8>,
    ) -> &[u8] {
        self.0.memos[slot].get_or_init(|| render(&self.0.labels).into_boxed_slice())
    }

    /// Whether both are the same set (not only equal labels).
    pub fn same(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Deref for Attrs {
    type Target = [(&'static str, String)];

    fn deref(&self) -> &Self::Target {
        &self.0.labels
    }
}

impl PartialEq for Attrs {
    fn eq(&self, other: &Self) -> bool {
        self.0.labels == other.0.labels
    }
}
