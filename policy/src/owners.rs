//! Who may manage an app (its viewers, grants, access requests and settings) in the admin
//! UI: gateway administrators, and the app's owners — people named, or members of groups
//! named. Owners manage their apps and nothing else.

use std::collections::BTreeSet;

use crate::{GroupName, Identity, UserName};

/// The owners of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    pub users: BTreeSet<UserName>,
    pub groups: BTreeSet<GroupName>,
}

impl Owners {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// Whether `who` may manage the app owned by `owners`: an administrator, a named owner, or
/// a member of an owner group.
pub fn manages(owners: &Owners, who: &Identity) -> bool {
    who.admin || owners.users.contains(&who.user) || owners.groups.iter().any(|g| who.groups.contains(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_no_user_and_no_group() {
        let mut o = Owners::default();
        assert!(o.is_empty());
        o.users.insert(UserName::new("carol"));
        assert!(!o.is_empty());
        let mut g = Owners::default();
        g.groups.insert(GroupName::new("ops"));
        assert!(!g.is_empty());
    }

    fn who(user: &str, groups: &[&str], admin: bool) -> Identity {
        Identity {
            user: UserName::new(user),
            groups: groups.iter().map(|g| GroupName::new(g)).collect(),
            admin,
        }
    }

    #[test]
    fn table() {
        let o = Owners {
            users: [UserName::new("Olga")].into_iter().collect(),
            groups: [GroupName::new("Data Team")].into_iter().collect(),
        };
        assert!(manages(&o, &who("olga", &[], false)));
        assert!(manages(&o, &who("dan", &["data team"], false)));
        assert!(manages(&o, &who("root", &[], true)));
        assert!(!manages(&o, &who("eve", &["data"], false)));
        assert!(
            !manages(&Owners::default(), &who("olga", &["data team"], false)),
            "no owners: admins only"
        );
    }
}
