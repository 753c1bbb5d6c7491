//! Scenario tests in the spirit of etcd's confchange datadriven scripts:
//! each step is a command and the expected `describe` output (or error).
//!
//! Commands: `simple ARGS`, `enter-joint [autoleave] ARGS`, `leave-joint`,
//! where ARGS are `vN` (add voter), `lN` (add learner), `rN` (remove) and
//! `uN` (update). As in etcd's scripts, the last index starts at 0 and grows
//! by one per command, so a node added by the k-th command gets `next =
//! max(k - 1, 1)`.

use super::*;
use crate::tracker::{Progress, ProgressTracker};
use crate::types::{ConfChangeSingle, ConfChangeType};

struct Harness {
    trk: ProgressTracker,
    last_index: u64,
}

fn parse_changes<'a>(args: impl Iterator<Item = &'a str>) -> Vec<ConfChangeSingle> {
    args.map(|arg| {
        let (kind, id) = arg.split_at(1);
        let change_type = match kind {
            "v" => ConfChangeType::AddNode,
            "l" => ConfChangeType::AddLearnerNode,
            "r" => ConfChangeType::RemoveNode,
            "u" => ConfChangeType::UpdateNode,
            _ => panic!("unknown change {arg}"),
        };
        ConfChangeSingle {
            change_type,
            node_id: id.parse().expect("node id"),
        }
    })
    .collect()
}

impl Harness {
    fn new() -> Self {
        Harness {
            trk: ProgressTracker::new(10, 0),
            last_index: 0,
        }
    }

    /// Runs one command; on success installs the result in the tracker.
    fn run(&mut self, line: &str) -> String {
        let mut words = line.split_whitespace();
        let cmd = words.next().expect("command");
        let before = self.trk.clone();
        let chg = Changer {
            tracker: &self.trk,
            last_index: self.last_index,
        };
        let res = match cmd {
            "simple" => chg.simple(&parse_changes(words)),
            "enter-joint" => {
                let mut words = words.peekable();
                let auto_leave = words.next_if_eq(&"autoleave").is_some();
                chg.enter_joint(auto_leave, &parse_changes(words))
            }
            "leave-joint" => chg.leave_joint(),
            _ => panic!("unknown command {cmd}"),
        };
        assert_eq!(self.trk, before, "a Changer must not modify its tracker");
        self.last_index += 1;
        match res {
            Ok((config, progress)) => {
                let out = describe(&config, &progress);
                self.trk.config = config;
                self.trk.progress = progress;
                out
            }
            Err(e) => e,
        }
    }
}

/// Runs `(command, expected output)` steps in order.
fn script(steps: &[(&str, &str)]) -> Harness {
    let mut h = Harness::new();
    for (i, (cmd, want)) in steps.iter().enumerate() {
        let got = h.run(cmd);
        assert_eq!(got, *want, "step {i}: {cmd}");
    }
    h
}

#[test]
fn simple_add_and_remove_voters() {
    script(&[
        ("simple v1", "voters=(1)\n1: StateProbe match=0 next=1\n"),
        (
            "simple v2",
            "voters=(1 2)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n",
        ),
        (
            "simple v3",
            "voters=(1 2 3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        // Adding an existing voter changes nothing; its progress is kept.
        (
            "simple v3",
            "voters=(1 2 3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        (
            "simple r1",
            "voters=(2 3)\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        // Removing a non-member is a no-op.
        (
            "simple r9",
            "voters=(2 3)\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        (
            "simple v4 v5",
            "more than one voter changed without entering joint config",
        ),
        ("simple r2 r3", "removed all voters"),
        // A removal and an add of the same voter cancel out.
        (
            "simple r2 v2",
            "voters=(2 3)\n\
             2: StateProbe match=0 next=8\n\
             3: StateProbe match=0 next=2\n",
        ),
        ("simple r3", "voters=(2)\n2: StateProbe match=0 next=8\n"),
        ("simple r2", "removed all voters"),
    ]);
}

#[test]
fn simple_learners_promote_and_demote() {
    script(&[
        ("simple v1", "voters=(1)\n1: StateProbe match=0 next=1\n"),
        (
            "simple l2",
            "voters=(1) learners=(2)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1 learner\n",
        ),
        // Learners are not voters: any number can change at once.
        (
            "simple l3 l4",
            "voters=(1) learners=(2 3 4)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1 learner\n\
             3: StateProbe match=0 next=2 learner\n\
             4: StateProbe match=0 next=2 learner\n",
        ),
        // Promotion keeps the progress.
        (
            "simple v2",
            "voters=(1 2) learners=(3 4)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2 learner\n\
             4: StateProbe match=0 next=2 learner\n",
        ),
        // Promoting two learners at once changes two voters.
        (
            "simple v3 v4",
            "more than one voter changed without entering joint config",
        ),
        // Demotion keeps the progress too.
        (
            "simple l1",
            "voters=(2) learners=(1 3 4)\n\
             1: StateProbe match=0 next=1 learner\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2 learner\n\
             4: StateProbe match=0 next=2 learner\n",
        ),
        ("simple l2", "removed all voters"),
        (
            "simple r3 r4 u2",
            "voters=(2) learners=(1)\n\
             1: StateProbe match=0 next=1 learner\n\
             2: StateProbe match=0 next=1\n",
        ),
    ]);
}

#[test]
fn joint_with_auto_leave() {
    script(&[
        ("simple v1", "voters=(1)\n1: StateProbe match=0 next=1\n"),
        (
            "enter-joint autoleave v2 v3",
            "voters=(1 2 3)&&(1) autoleave\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=1\n",
        ),
        ("enter-joint v4", "config is already joint"),
        (
            "simple v4",
            "can't apply simple config change in joint config",
        ),
        (
            "leave-joint",
            "voters=(1 2 3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=1\n",
        ),
        ("leave-joint", "can't leave a non-joint config"),
        // Replace the whole voter set at once, without auto-leave.
        (
            "enter-joint r1 r2 r3 v4 v5 v6",
            "voters=(4 5 6)&&(1 2 3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=1\n\
             4: StateProbe match=0 next=6\n\
             5: StateProbe match=0 next=6\n\
             6: StateProbe match=0 next=6\n",
        ),
        (
            "leave-joint",
            "voters=(4 5 6)\n\
             4: StateProbe match=0 next=6\n\
             5: StateProbe match=0 next=6\n\
             6: StateProbe match=0 next=6\n",
        ),
    ]);
}

#[test]
fn joint_demotion_stages_learners_next() {
    script(&[
        ("simple v1", "voters=(1)\n1: StateProbe match=0 next=1\n"),
        (
            "simple v2",
            "voters=(1 2)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n",
        ),
        (
            "simple v3",
            "voters=(1 2 3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        // 1 still votes in the outgoing half: staged, not yet a learner.
        (
            "enter-joint l1 v4 l5",
            "voters=(2 3 4)&&(1 2 3) learners=(5) learners_next=(1)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n\
             4: StateProbe match=0 next=3\n\
             5: StateProbe match=0 next=3 learner\n",
        ),
        (
            "leave-joint",
            "voters=(2 3 4) learners=(1 5)\n\
             1: StateProbe match=0 next=1 learner\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n\
             4: StateProbe match=0 next=3\n\
             5: StateProbe match=0 next=3 learner\n",
        ),
    ]);
}

#[test]
fn joint_changes_of_mind_within_one_change() {
    script(&[
        ("simple v1", "voters=(1)\n1: StateProbe match=0 next=1\n"),
        (
            "simple v2",
            "voters=(1 2)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n",
        ),
        // Demote 2, then promote it back; remove 1, then re-add it. The
        // progress of outgoing voters survives the removal.
        (
            "enter-joint l2 v2 r1 v1 v3",
            "voters=(1 2 3)&&(1 2)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        (
            "leave-joint",
            "voters=(1 2 3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        // Remove a voter in a joint change, then add it as a learner: it is
        // staged until the outgoing half is dropped.
        (
            "enter-joint r3 l3",
            "voters=(1 2)&&(1 2 3) learners_next=(3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2\n",
        ),
        // Leaving turns the staged learner into a learner, progress kept.
        (
            "leave-joint",
            "voters=(1 2) learners=(3)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             3: StateProbe match=0 next=2 learner\n",
        ),
        // Removing a learner in a joint change drops it at once.
        (
            "enter-joint r3 v4",
            "voters=(1 2 4)&&(1 2)\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n\
             4: StateProbe match=0 next=6\n",
        ),
    ]);
}

#[test]
fn joint_errors() {
    script(&[
        ("enter-joint v1", "can't make a zero-voter config joint"),
        ("leave-joint", "can't leave a non-joint config"),
        ("simple v1", "voters=(1)\n1: StateProbe match=0 next=2\n"),
        ("enter-joint r1", "removed all voters"),
        ("enter-joint l1", "removed all voters"),
        // The failed changes left the configuration untouched.
        ("simple u1", "voters=(1)\n1: StateProbe match=0 next=2\n"),
    ]);
}

#[test]
fn zero_node_ids_are_ignored() {
    script(&[
        (
            "simple v1 v0 r0 l0",
            "voters=(1)\n1: StateProbe match=0 next=1\n",
        ),
        (
            "enter-joint autoleave v0 v2",
            "voters=(1 2)&&(1) autoleave\n\
             1: StateProbe match=0 next=1\n\
             2: StateProbe match=0 next=1\n",
        ),
    ]);
}

#[test]
fn new_progress_uses_tracker_limits() {
    let mut trk = ProgressTracker::new(3, 1024);
    trk.config.voters.incoming.insert(1);
    trk.progress.insert(1, Progress::new(5, 3, 1024));
    let chg = Changer {
        tracker: &trk,
        last_index: 42,
    };
    let (_, prs) = chg
        .simple(&[ConfChangeSingle {
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 2,
        }])
        .unwrap();
    let pr = &prs[&2];
    assert_eq!((pr.matched, pr.next), (0, 42));
    assert!(pr.recent_active);
    assert!(pr.is_learner);
    assert_eq!(pr.inflights.size(), 3);
    assert_eq!(pr.inflights.max_bytes(), 1024);
}

#[test]
fn invalid_tracker_state_is_reported() {
    let single = |change_type, node_id| ConfChangeSingle {
        change_type,
        node_id,
    };
    let add2 = [single(ConfChangeType::AddNode, 2)];
    let base = || {
        let mut trk = ProgressTracker::new(10, 0);
        trk.config.voters.incoming.insert(1);
        trk.progress.insert(1, Progress::new(1, 10, 0));
        trk
    };
    let check = |trk: &ProgressTracker, want: &str| {
        let chg = Changer {
            tracker: trk,
            last_index: 1,
        };
        assert_eq!(chg.simple(&add2).unwrap_err(), want);
    };

    let mut trk = base();
    trk.progress.clear();
    check(&trk, "no progress for 1");

    let mut trk = base();
    trk.progress.insert(7, Progress::new(1, 10, 0));
    check(&trk, "7 has progress but is not a member");

    let mut trk = base();
    trk.config.learners.insert(1);
    check(&trk, "1 is in learners and incoming voters");
    trk.config.learners.clear();
    trk.progress.get_mut(&1).unwrap().is_learner = true;
    check(&trk, "1 is a voter but is marked as learner");

    let mut trk = base();
    trk.config.learners.insert(3);
    trk.progress.insert(3, Progress::new(1, 10, 0));
    check(&trk, "3 is in learners, but is not marked as learner");

    let mut trk = base();
    trk.config.learners_next.insert(3);
    trk.progress.insert(3, Progress::new(1, 10, 0));
    check(&trk, "3 is in learners_next, but not in outgoing voters");

    let mut trk = base();
    trk.config.auto_leave = true;
    check(&trk, "auto_leave must be false when not joint");
}

mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::types::ConfState;

    fn change() -> impl Strategy<Value = ConfChangeSingle> {
        (
            prop_oneof![
                Just(ConfChangeType::AddNode),
                Just(ConfChangeType::AddLearnerNode),
                Just(ConfChangeType::RemoveNode),
                Just(ConfChangeType::UpdateNode),
            ],
            1u64..=8,
        )
            .prop_map(|(change_type, node_id)| ConfChangeSingle {
                change_type,
                node_id,
            })
    }

    proptest! {
        /// Applying changes one simple change at a time, and applying them
        /// all through a joint configuration that is then left, end in the
        /// same configuration and progress (etcd's quick test).
        #[test]
        fn simple_steps_match_joint_change(
            voters in 1u64..=5,
            learners in proptest::collection::btree_set(6u64..=8, 0..3),
            ccs in proptest::collection::vec(change(), 1..8),
            auto_leave in any::<bool>(),
        ) {
            let mut trk = ProgressTracker::new(10, 0);
            let last_index = 7;
            let cs = ConfState {
                voters: (1..=voters).collect(),
                learners: learners.into_iter().collect(),
                ..Default::default()
            };
            let (config, progress) =
                restore(&Changer { tracker: &trk, last_index }, &cs).map_err(TestCaseError::fail)?;
            trk.config = config;
            trk.progress = progress;

            let mut simple = trk.clone();
            for cc in &ccs {
                let chg = Changer { tracker: &simple, last_index };
                match chg.simple(std::slice::from_ref(cc)) {
                    Ok((config, progress)) => {
                        simple.config = config;
                        simple.progress = progress;
                    }
                    Err(e) => {
                        // Only an intermediate step may remove every voter.
                        prop_assert_eq!(e, "removed all voters");
                        return Ok(());
                    }
                }
            }

            let (config, progress) = Changer { tracker: &trk, last_index }
                .enter_joint(auto_leave, &ccs)
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(config.auto_leave, auto_leave);
            let mut joint = trk.clone();
            joint.config = config;
            joint.progress = progress;
            let (config, progress) = Changer { tracker: &joint, last_index }
                .leave_joint()
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                describe(&config, &progress),
                describe(&simple.config, &simple.progress)
            );
            prop_assert_eq!(&config, &simple.config);
            prop_assert_eq!(&progress, &simple.progress);
        }
    }
}
