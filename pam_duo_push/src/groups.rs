//! The `groups` check, with duo_unix's semantics.
//!
//! `groups` is a space-separated list of entries; the user needs Duo when ANY entry matches.
//! Each entry is itself a comma-separated pattern list in OpenSSH's `match_pattern_list` style:
//! `*` matches any run of characters, `?` one character, and a pattern starting with `!` is a
//! negation. An entry matches when one of the user's groups (primary and supplementary) matches a
//! positive pattern of the entry and none of the user's groups matches a negated pattern of that
//! entry (a negated match wins). So `users,!wheel,!*admin guests` means: members of `users` that
//! are neither in `wheel` nor in any group ending in `admin`, and every member of `guests`.
//!
//! Matching is case-sensitive, like group names.

/// Whether `text` matches the glob `pattern` (`*` and `?`, no escapes, no character classes).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` in the pattern, and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry from there.
                Some((after_star, tried)) => {
                    pi = after_star;
                    ti = tried + 1;
                    star = Some((after_star, tried + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// How one entry (a comma-separated pattern list) relates to one group name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryMatch {
    /// A negated pattern matched: this entry excludes the user.
    Negated,
    /// No pattern matched.
    None,
    /// A positive pattern matched (and no negated one).
    Positive,
}

fn match_entry(group: &str, entry: &str) -> EntryMatch {
    let mut positive = false;
    for pattern in entry.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob_match(negated, group) {
                return EntryMatch::Negated;
            }
        } else if glob_match(pattern, group) {
            positive = true;
        }
    }
    if positive {
        EntryMatch::Positive
    } else {
        EntryMatch::None
    }
}

/// Whether a user with these group names is inside `groups` (and so must use Duo).
///
/// An empty `groups` list means "everybody": the caller only consults this function when the
/// option is set.
pub fn user_in_groups(entries: &[String], user_groups: &[String]) -> bool {
    if entries.is_empty() {
        return true;
    }
    entries.iter().filter(|e| !e.is_empty()).any(|entry| {
        let mut found = false;
        for group in user_groups {
            match match_entry(group, entry) {
                EntryMatch::Negated => return false,
                EntryMatch::Positive => found = true,
                EntryMatch::None => {}
            }
        }
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn glob_handles_star_and_question_mark() {
        assert!(glob_match("wheel", "wheel"));
        assert!(!glob_match("wheel", "wheels"));
        assert!(!glob_match("wheels", "wheel"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("*admin", "netadmin"));
        assert!(glob_match("*admin", "admin"));
        assert!(!glob_match("*admin", "admins"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(glob_match("a*b*c", "abbbc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("us?rs", "users"));
        assert!(!glob_match("us?rs", "usrs"));
        assert!(glob_match("??", "ab"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("**a**", "bab"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("", ""));
        assert!(glob_match("grp-é*", "grp-éa"));
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!glob_match("Users", "users"));
    }

    #[test]
    fn any_entry_matching_puts_the_user_in_groups() {
        let entries = v(&["duo-users", "ops"]);
        assert!(user_in_groups(&entries, &v(&["staff", "ops"])));
        assert!(user_in_groups(&entries, &v(&["duo-users"])));
        assert!(!user_in_groups(&entries, &v(&["staff", "wheel"])));
        assert!(!user_in_groups(&entries, &[]));
    }

    #[test]
    fn negation_inside_an_entry_excludes_the_user_from_that_entry() {
        let entries = v(&["users,!wheel,!*admin", "guests"]);
        assert!(user_in_groups(&entries, &v(&["users"])));
        assert!(!user_in_groups(&entries, &v(&["users", "wheel"])));
        assert!(!user_in_groups(&entries, &v(&["users", "netadmin"])));
        // The second entry still matches a guest who is in wheel.
        assert!(user_in_groups(&entries, &v(&["wheel", "guests"])));
        // A negation alone never puts anybody in.
        assert!(!user_in_groups(&v(&["!wheel"]), &v(&["users"])));
        assert!(!user_in_groups(&v(&["!wheel"]), &v(&["wheel"])));
    }

    #[test]
    fn wildcard_entries_match_group_families() {
        let entries = v(&["dev-*", "?ps"]);
        assert!(user_in_groups(&entries, &v(&["dev-web"])));
        assert!(user_in_groups(&entries, &v(&["ops"])));
        assert!(!user_in_groups(&entries, &v(&["oops"])));
        assert!(user_in_groups(&v(&["*,!contractors"]), &v(&["staff"])));
        assert!(!user_in_groups(
            &v(&["*,!contractors"]),
            &v(&["staff", "contractors"])
        ));
    }

    #[test]
    fn an_empty_list_means_everybody() {
        assert!(user_in_groups(&[], &v(&["x"])));
        assert!(!user_in_groups(&v(&[""]), &v(&["x"])));
    }
}
