//! A token's `rooms` claim: which rooms its user may join, send to, read
//! the history of and list the presence of. `[{"match": "chat.*", "allow":
//! ["join", "send"]}]`; `*` in a pattern matches any run of characters. A
//! room matched by several rules gets the union of their permissions; a
//! room no rule matches gets none. Without the claim every room is allowed.

use serde::Deserialize;

/// One thing a client may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Join = 1,
    Send = 2,
    History = 4,
    Presence = 8,
}

impl Permission {
    /// Every permission, as its claim name.
    const NAMES: [(&'static str, Permission); 4] = [
        ("join", Permission::Join),
        ("send", Permission::Send),
        ("history", Permission::History),
        ("presence", Permission::Presence),
    ];

    fn from_name(name: &str) -> Option<Permission> {
        Permission::NAMES.iter().find(|(known, _)| *known == name).map(|(_, permission)| *permission)
    }

    /// The claim name.
    pub fn as_str(self) -> &'static str {
        Permission::NAMES.iter().find(|(_, known)| *known == self).map_or("", |(name, _)| name)
    }
}

/// The parsed `rooms` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRules {
    rules: Box<[Rule]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: Box<str>,
    /// [`Permission`] bits.
    allow: u8,
}

/// The claim as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleClaim {
    #[serde(rename = "match")]
    pattern: String,
    allow: Vec<String>,
}

/// Most rules one token may carry (each is checked on every command).
pub const MAX_RULES: usize = 64;

impl RoomRules {
    /// Parses a `rooms` claim; the error says what is wrong with it.
    pub fn parse(claim: &serde_json::value::RawValue) -> Result<RoomRules, String> {
        let written: Vec<RuleClaim> = serde_json::from_str(claim.get())
            .map_err(|error| format!("`rooms` must be a list of {{\"match\", \"allow\"}} objects: {error}"))?;
        if written.len() > MAX_RULES {
            return Err(format!("`rooms` has more than {MAX_RULES} rules"));
        }
        let rules = written
            .into_iter()
            .map(|rule| {
                let mut allow = 0;
                for name in &rule.allow {
                    let permission =
                        Permission::from_name(name).ok_or_else(|| format!("`rooms` allows unknown `{name}`"))?;
                    allow |= permission as u8;
                }
                if rule.pattern.is_empty() || rule.pattern.len() > switchboard_protocol::command::MAX_ROOM_LEN {
                    return Err("a `rooms` pattern must be 1 to 128 bytes".to_owned());
                }
                Ok(Rule { pattern: rule.pattern.into_boxed_str(), allow })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(RoomRules { rules: rules.into_boxed_slice() })
    }

    /// Whether these rules allow `permission` in `room`.
    pub fn allows(&self, room: &str, permission: Permission) -> bool {
        self.rules.iter().any(|rule| rule.allow & permission as u8 != 0 && glob_match(&rule.pattern, room))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else matches itself.
/// Linear in practice: on a mismatch it retries from the last `*` only.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it is retried from.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&byte) if byte == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn rules(json: &str) -> Result<RoomRules, String> {
        RoomRules::parse(&RawValue::from_string(json.to_owned()).expect("raw json"))
    }

    #[test]
    fn stars_match_any_run_and_nothing_else_is_special() {
        assert!(glob_match("chat.*", "chat.general"));
        assert!(glob_match("chat.*", "chat."));
        assert!(!glob_match("chat.*", "chat"));
        assert!(!glob_match("chat.*", "xchat.general"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*.private.*", "team.private.42"));
        assert!(!glob_match("*.private.*", "team.public.42"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("room?", "room1"), "? is not a wildcard");
        assert!(glob_match("ünï*", "ünïcode"));
    }

    #[test]
    fn permissions_are_the_union_of_matching_rules() {
        let rules = rules(
            r#"[{"match":"chat.*","allow":["join","history"]},{"match":"chat.ops","allow":["send"]},
                {"match":"news","allow":["join"]}]"#,
        )
        .expect("valid");
        assert!(rules.allows("chat.ops", Permission::Join));
        assert!(rules.allows("chat.ops", Permission::Send));
        assert!(!rules.allows("chat.lobby", Permission::Send));
        assert!(rules.allows("chat.lobby", Permission::History));
        assert!(!rules.allows("news", Permission::Presence));
        assert!(!rules.allows("other", Permission::Join), "no rule, no permission");
    }

    #[test]
    fn a_malformed_claim_says_what_is_wrong() {
        assert!(rules(r#"{"match":"x"}"#).expect_err("not a list").contains("list"));
        assert!(rules(r#"[{"match":"x","allow":["fly"]}]"#).expect_err("unknown").contains("fly"));
        assert!(rules(r#"[{"match":"","allow":[]}]"#).expect_err("empty pattern").contains("pattern"));
        assert!(rules(r#"[{"match":"x","allow":[],"extra":1}]"#).is_err());
        let many = format!("[{}]", vec![r#"{"match":"x","allow":[]}"#; MAX_RULES + 1].join(","));
        assert!(rules(&many).expect_err("too many").contains("64"));
    }
}
