//! The four roles a person holds in an org, ordered by what they may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member's role in an org. The order is meaningful: each role may do everything the
/// roles below it may (`Viewer < Member < Admin < Owner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the org: members, teams, keys, credentials (`last4` only), routes, usage, prompts.
    Viewer,
    /// Also creates virtual keys, rotates and revokes its own, and writes prompts.
    Member,
    /// Also manages members, teams, credentials, routes, settings; reads audit, ledger and logs.
    Admin,
    /// Also grants and changes owners and admins, and alone sets `require_mfa`.
    Owner,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Member, Role::Admin, Role::Owner];

    /// The name stored in the database and used on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Whether this role meets a minimum.
    pub fn at_least(self, minimum: Role) -> bool {
        self >= minimum
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of the four; names are lowercase.
#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}`: expected owner, admin, member or viewer")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Owner > Role::Admin);
        assert!(Role::Admin > Role::Member);
        assert!(Role::Member > Role::Viewer);
        assert!(Role::Admin.at_least(Role::Member));
        assert!(!Role::Viewer.at_least(Role::Member));
    }

    #[test]
    fn role_names_round_trip_and_unknown_names_are_refused() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Owner".parse::<Role>().is_err());
    }
}
