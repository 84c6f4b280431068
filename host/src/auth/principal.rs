//! Who is asking, and what they may do: roles granted per namespace pattern.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a grant allows, each role including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GetFlightInfo, DoGet, GetSchema, ListFlights and the list actions.
    Read,
    /// Also DoPut and DoExchange.
    Write,
    /// Also drop_table, compact_table and plugin registration, in every namespace.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

/// One role on some namespaces: `read:raw,marts`, `write:stg_*`, `read:*`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    /// Namespace patterns: a name, or one with `*` for any run of characters.
    pub namespaces: Vec<String>,
}

impl Grant {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (role, patterns) = text.split_once(':').unwrap_or((text, ""));
        let role = match role.trim() {
            "read" => Role::Read,
            "write" => Role::Write,
            "admin" => Role::Admin,
            other => {
                return Err(format!(
                    "unknown role {other:?} in grant {text:?}: use read:NAMESPACES, \
                     write:NAMESPACES or admin"
                ));
            }
        };
        let namespaces: Vec<String> = patterns
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        match role {
            Role::Admin if namespaces.iter().any(|p| p != "*") => Err(format!(
                "grant {text:?}: admin applies to every namespace; write it as `admin`"
            )),
            Role::Admin => Ok(Self {
                role,
                namespaces: vec!["*".into()],
            }),
            _ if namespaces.is_empty() => Err(format!(
                "grant {text:?} names no namespace: write e.g. {role}:raw,marts or {role}:*"
            )),
            _ => match namespaces.iter().find(|p| !valid_pattern(p)) {
                Some(bad) => Err(format!(
                    "grant {text:?}: {bad:?} is not a namespace pattern (letters, digits, _, \
                     -, . and *)"
                )),
                None => Ok(Self { role, namespaces }),
            },
        }
    }

    fn allows(&self, role: Role, namespace: &str) -> bool {
        self.role >= role && self.namespaces.iter().any(|p| glob(p, namespace))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.role {
            Role::Admin => f.write_str("admin"),
            role => write!(f, "{role}:{}", self.namespaces.join(",")),
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Grant::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn valid_pattern(pattern: &str) -> bool {
    pattern.len() <= 128
        && pattern
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '*'))
}

/// `pattern` matches all of `text`, `*` standing for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(text) = text.strip_prefix(head) else {
                return false;
            };
            (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .any(|i| glob(rest, &text[i..]))
        }
    }
}

/// An authenticated caller: a user, a service token, or, on a loopback host with no
/// users, everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Whoever reaches a host that has no users (loopback, or `--allow-anonymous`).
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            grants: vec![Grant {
                role: Role::Admin,
                namespaces: vec!["*".into()],
            }],
        }
    }

    pub fn may(&self, role: Role, namespace: &str) -> bool {
        self.grants.iter().any(|g| g.allows(role, namespace))
    }

    pub fn is_admin(&self) -> bool {
        self.grants.iter().any(|g| g.role == Role::Admin)
    }

    /// May it read anything at all (e.g. run a plugin over its own batches)?
    pub fn reads_something(&self) -> bool {
        !self.grants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(grants: &[&str]) -> Principal {
        Principal {
            name: "p".into(),
            grants: grants.iter().map(|g| Grant::parse(g).unwrap()).collect(),
        }
    }

    #[test]
    fn roles_include_the_lesser_ones_per_namespace() {
        let p = principal(&["write:raw,marts", "read:stg_*"]);
        assert!(p.may(Role::Write, "raw") && p.may(Role::Read, "marts"));
        assert!(p.may(Role::Read, "stg_orders") && !p.may(Role::Write, "stg_orders"));
        assert!(!p.may(Role::Read, "rawx") && !p.may(Role::Read, "stg"));
        assert!(!p.may(Role::Admin, "raw") && !p.is_admin());
        let admin = principal(&["admin"]);
        assert!(admin.may(Role::Admin, "anything") && admin.is_admin());
        assert!(principal(&["read:*"]).may(Role::Read, "x.y"));
    }

    #[test]
    fn bad_grants_say_what_is_wrong() {
        for (text, says) in [
            ("owner:raw", "unknown role"),
            ("read", "names no namespace"),
            ("read:", "names no namespace"),
            ("admin:raw", "every namespace"),
            ("read:ra w", "not a namespace pattern"),
        ] {
            let err = Grant::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert_eq!(Grant::parse("admin:*").unwrap().to_string(), "admin");
        assert_eq!(
            Grant::parse("write: raw, marts").unwrap().to_string(),
            "write:raw,marts"
        );
    }

    #[test]
    fn glob_matches_runs_of_characters() {
        assert!(glob("*", "") && glob("a*c", "abbc") && glob("*c", "c"));
        assert!(!glob("a*c", "abcd") && !glob("ab", "a"));
        assert!(glob("é*", "éa"));
    }
}
