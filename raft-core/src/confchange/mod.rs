//! Membership changes: computing the configuration and progress map that
//! result from applying configuration changes (etcd's `confchange` package).
//!
//! A [`Changer`] reads a [`ProgressTracker`] and returns *new* copies of its
//! [`Config`] and [`ProgressMap`]; the caller installs them once the change
//! is applied. Three transitions exist (Raft thesis §4.3):
//!
//! - [`Changer::simple`]: at most one voter changes, applied directly (any
//!   two majorities of configurations differing by one voter overlap);
//! - [`Changer::enter_joint`]: any change, through a joint configuration in
//!   which the old voters become the outgoing half;
//! - [`Changer::leave_joint`]: drop the outgoing half.
//!
//! [`restore`] rebuilds a configuration from a [`ConfState`] (a snapshot's
//! membership) by replaying it as a sequence of such changes.
//!
//! [`ProgressTracker`]: crate::tracker::ProgressTracker
//! [`ConfState`]: crate::types::ConfState

mod changer;
mod restore;

pub use changer::Changer;
pub use restore::restore;

use crate::tracker::{Config, ProgressMap, describe_progress};

/// Renders a configuration and its progress map for tests, in the style of
/// etcd's confchange test output:
///
/// ```text
/// voters=(1 2)&&(1) learners_next=(3) autoleave
/// 1: StateProbe match=0 next=1
/// 2: StateProbe match=0 next=2
/// ```
pub fn describe(config: &Config, progress: &ProgressMap) -> String {
    format!("{config}\n{}", describe_progress(progress))
}

#[cfg(test)]
mod tests;
