use super::Changer;
use crate::tracker::{Config, ProgressMap, ProgressTracker};
use crate::types::{ConfChangeSingle, ConfChangeType, ConfState, NodeId};

/// Rebuilds the configuration and progress map described by `cs` (a
/// snapshot's membership), starting from `changer`'s tracker, which must be
/// empty, as a fresh `ProgressTracker::new` is (etcd's `Restore`).
///
/// The state is reached through ordinary changes, so it passes every check
/// a live change would:
///
/// - not joint: each voter, then each learner, is added by a simple change;
/// - joint, e.g. `voters=(1 2 3) voters_outgoing=(1 2 4 6) learners=(5)
///   learners_next=(4)`: the outgoing voters are added one by one (giving
///   `(1 2 4 6)`), then a single joint change removes them all, adds the
///   incoming voters and the learners, and demotes the staged learners
///   (giving `(1 2 3)&&(1 2 4 6) learners=(5) learners_next=(4)`).
///
/// Whether 5 was a learner before the joint change cannot be told from a
/// `ConfState` and does not matter. An empty `ConfState` (a node that has
/// never been configured) yields the empty configuration.
///
/// # Errors
/// If `cs` is not a configuration the changes can produce (for example
/// learners without voters, a node that is both voter and learner, or
/// `auto_leave` without outgoing voters): the result must be equivalent to
/// `cs`, as etcd asserts after restoring.
pub fn restore(changer: &Changer<'_>, cs: &ConfState) -> Result<(Config, ProgressMap), String> {
    let (outgoing, incoming) = to_conf_change_single(cs);
    let last_index = changer.last_index;
    let mut trk = changer.tracker.clone();
    let install = |trk: &mut ProgressTracker, (config, progress)| {
        trk.config = config;
        trk.progress = progress;
    };
    // Without outgoing voters, the incoming changes apply one by one.
    // Otherwise the outgoing voters are established as a plain configuration
    // first, and the incoming changes enter the joint configuration that
    // rotates them into the outgoing half.
    let simple_steps = if outgoing.is_empty() {
        &incoming
    } else {
        &outgoing
    };
    for cc in simple_steps {
        let chg = Changer {
            tracker: &trk,
            last_index,
        };
        let res = chg.simple(std::slice::from_ref(cc))?;
        install(&mut trk, res);
    }
    if !outgoing.is_empty() {
        let chg = Changer {
            tracker: &trk,
            last_index,
        };
        let res = chg.enter_joint(cs.auto_leave, &incoming)?;
        install(&mut trk, res);
    }
    // Some invalid inputs replay without error but describe something else
    // (a node listed as voter and learner ends up a learner; `auto_leave`
    // outside a joint config is dropped). etcd's caller asserts this
    // equivalence; returning the error lets ours refuse the snapshot.
    let restored = trk.config.conf_state();
    if !restored.equivalent(cs) {
        return Err(format!(
            "ConfState {cs:?} is not a valid configuration (restored as {})",
            trk.config
        ));
    }
    Ok((trk.config, trk.progress))
}

/// Splits `cs` into the changes that build its outgoing configuration and
/// the changes that then produce it (etcd's `toConfChangeSingle`).
fn to_conf_change_single(cs: &ConfState) -> (Vec<ConfChangeSingle>, Vec<ConfChangeSingle>) {
    let single = |change_type, node_id: NodeId| ConfChangeSingle {
        change_type,
        node_id,
    };
    let outgoing = cs
        .voters_outgoing
        .iter()
        .map(|&id| single(ConfChangeType::AddNode, id))
        .collect();
    let incoming = cs
        .voters_outgoing
        .iter()
        .map(|&id| single(ConfChangeType::RemoveNode, id))
        .chain(
            cs.voters
                .iter()
                .map(|&id| single(ConfChangeType::AddNode, id)),
        )
        .chain(
            cs.learners
                .iter()
                .chain(&cs.learners_next)
                .map(|&id| single(ConfChangeType::AddLearnerNode, id)),
        )
        .collect();
    (outgoing, incoming)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::confchange::describe;
    use crate::tracker::ProgressTracker;

    fn restore_fresh(cs: &ConfState, last_index: u64) -> Result<(Config, ProgressMap), String> {
        let trk = ProgressTracker::new(20, 0);
        let chg = Changer {
            tracker: &trk,
            last_index,
        };
        restore(&chg, cs)
    }

    #[test]
    fn zero_config() {
        let (cfg, prs) = restore_fresh(&ConfState::default(), 10).unwrap();
        assert_eq!(cfg, Config::default());
        assert!(prs.is_empty());
    }

    #[test]
    fn simple_config() {
        let cs = ConfState {
            voters: vec![3, 1, 2],
            learners: vec![5, 4],
            ..Default::default()
        };
        let (cfg, prs) = restore_fresh(&cs, 10).unwrap();
        assert_eq!(
            describe(&cfg, &prs),
            "voters=(1 2 3) learners=(4 5)\n\
             1: StateProbe match=0 next=10\n\
             2: StateProbe match=0 next=10\n\
             3: StateProbe match=0 next=10\n\
             4: StateProbe match=0 next=10 learner\n\
             5: StateProbe match=0 next=10 learner\n"
        );
    }

    #[test]
    fn joint_config() {
        let cs = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![5],
            voters_outgoing: vec![1, 2, 4, 6],
            learners_next: vec![4],
            auto_leave: true,
        };
        let (cfg, prs) = restore_fresh(&cs, 0).unwrap();
        assert_eq!(
            describe(&cfg, &prs),
            "voters=(1 2 3)&&(1 2 4 6) learners=(5) learners_next=(4) autoleave\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=1\n\
             4: StateProbe match=0 next=1\n\
             5: StateProbe match=0 next=1 learner\n\
             6: StateProbe match=0 next=1\n"
        );
        assert!(cfg.conf_state().equivalent(&cs));
    }

    #[test]
    fn invalid_conf_states() {
        let learners_only = ConfState {
            learners: vec![1],
            ..Default::default()
        };
        assert_eq!(
            restore_fresh(&learners_only, 1).unwrap_err(),
            "removed all voters"
        );
        let outgoing_only = ConfState {
            voters_outgoing: vec![1],
            ..Default::default()
        };
        assert_eq!(
            restore_fresh(&outgoing_only, 1).unwrap_err(),
            "removed all voters"
        );
    }

    /// What a node is in a generated `ConfState`.
    #[derive(Clone, Copy, Debug)]
    enum Role {
        Absent,
        VoterBoth,
        VoterIncoming,
        VoterOutgoing,
        Learner,
        LearnerNext,
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Absent),
            Just(Role::VoterBoth),
            Just(Role::VoterIncoming),
            Just(Role::VoterOutgoing),
            Just(Role::Learner),
            Just(Role::LearnerNext),
        ]
    }

    /// Valid ConfStates (those reachable by changes), with every list in a
    /// random order.
    fn conf_state() -> impl Strategy<Value = ConfState> {
        (
            proptest::collection::vec(role(), 0..10),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_filter_map("not a reachable ConfState", |(roles, joint, auto_leave)| {
                let mut cs = ConfState::default();
                for (i, role) in roles.iter().enumerate() {
                    let id = i as NodeId + 1;
                    match (role, joint) {
                        (Role::Absent, _) => {}
                        (Role::VoterBoth, true) => {
                            cs.voters.push(id);
                            cs.voters_outgoing.push(id);
                        }
                        (Role::VoterBoth | Role::VoterIncoming, _) => cs.voters.push(id),
                        (Role::VoterOutgoing, true) => cs.voters_outgoing.push(id),
                        (Role::LearnerNext, true) => {
                            cs.voters_outgoing.push(id);
                            cs.learners_next.push(id);
                        }
                        (Role::VoterOutgoing | Role::LearnerNext, false) => {}
                        (Role::Learner, _) => cs.learners.push(id),
                    }
                }
                cs.auto_leave = auto_leave && !cs.voters_outgoing.is_empty();
                let empty = cs.learners.is_empty() && cs.voters_outgoing.is_empty();
                if cs.voters.is_empty() && !empty {
                    return None;
                }
                Some(cs)
            })
            .prop_flat_map(|cs| {
                (
                    Just(cs.voters).prop_shuffle(),
                    Just(cs.learners).prop_shuffle(),
                    Just(cs.voters_outgoing).prop_shuffle(),
                    Just(cs.learners_next).prop_shuffle(),
                    Just(cs.auto_leave),
                )
                    .prop_map(
                        |(voters, learners, voters_outgoing, learners_next, auto_leave)| {
                            ConfState {
                                voters,
                                learners,
                                voters_outgoing,
                                learners_next,
                                auto_leave,
                            }
                        },
                    )
            })
    }

    proptest! {
        #[test]
        fn restore_round_trips(cs in conf_state(), last_index in 0u64..100) {
            let (cfg, prs) = restore_fresh(&cs, last_index).map_err(TestCaseError::fail)?;
            prop_assert!(
                cfg.conf_state().equivalent(&cs),
                "restored {} from {:?}", cfg, cs
            );
            // Progress for exactly the members, learners marked, fresh.
            let members: Vec<NodeId> = {
                let mut m: Vec<NodeId> = cs
                    .voters
                    .iter()
                    .chain(&cs.voters_outgoing)
                    .chain(&cs.learners)
                    .copied()
                    .collect();
                m.sort_unstable();
                m.dedup();
                m
            };
            prop_assert_eq!(prs.keys().copied().collect::<Vec<_>>(), members);
            for (id, pr) in &prs {
                prop_assert_eq!(pr.is_learner, cs.learners.contains(id));
                prop_assert_eq!((pr.matched, pr.next), (0, last_index.max(1)));
                prop_assert!(pr.recent_active);
            }
        }
    }
}
