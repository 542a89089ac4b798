//! Gatehouse's access model: apps, identities, and the one [`evaluate`] that the proxy, the
//! App Portal and the admin "who can open this?" view all call. Pure: no IO, no async, no
//! HTTP. Every [`Decision`] carries a typed reason that the 403 page, the log line and the
//! admin UI show.
//!
//! Persistence lives in the nested crate `gatehouse-store` (`policy/store/`), which
//! depends on this one for the name types; [`evaluate`] never touches it.
#![forbid(unsafe_code)]

pub mod owners;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// A user name, compared case-insensitively (directories are).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

/// The longest user name accepted at sign-in, in bytes of what was typed. Longer names are
/// refused before they are counted, stored or logged.
pub const MAX_USER_NAME_BYTES: usize = 256;

/// Why typed text is not a user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNameError {
    /// Nothing is left once spaces and invisible characters are removed.
    Empty,
    /// More than [`MAX_USER_NAME_BYTES`] bytes were typed.
    TooLong,
}

impl fmt::Display for UserNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserNameError::Empty => f.write_str("the user name is empty"),
            UserNameError::TooLong => write!(f, "user names are at most {MAX_USER_NAME_BYTES} bytes"),
        }
    }
}

/// Code points that Unicode says to ignore when they cannot be shown (the
/// Default_Ignorable_Code_Point property: zero-width spaces and joiners, the byte order mark,
/// soft hyphen, variation selectors, bidi controls, tags, …). NFKC keeps them, so without
/// this `car\u{200b}ol` would be a different user for Gatehouse but not for a directory whose
/// matching rules map them to nothing (LDAP, RFC 4518).
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// One pass of [`normalize_user_name`].
fn normalize_pass(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let compat: String = s.chars().filter(|c| !is_default_ignorable(*c)).nfkc().collect();
    // Lower case can produce sequences NFKC writes otherwise (`İ` → `i̇`), hence NFKC again.
    let folded: String = compat.to_lowercase().nfkc().collect();
    folded.trim().to_string()
}

/// The one spelling of a user name that authentication, rate limits, sessions and grants all
/// compare: Unicode white space trimmed at both ends (`' carol'`, `'carol\u{a0}'`,
/// `'\u{3000}carol'`), default-ignorable code points removed, compatibility forms unified
/// (Unicode NFKC: full-width `ＣＡＲＯＬ` and ligatures are plain letters), and case folded (Unicode
/// lower case). Idempotent: a normalised name is its own normal form. Inner spaces stay.
pub fn normalize_user_name(raw: &str) -> String {
    let mut s = normalize_pass(raw);
    // Removing a character can bring two others together that NFKC would join; a second
    // pass settles it (the property test checks idempotence on arbitrary text).
    for _ in 0..3 {
        let again = normalize_pass(&s);
        if again == s {
            break;
        }
        s = again;
    }
    s
}

impl UserName {
    /// Normalises `name` with [`normalize_user_name`], so every spelling of one name is one
    /// user. Never fails; see [`UserName::parse`] for typed input.
    pub fn new(name: &str) -> Self {
        UserName(normalize_user_name(name))
    }

    /// A user name as typed at sign-in: refused when longer than [`MAX_USER_NAME_BYTES`]
    /// (before any work on it) or empty once normalised.
    pub fn parse(raw: &str) -> Result<UserName, UserNameError> {
        if raw.len() > MAX_USER_NAME_BYTES {
            return Err(UserNameError::TooLong);
        }
        let name = UserName::new(raw);
        if name.0.is_empty() {
            return Err(UserNameError::Empty);
        }
        Ok(name)
    }

    /// A user of a provider with its own namespace (an external OpenID Connect or SAML
    /// provider, by default): `<provider>:<name>`, both parts normalised. Such a name never
    /// equals a local or directory user's name, because sign-in refuses shared names that
    /// [claim](UserName::claimed_namespace) a provider's namespace; `allow_users` and grants
    /// name these users the same way (`okta:carol`).
    pub fn qualified(provider: &str, name: &str) -> Self {
        UserName(format!(
            "{}:{}",
            normalize_user_name(provider),
            normalize_user_name(name)
        ))
    }

    /// Which of `own_namespaces` (provider ids) this name is qualified with, if any: a name
    /// from a shared namespace (local, LDAP) that returns `Some` would pose as that
    /// provider's user and must be refused.
    pub fn claimed_namespace<'a>(&self, own_namespaces: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        own_namespaces.into_iter().find(|p| {
            let p = normalize_user_name(p);
            self.0.len() > p.len() && self.0.starts_with(&p) && self.0[p.len()..].starts_with(':')
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group name, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

impl GroupName {
    /// Case-folds `name` (Unicode lower case) so equal names compare equal.
    pub fn new(name: &str) -> Self {
        GroupName(name.trim().to_lowercase())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's groups, sorted and without duplicates. Cloning shares them (a reference
/// count), so the many cached sessions of people in the same groups can hold one copy; read
/// it as the `BTreeSet` it derefs to, change it with [`GroupSet::make_mut`].
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupSet(Arc<BTreeSet<GroupName>>);

impl GroupSet {
    /// The set to change (copied first if it is shared).
    pub fn make_mut(&mut self) -> &mut BTreeSet<GroupName> {
        Arc::make_mut(&mut self.0)
    }

    /// Whether `self` and `other` are one shared copy.
    pub fn shares(&self, other: &GroupSet) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// How many holders share this copy.
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl std::ops::Deref for GroupSet {
    type Target = BTreeSet<GroupName>;
    fn deref(&self) -> &BTreeSet<GroupName> {
        &self.0
    }
}

impl From<BTreeSet<GroupName>> for GroupSet {
    fn from(set: BTreeSet<GroupName>) -> Self {
        GroupSet(Arc::new(set))
    }
}

impl FromIterator<GroupName> for GroupSet {
    fn from_iter<I: IntoIterator<Item = GroupName>>(iter: I) -> Self {
        GroupSet(Arc::new(iter.into_iter().collect()))
    }
}

impl<'a> IntoIterator for &'a GroupSet {
    type Item = &'a GroupName;
    type IntoIter = std::collections::btree_set::Iter<'a, GroupName>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Who is calling, as a provider established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserName,
    pub groups: GroupSet,
    /// Gatehouse administrators may open every app.
    pub admin: bool,
}

/// Who may open an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Anyone signed in.
    Authenticated,
    /// Admins, plus these groups and users. Both empty: admins only.
    Restricted {
        groups: BTreeSet<GroupName>,
        users: BTreeSet<UserName>,
    },
}

/// The policy of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPolicy {
    pub slug: String,
    pub access: Access,
}

/// Why a request may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    Public,
    SignedIn,
    Admin,
    ListedUser,
    ListedGroup(GroupName),
}

/// Why a request may not proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    /// Nobody is signed in and the app is not public.
    NotSignedIn,
    /// Signed in, but neither the user nor any of their groups is allowed.
    NotAllowed,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allow::Public => f.write_str("the app is public"),
            Allow::SignedIn => f.write_str("the app is open to everyone signed in"),
            Allow::Admin => f.write_str("administrators may open every app"),
            Allow::ListedUser => f.write_str("the user is on the app's allow-list"),
            Allow::ListedGroup(g) => write!(f, "member of allowed group {g}"),
        }
    }
}

impl fmt::Display for Deny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deny::NotSignedIn => f.write_str("you are not signed in"),
            Deny::NotAllowed => f.write_str("neither you nor any of your groups is on this app's allow-list"),
        }
    }
}

/// Decides whether `who` (None: anonymous) may open `app`. Deny by default: only the
/// reasons listed in [`Allow`] let a request through.
pub fn evaluate(app: &AppPolicy, who: Option<&Identity>) -> Decision {
    let who = match (&app.access, who) {
        (Access::Public, _) => return Decision::Allow(Allow::Public),
        (_, None) => return Decision::Deny(Deny::NotSignedIn),
        (_, Some(who)) => who,
    };
    if let Access::Authenticated = app.access {
        return Decision::Allow(Allow::SignedIn);
    }
    if who.admin {
        return Decision::Allow(Allow::Admin);
    }
    let Access::Restricted { groups, users } = &app.access else {
        return Decision::Deny(Deny::NotAllowed);
    };
    if users.contains(&who.user) {
        return Decision::Allow(Allow::ListedUser);
    }
    // Iterate the smaller set: a user may be in thousands of groups.
    let hit = if groups.len() <= who.groups.len() {
        groups.iter().find(|g| who.groups.contains(*g))
    } else {
        who.groups.iter().find(|g| groups.contains(*g))
    };
    match hit {
        Some(g) => Decision::Allow(Allow::ListedGroup(g.clone())),
        None => Decision::Deny(Deny::NotAllowed),
    }
}

/// Who may open an app, for the admin UI's "who can open this?" view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Anyone, signed in or not.
    Everyone,
    /// Anyone signed in.
    SignedIn,
    /// Administrators, plus these groups and users (sorted).
    Listed {
        groups: Vec<GroupName>,
        users: Vec<UserName>,
    },
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Audience::Everyone => f.write_str("everyone, signed in or not"),
            Audience::SignedIn => f.write_str("everyone who is signed in"),
            Audience::Listed { groups, users } if groups.is_empty() && users.is_empty() => {
                f.write_str("administrators only")
            }
            Audience::Listed { groups, users } => {
                f.write_str("administrators")?;
                if !groups.is_empty() {
                    let g: Vec<&str> = groups.iter().map(GroupName::as_str).collect();
                    write!(f, ", members of {}", g.join(", "))?;
                }
                if !users.is_empty() {
                    let u: Vec<&str> = users.iter().map(UserName::as_str).collect();
                    write!(f, ", and {}", u.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// Who may open `app`, derived from the same policy [`evaluate`] applies.
pub fn who_can_open(app: &AppPolicy) -> Audience {
    match &app.access {
        Access::Public => Audience::Everyone,
        Access::Authenticated => Audience::SignedIn,
        Access::Restricted { groups, users } => Audience::Listed {
            groups: groups.iter().cloned().collect(),
            users: users.iter().cloned().collect(),
        },
    }
}

/// Why `who` may or may not open `app` — the admin UI's "why?" view. The very decision the
/// proxy makes: it is [`evaluate`], named for the question an admin asks.
pub fn why(app: &AppPolicy, who: Option<&Identity>) -> Decision {
    evaluate(app, who)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn group_sets_are_shared_until_changed() {
        let names = |set: &GroupSet| set.iter().map(ToString::to_string).collect::<Vec<_>>();
        let a = GroupSet::from(BTreeSet::from([GroupName::new("Staff"), GroupName::new("ops")]));
        assert_eq!(names(&a), ["ops", "staff"]);
        assert_eq!((&a).into_iter().count(), 2);
        assert_eq!(a.holders(), 1);
        let mut b = a.clone();
        assert!(a.shares(&b) && b.shares(&a));
        assert_eq!((a.holders(), b.holders()), (2, 2));
        // Changing one copies it first: the other holder keeps its groups.
        b.make_mut().insert(GroupName::new("auditors"));
        assert!(!a.shares(&b));
        assert_eq!(names(&a), ["ops", "staff"]);
        assert_eq!(names(&b), ["auditors", "ops", "staff"]);
        assert_eq!((a.holders(), b.holders()), (1, 1));
        // Equal contents compare and hash equal whether shared or not.
        let c: GroupSet = [GroupName::new("ops"), GroupName::new("STAFF")].into_iter().collect();
        assert_eq!(a, c);
        assert!(!a.shares(&c));
    }

    fn restricted(groups: &[&str], users: &[&str]) -> AppPolicy {
        AppPolicy {
            slug: "app".into(),
            access: Access::Restricted {
                groups: groups.iter().map(|g| GroupName::new(g)).collect(),
                users: users.iter().map(|u| UserName::new(u)).collect(),
            },
        }
    }

    fn who(user: &str, groups: &[&str], admin: bool) -> Identity {
        Identity {
            user: UserName::new(user),
            groups: groups.iter().map(|g| GroupName::new(g)).collect(),
            admin,
        }
    }

    #[test]
    fn names_and_errors_read_as_shown_on_pages() {
        // The 403 page and the login page show these words (mutation testing: Display).
        assert_eq!(GroupName::new(" Finance ").to_string(), "finance");
        assert_eq!(Allow::Public.to_string(), "the app is public");
        assert_eq!(
            Allow::ListedGroup(GroupName::new("finance")).to_string(),
            "member of allowed group finance"
        );
        assert_eq!(Deny::NotSignedIn.to_string(), "you are not signed in");
        assert_eq!(
            Deny::NotAllowed.to_string(),
            "neither you nor any of your groups is on this app's allow-list"
        );
        // Only users, or only groups, are listed: not "administrators only".
        assert_eq!(
            who_can_open(&restricted(&[], &["bob"])).to_string(),
            "administrators, and bob"
        );
        assert_eq!(
            who_can_open(&restricted(&["ops"], &[])).to_string(),
            "administrators, members of ops"
        );
        assert_eq!(UserNameError::Empty.to_string(), "the user name is empty");
        assert_eq!(
            UserNameError::TooLong.to_string(),
            format!("user names are at most {MAX_USER_NAME_BYTES} bytes")
        );
    }

    #[test]
    fn table() {
        let public = AppPolicy {
            slug: "p".into(),
            access: Access::Public,
        };
        let authn = AppPolicy {
            slug: "a".into(),
            access: Access::Authenticated,
        };
        let fin = restricted(&["Finance"], &["carol"]);
        let admins_only = restricted(&[], &[]);
        let alice = who("alice", &["finance"], false);
        let bob = who("bob", &["sales"], false);
        let carol = who("CAROL", &[], false);
        let root = who("root", &[], true);
        use Decision::*;
        let cases: Vec<(&AppPolicy, Option<&Identity>, Decision)> = vec![
            (&public, None, Allow(super::Allow::Public)),
            (&public, Some(&bob), Allow(super::Allow::Public)),
            (&authn, None, Deny(super::Deny::NotSignedIn)),
            (&authn, Some(&bob), Allow(super::Allow::SignedIn)),
            (&fin, None, Deny(super::Deny::NotSignedIn)),
            (
                &fin,
                Some(&alice),
                Allow(super::Allow::ListedGroup(GroupName::new("finance"))),
            ),
            (&fin, Some(&bob), Deny(super::Deny::NotAllowed)),
            (&fin, Some(&carol), Allow(super::Allow::ListedUser)),
            (&fin, Some(&root), Allow(super::Allow::Admin)),
            (&admins_only, Some(&alice), Deny(super::Deny::NotAllowed)),
            (&admins_only, Some(&root), Allow(super::Allow::Admin)),
            (&admins_only, None, Deny(super::Deny::NotSignedIn)),
        ];
        for (i, (app, id, want)) in cases.into_iter().enumerate() {
            assert_eq!(evaluate(app, id), want, "case {i}");
        }
    }

    #[test]
    fn audiences_describe_the_policy() {
        let public = AppPolicy {
            slug: "p".into(),
            access: Access::Public,
        };
        assert_eq!(who_can_open(&public).to_string(), "everyone, signed in or not");
        assert_eq!(who_can_open(&restricted(&[], &[])).to_string(), "administrators only");
        let fin = restricted(&["Finance", "audit"], &["carol"]);
        assert_eq!(
            who_can_open(&fin).to_string(),
            "administrators, members of audit, finance, and carol"
        );
        assert_eq!(
            why(&fin, Some(&who("x", &["AUDIT"], false))),
            Decision::Allow(Allow::ListedGroup(GroupName::new("audit")))
        );
    }

    /// Every spelling of one name that people (or attackers) type is the same user.
    #[test]
    fn user_name_spellings_table() {
        for (typed, want) in [
            ("carol", "carol"),
            (" carol", "carol"),
            ("carol ", "carol"),
            ("\tCAROL\n", "carol"),
            ("\u{a0}carol\u{a0}", "carol"),     // no-break space
            ("\u{3000}carol\u{3000}", "carol"), // ideographic space
            ("\u{2007}carol\u{202f}", "carol"), // figure space, narrow no-break space
            ("\u{feff}carol", "carol"),         // byte order mark
            ("car\u{200b}ol", "carol"),         // zero-width space
            ("c\u{ad}arol", "carol"),           // soft hyphen
            ("ＣＡＲＯＬ", "carol"),            // full-width letters (NFKC)
            ("ｃａｒｏｌ", "carol"),
            ("\u{1d41a}lice", "alice"), // mathematical bold a (NFKC)
            ("ﬁona", "fiona"),          // ligature (NFKC)
            ("Ω", "ω"),
            ("Åsa", "åsa"),
            ("A\u{30a}sa", "åsa"),          // decomposed → composed
            ("jean pierre", "jean pierre"), // inner spaces stay
            ("o'b(r)i*e\\n", "o'b(r)i*e\\n"),
            ("   ", ""),
        ] {
            assert_eq!(normalize_user_name(typed), want, "{typed:?}");
            assert_eq!(UserName::new(typed).as_str(), want, "{typed:?}");
        }
    }

    #[test]
    fn provider_namespaces_keep_same_spelled_names_apart() {
        // Issue 11, defect 8: an OIDC `preferred_username` of `Carol ` was local `carol`.
        let external = UserName::qualified("oidc", "Carol ");
        assert_eq!(external.as_str(), "oidc:carol");
        assert_ne!(external, UserName::new("carol"));
        assert_eq!(external.claimed_namespace(["ldap", "oidc"]), Some("oidc"));
        assert_eq!(UserName::new("carol").claimed_namespace(["oidc"]), None);
        assert_eq!(UserName::new("OIDC:Carol").claimed_namespace(["oidc"]), Some("oidc"));
        assert_eq!(UserName::new("oidcx:carol").claimed_namespace(["oidc"]), None);
        assert_eq!(UserName::new("oidc:").claimed_namespace(["oidc"]), Some("oidc"));
        let app = |users: &[&str]| AppPolicy {
            slug: "fin".into(),
            access: Access::Restricted {
                groups: BTreeSet::new(),
                users: users.iter().map(|u| UserName::new(u)).collect(),
            },
        };
        let who = |user: UserName| Identity {
            user,
            groups: GroupSet::default(),
            admin: false,
        };
        assert!(!evaluate(&app(&["carol"]), Some(&who(external.clone()))).is_allowed());
        assert!(evaluate(&app(&["oidc:carol"]), Some(&who(external.clone()))).is_allowed());
        assert!(evaluate(&app(&["carol"]), Some(&who(UserName::new(" Carol")))).is_allowed());
        assert!(!evaluate(&app(&["oidc:carol"]), Some(&who(UserName::new("carol")))).is_allowed());
    }

    #[test]
    fn user_names_are_parsed_with_a_length_cap() {
        assert_eq!(UserName::parse(" Carol ").unwrap(), UserName::new("carol"));
        assert_eq!(UserName::parse(" \u{3000} "), Err(UserNameError::Empty));
        let long = "a".repeat(MAX_USER_NAME_BYTES + 1);
        assert_eq!(UserName::parse(&long), Err(UserNameError::TooLong));
        assert!(UserName::parse(&long[1..]).is_ok());
        // The cap is on what was typed: padding cannot smuggle in a longer name.
        let padded = format!("{}carol", " ".repeat(MAX_USER_NAME_BYTES));
        assert_eq!(UserName::parse(&padded), Err(UserNameError::TooLong));
    }

    /// Characters that are spaces, invisible, or other spellings of ASCII letters.
    fn noise() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            " ", "\t", "\u{a0}", "\u{3000}", "\u{2002}", "\u{2009}", "\u{202f}", "\u{205f}", "\u{feff}",
        ])
        .prop_map(str::to_string)
    }

    proptest! {
        /// A provider's user, whatever the IdP calls them, is in that provider's namespace
        /// and equals no shared name that does not claim it (those are refused at sign-in).
        #[test]
        fn qualified_names_stay_in_their_namespace(provider in "[a-z][a-z0-9_-]{0,8}", name in any::<String>(), other in any::<String>()) {
            let q = UserName::qualified(&provider, &name);
            prop_assert_eq!(q.claimed_namespace([provider.as_str()]), Some(provider.as_str()));
            prop_assert_eq!(UserName::new(q.as_str()), q.clone());
            let shared = UserName::new(&other);
            if shared.claimed_namespace([provider.as_str()]).is_none() {
                prop_assert_ne!(shared, q);
            }
        }

        /// Normalising is idempotent: a normalised name is its own normal form, for any text.
        #[test]
        fn user_name_normalisation_is_idempotent(s in any::<String>()) {
            let once = normalize_user_name(&s);
            prop_assert_eq!(normalize_user_name(&once), once.clone());
            prop_assert_eq!(UserName::new(&once).to_string(), once);
        }

        /// Any padding with Unicode spaces, any case, and full-width forms of a name give the
        /// same user.
        #[test]
        fn spaced_cased_and_wide_variants_are_one_user(
            name in "[a-z][a-z0-9._-]{0,15}",
            before in proptest::collection::vec(noise(), 0..4),
            after in proptest::collection::vec(noise(), 0..4),
            upper in proptest::collection::vec(any::<bool>(), 16),
            wide in any::<bool>(),
        ) {
            let body: String = name
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                .map(|c| if wide && c.is_ascii_alphanumeric() {
                    char::from_u32(c as u32 - 0x21 + 0xff01).unwrap_or(c)
                } else { c })
                .collect();
            let typed = format!("{}{body}{}", before.concat(), after.concat());
            prop_assert_eq!(UserName::new(&typed), UserName::new(&name));
        }
    }

    proptest! {
        /// Whoever the audience lists is allowed, and nobody else who is not an admin.
        #[test]
        fn audience_agrees_with_evaluate(
            allowed in proptest::collection::btree_set("[a-c]", 0..3),
            mine in proptest::collection::btree_set("[a-c]", 0..3),
        ) {
            let a: Vec<&str> = allowed.iter().map(String::as_str).collect();
            let m: Vec<&str> = mine.iter().map(String::as_str).collect();
            let app = restricted(&a, &[]);
            let Audience::Listed { groups, .. } = who_can_open(&app) else { panic!("restricted") };
            let member = who("u", &m, false);
            let listed = groups.iter().any(|g| member.groups.contains(g));
            prop_assert_eq!(evaluate(&app, Some(&member)).is_allowed(), listed);
        }

        /// Anonymous callers reach public apps only.
        #[test]
        fn anonymous_only_public(groups in proptest::collection::btree_set("[a-z]{1,4}", 0..4)) {
            let g: Vec<&str> = groups.iter().map(String::as_str).collect();
            prop_assert_eq!(evaluate(&restricted(&g, &[]), None), Decision::Deny(Deny::NotSignedIn));
        }

        /// A non-admin reaches a restricted app exactly when the user or a group is listed.
        #[test]
        fn restricted_is_exactly_the_allow_list(
            allowed in proptest::collection::btree_set("[a-d]{1,2}", 0..5),
            mine in proptest::collection::btree_set("[a-d]{1,2}", 0..5),
            listed_user in any::<bool>(),
        ) {
            let a: Vec<&str> = allowed.iter().map(String::as_str).collect();
            let m: Vec<&str> = mine.iter().map(String::as_str).collect();
            let users: &[&str] = if listed_user { &["u"] } else { &[] };
            let d = evaluate(&restricted(&a, users), Some(&who("U", &m, false)));
            let expect = listed_user || allowed.intersection(&mine).next().is_some();
            prop_assert_eq!(d.is_allowed(), expect);
        }
    }
}
