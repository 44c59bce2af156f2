//! Sans-IO. The broker's side of fencing: which controller to obey.
//!
//! A controller that was paused (a long garbage collection, a `SIGSTOP`, a
//! virtual machine migrated) may wake up still believing it leads, and
//! send what it decided before the pause. By then another controller has
//! been elected with a greater epoch. A broker that remembers the greatest
//! controller epoch it has obeyed refuses the old one's orders:
//! `STALE_CONTROLLER_EPOCH`, Kafka's answer to a `LeaderAndIsr` from a
//! deposed controller.

use ch04_network::error::ErrorCode;

/// The greatest controller epoch a broker has obeyed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControllerFence {
    epoch: u64,
}

impl ControllerFence {
    /// The greatest epoch obeyed so far (0: none yet).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    // ANCHOR: admit
    /// Whether to obey an order from the controller of `epoch`: yes, and
    /// remember it, unless a later controller has been obeyed already.
    pub fn admit(&mut self, epoch: u64) -> Result<(), ErrorCode> {
        // exercise-hole: admit | Refuse an `epoch` lower than `self.epoch` with `ErrorCode::StaleControllerEpoch`; otherwise remember it (it may be greater) and admit it. The same epoch again is the same controller: admitted.
        // exercise-hint: Epochs only grow: one order from a new controller is enough to refuse every older one from then on.
        if epoch < self.epoch {
            return Err(ErrorCode::StaleControllerEpoch);
        }
        self.epoch = epoch;
        Ok(())
        // exercise-end
    }
    // ANCHOR_END: admit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_obeys_the_newest_controller_and_refuses_older_ones() {
        let mut fence = ControllerFence::default();
        assert_eq!(fence.admit(1), Ok(()));
        assert_eq!(fence.admit(1), Ok(()), "the same controller again");
        assert_eq!(fence.admit(3), Ok(()), "a later one, epochs may skip");
        assert_eq!(fence.admit(2), Err(ErrorCode::StaleControllerEpoch));
        assert_eq!(fence.admit(1), Err(ErrorCode::StaleControllerEpoch));
        assert_eq!(fence.epoch(), 3);
    }
}
