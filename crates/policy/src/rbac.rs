//! The RBAC matrix (AC-1): every admin action with the minimum role that may take it, and the
//! owner rules of API.md. The gateway's one guard asks [`Action::min_role`]; handlers ask the
//! rule functions below for decisions that depend on the target. No handler compares roles.

use portcullis_core::Role;

/// Every action of the org-scoped admin plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the org and its settings.
    OrgRead,
    /// Change org settings; `require_mfa` is the owner's alone.
    SettingsUpdate,
    /// List the members.
    MembersRead,
    /// Invite someone by email, with a role.
    MembersAdd,
    /// Change a member's role.
    MembersUpdate,
    /// Remove a member, which revokes their keys and ends their sessions.
    MembersRemove,
    /// End a member's sessions in the org.
    MembersEndSessions,
    /// Revoke an open invitation.
    InvitesRevoke,
    /// List the teams.
    TeamsRead,
    /// Create a team, with its budget if any.
    TeamsCreate,
    /// Change a team's name or budget.
    TeamsUpdate,
    /// Delete a team.
    TeamsDelete,
    /// List virtual keys: their metadata and `last4`, never the secret.
    KeysRead,
    /// Create a virtual key, which its creator then owns.
    KeysCreate,
    /// Give a key a new secret; a member only its own keys.
    KeysRotate,
    /// Revoke a key; a member only its own keys.
    KeysRevoke,
    /// List provider credentials, `last4` only.
    CredentialsRead,
    /// Add, replace or remove provider credentials.
    CredentialsManage,
    /// List the model routes.
    RoutesRead,
    /// Set or remove a model route.
    RoutesManage,
    /// Read the audit trail and verify its chain.
    AuditRead,
    /// Read aggregated usage.
    UsageRead,
    /// Read the spend ledger: the financial records.
    LedgerRead,
    /// Request logs and their content.
    LogsRead,
    /// Deleting an end user's logs and content (RM-5).
    SubjectDelete,
    /// List prompts and their versions.
    PromptsRead,
    /// Create prompts and add versions.
    PromptsWrite,
    /// Move a prompt's label: deploy or roll back.
    PromptsDeploy,
}

impl Action {
    /// Every action, in one place, so that tests can hold each to the matrix.
    pub const ALL: [Action; 28] = [
        Action::OrgRead,
        Action::SettingsUpdate,
        Action::MembersRead,
        Action::MembersAdd,
        Action::MembersUpdate,
        Action::MembersRemove,
        Action::MembersEndSessions,
        Action::InvitesRevoke,
        Action::TeamsRead,
        Action::TeamsCreate,
        Action::TeamsUpdate,
        Action::TeamsDelete,
        Action::KeysRead,
        Action::KeysCreate,
        Action::KeysRotate,
        Action::KeysRevoke,
        Action::CredentialsRead,
        Action::CredentialsManage,
        Action::RoutesRead,
        Action::RoutesManage,
        Action::AuditRead,
        Action::UsageRead,
        Action::LedgerRead,
        Action::LogsRead,
        Action::SubjectDelete,
        Action::PromptsRead,
        Action::PromptsWrite,
        Action::PromptsDeploy,
    ];

    /// The least role that may take the action at all. Owner rules below may narrow it.
    pub const fn min_role(self) -> Role {
        match self {
            Action::OrgRead
            | Action::MembersRead
            | Action::TeamsRead
            | Action::KeysRead
            | Action::CredentialsRead
            | Action::RoutesRead
            | Action::UsageRead
            | Action::PromptsRead => Role::Viewer,
            // A member manages the keys it owns; `may_manage_key` narrows rotate and revoke.
            Action::KeysCreate | Action::KeysRotate | Action::KeysRevoke => Role::Member,
            Action::PromptsWrite => Role::Member,
            Action::SettingsUpdate
            | Action::MembersAdd
            | Action::MembersUpdate
            | Action::MembersRemove
            | Action::MembersEndSessions
            | Action::InvitesRevoke
            | Action::TeamsCreate
            | Action::TeamsUpdate
            | Action::TeamsDelete
            | Action::CredentialsManage
            | Action::RoutesManage
            | Action::AuditRead
            | Action::LedgerRead
            | Action::LogsRead
            | Action::SubjectDelete
            | Action::PromptsDeploy => Role::Admin,
        }
    }
}

/// Why an action is refused. The gateway answers 403 `permission_denied`, or 409 for the
/// last owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The caller's role is below the one named, which the action needs.
    #[error("this action needs the {0} role")]
    RoleTooLow(Role),
    /// Only an owner grants, changes or removes an owner or admin, or sets `require_mfa`.
    #[error("only an owner may grant, change or remove an owner or admin")]
    OwnerOnly,
    /// A member rotates and revokes only the keys it created.
    #[error("a member may manage only the keys it created")]
    NotOwnKey,
    /// The change would leave the org without an owner.
    #[error("an organization keeps at least one owner")]
    LastOwner,
}

/// Whether `role` may take `action` at all: the guard's one check, before any owner rule.
pub fn authorize(action: Action, role: Role) -> Result<(), Denial> {
    let minimum = action.min_role();
    if role.at_least(minimum) {
        Ok(())
    } else {
        Err(Denial::RoleTooLow(minimum))
    }
}

/// Whether `actor` may give someone the role `granted`: nobody grants above their own role,
/// and only an owner grants owner or admin.
pub fn may_grant(actor: Role, granted: Role) -> Result<(), Denial> {
    if granted >= Role::Admin && actor != Role::Owner {
        Err(Denial::OwnerOnly)
    } else if granted > actor {
        Err(Denial::RoleTooLow(granted))
    } else {
        Ok(())
    }
}

/// Whether `actor` may change a member whose role is `current` to `new` (`None`: remove).
/// `owners` is how many owners the org has now.
pub fn may_change_member(
    actor: Role,
    current: Role,
    new: Option<Role>,
    owners: usize,
) -> Result<(), Denial> {
    if current >= Role::Admin && actor != Role::Owner {
        return Err(Denial::OwnerOnly);
    }
    if let Some(new) = new {
        may_grant(actor, new)?;
    }
    let stays_owner = new == Some(Role::Owner);
    if current == Role::Owner && !stays_owner && owners <= 1 {
        return Err(Denial::LastOwner);
    }
    Ok(())
}

/// Whether `actor` may rotate or revoke a key; `own` when the actor created it.
pub fn may_manage_key(actor: Role, own: bool) -> Result<(), Denial> {
    if own || actor.at_least(Role::Admin) {
        Ok(())
    } else {
        Err(Denial::NotOwnKey)
    }
}

/// Whether a person of `role` in an org with `require_mfa` must have proved a second factor
/// (AC-4): owners and admins there. The guard asks it of every call, and removing one's own
/// TOTP asks it of every org one belongs to.
pub fn needs_second_factor(role: Role, require_mfa: bool) -> bool {
    require_mfa && role.at_least(Role::Admin)
}

/// Whether `actor` may change an org setting. `require_mfa` is the owner's alone.
pub fn may_change_setting(actor: Role, setting: &str) -> Result<(), Denial> {
    if setting == "require_mfa" && actor != Role::Owner {
        Err(Denial::OwnerOnly)
    } else {
        authorize(Action::SettingsUpdate, actor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ac_4_only_owners_and_admins_of_an_org_requiring_it_need_a_second_factor() {
        for role in Role::ALL {
            assert!(!needs_second_factor(role, false), "{role:?}");
            assert_eq!(
                needs_second_factor(role, true),
                matches!(role, Role::Owner | Role::Admin),
                "{role:?}"
            );
        }
    }

    #[test]
    fn ac_1_each_role_may_do_what_the_roles_below_it_may() {
        for action in Action::ALL {
            let allowed: Vec<bool> = Role::ALL
                .iter()
                .map(|role| authorize(action, *role).is_ok())
                .collect();
            // Once allowed, allowed for every stronger role.
            assert!(
                allowed.windows(2).all(|w| !w[0] || w[1]),
                "{action:?}: {allowed:?}"
            );
            assert!(authorize(action, Role::Owner).is_ok());
        }
        assert!(authorize(Action::KeysCreate, Role::Viewer).is_err());
        assert!(authorize(Action::AuditRead, Role::Member).is_err());
    }

    #[test]
    fn ac_1_only_owners_grant_or_touch_owners_and_admins() {
        assert_eq!(may_grant(Role::Admin, Role::Admin), Err(Denial::OwnerOnly));
        assert_eq!(may_grant(Role::Admin, Role::Owner), Err(Denial::OwnerOnly));
        assert!(may_grant(Role::Admin, Role::Member).is_ok());
        assert!(may_grant(Role::Owner, Role::Owner).is_ok());
        assert_eq!(
            may_change_member(Role::Admin, Role::Admin, Some(Role::Member), 1),
            Err(Denial::OwnerOnly)
        );
        assert!(may_change_member(Role::Admin, Role::Viewer, Some(Role::Member), 1).is_ok());
        assert!(may_change_member(Role::Admin, Role::Member, None, 1).is_ok());
    }

    #[test]
    fn ac_1_the_last_owner_stays() {
        assert_eq!(
            may_change_member(Role::Owner, Role::Owner, Some(Role::Admin), 1),
            Err(Denial::LastOwner)
        );
        assert_eq!(
            may_change_member(Role::Owner, Role::Owner, None, 1),
            Err(Denial::LastOwner)
        );
        assert!(may_change_member(Role::Owner, Role::Owner, None, 2).is_ok());
        assert!(may_change_member(Role::Owner, Role::Owner, Some(Role::Owner), 1).is_ok());
    }

    #[test]
    fn ac_1_members_manage_their_own_keys_and_admins_any() {
        assert!(may_manage_key(Role::Member, true).is_ok());
        assert_eq!(may_manage_key(Role::Member, false), Err(Denial::NotOwnKey));
        assert!(may_manage_key(Role::Admin, false).is_ok());
        assert_eq!(
            may_change_setting(Role::Admin, "require_mfa"),
            Err(Denial::OwnerOnly)
        );
        assert!(may_change_setting(Role::Admin, "logging_level").is_ok());
        assert!(may_change_setting(Role::Member, "logging_level").is_err());
    }
}
