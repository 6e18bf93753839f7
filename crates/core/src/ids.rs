//! Typed UUIDv7 identifiers. One org UUID names a tenant everywhere (CF-2): there is no second
//! tenant identifier to map to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps a UUID read back from storage or the wire; it is not checked to be a v7.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID itself, for binding in queries and hashing into the audit chain.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// An organization: the tenant. Its UUID is the `org_id` of every tenant row.
    OrgId
);
id_type!(
    /// A person who can log in; may belong to several orgs.
    UserId
);
id_type!(
    /// A team inside one org, carrying its own budget.
    TeamId
);
id_type!(
    /// One entry of an org's audit chain.
    AuditEventId
);
id_type!(
    /// A virtual key or master key (not its secret).
    KeyId
);
id_type!(
    /// A login session (not its token).
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_and_round_trip_through_text() {
        let id = OrgId::new();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.to_string().parse::<OrgId>().ok(), Some(id));
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let first = UserId::new();
        let second = UserId::new();
        assert!(first < second);
    }
}
