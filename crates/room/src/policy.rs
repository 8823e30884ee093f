//! Pure policy: who may enter which channel, who may send to whom.
//!
//! These functions decide; [`crate::Room`] applies their decisions.

use confer_proto::{ChannelKind, Role, Side};

/// May a participant with this role and side be in a channel of this kind (and, for a
/// caucus, of this side)?
pub fn may_enter(
    role: Role,
    side: Option<Side>,
    kind: ChannelKind,
    caucus_side: Option<Side>,
) -> bool {
    match kind {
        ChannelKind::Joint | ChannelKind::Breakout => true,
        // A caucus is one side's private room: that side's party and counsel, and the
        // mediators. Observers never sit in a caucus; the other side never does.
        ChannelKind::Caucus => {
            role.is_manager() || (role.needs_side() && side.is_some() && side == caucus_side)
        }
    }
}

/// Where a sender is, for relay decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'a, C> {
    /// In the waiting room.
    Waiting,
    /// In this channel.
    In(&'a C),
}

/// The outcome of a relay decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayDecision {
    /// Deliver.
    Allow,
    /// Refuse with `relay_not_allowed`.
    Deny,
}

/// May `sender` send to a channel (`to_channel`) or to a participant at `recipient` with
/// `recipient_role`?
///
/// Mediators may send anywhere, the waiting room included. Everyone else may send only into
/// its own current channel, or to one participant who is either a mediator or in the same
/// channel; nothing from a non-mediator reaches the waiting room.
pub fn may_relay<C: PartialEq>(
    sender_role: Role,
    sender_at: Location<'_, C>,
    target: RelayTo<'_, C>,
) -> RelayDecision {
    if sender_role.is_manager() {
        return RelayDecision::Allow;
    }
    let allowed = match (sender_at, target) {
        (Location::In(mine), RelayTo::Channel(ch)) => mine == ch,
        (_, RelayTo::Participant { role, .. }) if role.is_manager() => true,
        (
            Location::In(mine),
            RelayTo::Participant {
                at: Location::In(theirs),
                ..
            },
        ) => mine == theirs,
        _ => false,
    };
    if allowed {
        RelayDecision::Allow
    } else {
        RelayDecision::Deny
    }
}

/// A relay target, as [`may_relay`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTo<'a, C> {
    /// Every member of a channel.
    Channel(&'a C),
    /// One participant.
    Participant {
        /// Their role.
        role: Role,
        /// Where they are.
        at: Location<'a, C>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caucus_admits_only_its_side_and_mediators() {
        let a = Some(Side::A);
        let b = Some(Side::B);
        assert!(may_enter(Role::Mediator, None, ChannelKind::Caucus, a));
        assert!(may_enter(Role::CoMediator, None, ChannelKind::Caucus, a));
        assert!(may_enter(Role::Party, a, ChannelKind::Caucus, a));
        assert!(may_enter(Role::Counsel, a, ChannelKind::Caucus, a));
        assert!(!may_enter(Role::Party, b, ChannelKind::Caucus, a));
        assert!(!may_enter(Role::Counsel, b, ChannelKind::Caucus, a));
        assert!(!may_enter(Role::Observer, None, ChannelKind::Caucus, a));
        assert!(may_enter(Role::Observer, None, ChannelKind::Joint, None));
        assert!(may_enter(Role::Party, b, ChannelKind::Breakout, None));
    }

    #[test]
    fn relay_paths() {
        let joint = "joint";
        let caucus = "caucus-A";
        use Location::{In, Waiting};
        let p = |role, at| RelayTo::Participant { role, at };
        // Mediators: anywhere, the waiting room included.
        assert_eq!(
            may_relay(Role::Mediator, In(&joint), p(Role::Party, Waiting)),
            RelayDecision::Allow
        );
        assert_eq!(
            may_relay(Role::Mediator, In(&joint), RelayTo::Channel(&caucus)),
            RelayDecision::Allow
        );
        // A party: own channel only.
        assert_eq!(
            may_relay(Role::Party, In(&joint), RelayTo::Channel(&joint)),
            RelayDecision::Allow
        );
        assert_eq!(
            may_relay(Role::Party, In(&joint), RelayTo::Channel(&caucus)),
            RelayDecision::Deny
        );
        // A party: to a mediator anywhere, to others only in the same channel.
        assert_eq!(
            may_relay(Role::Party, In(&joint), p(Role::Mediator, In(&caucus))),
            RelayDecision::Allow
        );
        assert_eq!(
            may_relay(Role::Party, In(&joint), p(Role::Party, In(&joint))),
            RelayDecision::Allow
        );
        assert_eq!(
            may_relay(Role::Party, In(&joint), p(Role::Party, In(&caucus))),
            RelayDecision::Deny
        );
        // Nothing from a non-mediator reaches the waiting room.
        assert_eq!(
            may_relay(Role::Party, In(&joint), p(Role::Party, Waiting)),
            RelayDecision::Deny
        );
        assert_eq!(
            may_relay(Role::Party, Waiting, p(Role::Party, Waiting)),
            RelayDecision::Deny
        );
        // From the waiting room: only to a mediator (the consent acknowledgment).
        assert_eq!(
            may_relay(Role::Party, Waiting, p(Role::Mediator, In(&joint))),
            RelayDecision::Allow
        );
        assert_eq!(
            may_relay(Role::Party, Waiting, RelayTo::Channel(&joint)),
            RelayDecision::Deny
        );
    }
}
