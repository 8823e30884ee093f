//! Identifiers and roles.
//!
//! Ids that link people ([`ParticipantId`], [`SessionId`]) print redacted under `Debug`, so
//! that a stray `{:?}` in a log line never carries them; use `as_str` where the wire needs them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an id or side was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// Empty, too long, or a character outside `[A-Za-z0-9_-]`.
    Malformed,
}

impl std::error::Error for IdError {}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("identifier must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, redacted = $redacted:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses an id: 1 to 64 characters of `[A-Za-z0-9_-]`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if valid_id(&s) { Ok(Self(s)) } else { Err(IdError::Malformed) }
            }

            /// The id as it travels on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if $redacted {
                    write!(f, concat!(stringify!($name), "([redacted])"))
                } else {
                    write!(f, concat!(stringify!($name), "({})"), self.0)
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(s.into_owned()).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A session, chosen by whoever mints the mediator's token. Not personal, but it links
    /// everyone in one mediation, so it is redacted in `Debug`.
    SessionId, redacted = true
);
string_id!(
    /// A participant's pseudonym for one join: random, assigned by the server, never reused.
    ParticipantId, redacted = true
);
string_id!(
    /// A channel of a session: `joint`, `caucus-A`, `breakout-1`, ... Assigned by the server.
    ChannelId, redacted = false
);

impl ChannelId {
    /// The joint session every admitted participant starts in.
    pub fn joint() -> Self {
        Self("joint".to_owned())
    }

    /// The caucus of one side: that side's parties and counsel, with the mediators.
    pub fn caucus(side: Side) -> Self {
        Self(format!("caucus-{side}"))
    }

    /// The n-th breakout room of a session.
    pub fn breakout(n: u32) -> Self {
        Self(format!("breakout-{n}"))
    }
}

/// What a participant is in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the session: admits, moves, locks, kicks, ends.
    Mediator,
    /// Can do everything the mediator does.
    CoMediator,
    /// A party to the dispute, on one side.
    Party,
    /// A party's lawyer or supporter, bound to that party's side.
    Counsel,
    /// A trainee or observer: joint session and breakouts only.
    Observer,
}

impl Role {
    /// Mediator or co-mediator: the roles that run the session.
    pub fn is_manager(self) -> bool {
        matches!(self, Role::Mediator | Role::CoMediator)
    }

    /// Party and counsel belong to a side; nobody else does.
    pub fn needs_side(self) -> bool {
        matches!(self, Role::Party | Role::Counsel)
    }

    /// The wire name (`co_mediator`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mediator => "mediator",
            Role::CoMediator => "co_mediator",
            Role::Party => "party",
            Role::Counsel => "counsel",
            Role::Observer => "observer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "mediator" => Role::Mediator,
            "co_mediator" | "co-mediator" => Role::CoMediator,
            "party" => Role::Party,
            "counsel" => Role::Counsel,
            "observer" => Role::Observer,
            _ => {
                return Err(format!(
                    "unknown role {s:?}: use mediator, co_mediator, party, counsel or observer"
                ));
            }
        })
    }
}

/// A side of the dispute: `A` to `Z` on the wire (1 to 26 inside).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Side(u8);

impl Side {
    /// Side A.
    pub const A: Side = Side(1);
    /// Side B.
    pub const B: Side = Side(2);

    /// Side number 1..=26.
    pub fn new(n: u8) -> Result<Self, IdError> {
        if (1..=26).contains(&n) {
            Ok(Side(n))
        } else {
            Err(IdError::Malformed)
        }
    }

    /// The number of the side, 1 for A (as in confer/1 rosters).
    pub fn number(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", char::from(b'A' + self.0 - 1))
    }
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Side({self})")
    }
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            [c @ b'A'..=b'Z'] => Ok(Side(c - b'A' + 1)),
            [c @ b'a'..=b'z'] => Ok(Side(c - b'a' + 1)),
            _ => Err(format!("unknown side {s:?}: use a single letter A to Z")),
        }
    }
}

impl Serialize for Side {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Side {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match s.as_bytes() {
            [c @ b'A'..=b'Z'] => Ok(Side(c - b'A' + 1)),
            _ => Err(serde::de::Error::custom("side must be one letter A to Z")),
        }
    }
}

/// The kind of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Everyone admitted.
    Joint,
    /// One side's private room with the mediators.
    Caucus,
    /// Any membership the mediator picks.
    Breakout,
}
