//! Which web pages may open a WebSocket to the server. Browsers send the
//! page's origin with every upgrade (`Origin: https://app.example.com`);
//! without this check any page a user visits could connect with that
//! user's cookies and network position. Programs send no `Origin` and are
//! not affected.
//!
//! `auth.allowed_origins` holds patterns such as `https://*.example.com`
//! (`*` matches any run of characters) or `"*"` for any origin. Empty, the
//! default, allows the page's own origin only: the `Origin`'s host and
//! port equal the request's `Host`.

use super::rules::glob_match;

/// The allowed origins.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Lowercase patterns; empty: same origin only.
    patterns: Vec<String>,
}

/// An `allowed_origins` entry that cannot match any origin.
#[derive(Debug, thiserror::Error)]
#[error("auth.allowed_origins: `{0}` is not \"*\" or an origin such as https://app.example.com (no path)")]
pub struct BadOrigin(pub String);

impl Origins {
    pub fn build(patterns: &[String]) -> Result<Origins, BadOrigin> {
        let patterns = patterns
            .iter()
            .map(|pattern| {
                let lower = pattern.trim().to_ascii_lowercase();
                let valid = lower == "*"
                    || lower == "null"
                    || lower
                        .split_once("://")
                        .is_some_and(|(scheme, host)| !scheme.is_empty() && !host.is_empty() && !host.contains('/'));
                if valid {
                    Ok(lower)
                } else {
                    Err(BadOrigin(pattern.clone()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Origins { patterns })
    }

    /// Whether an upgrade with these headers may proceed. `origin` absent:
    /// not a browser, allowed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.map(str::trim) else { return true };
        let origin = origin.to_ascii_lowercase();
        if self.patterns.is_empty() {
            return same_origin(&origin, host);
        }
        self.patterns.iter().any(|pattern| pattern == "*" || glob_match(pattern, &origin))
    }
}

/// Whether `origin`'s host (and port) is the request's `Host`.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let (Some((scheme, authority)), Some(host)) = (origin.split_once("://"), host) else { return false };
    let host = host.trim().to_ascii_lowercase();
    let default_port = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => return authority == host,
    };
    // `Host: example.com` and `Origin: https://example.com:443` name the same place.
    let strip = |name: &str| name.strip_suffix(default_port).unwrap_or(name).to_owned();
    strip(authority) == strip(&host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(patterns: &[&str]) -> Origins {
        Origins::build(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn by_default_only_the_pages_own_origin_and_non_browsers_pass() {
        let same = origins(&[]);
        assert!(same.allows(None, Some("chat.example.com")), "no Origin: not a browser");
        assert!(same.allows(Some("https://chat.example.com"), Some("chat.example.com")));
        assert!(same.allows(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(same.allows(Some("https://Chat.Example.com:443"), Some("chat.example.com")));
        assert!(!same.allows(Some("https://evil.example"), Some("chat.example.com")));
        assert!(!same.allows(Some("http://127.0.0.1:9999"), Some("127.0.0.1:8080")), "another port");
        assert!(!same.allows(Some("null"), Some("chat.example.com")));
        assert!(!same.allows(Some("https://chat.example.com"), None));
    }

    #[test]
    fn patterns_match_whole_origins_with_stars() {
        let listed = origins(&["https://*.example.com", "http://localhost:3000"]);
        assert!(listed.allows(Some("https://app.example.com"), Some("api.example.com")));
        assert!(!listed.allows(Some("http://app.example.com"), Some("x")), "the scheme counts");
        assert!(!listed.allows(Some("https://example.com.evil.net"), Some("x")));
        assert!(listed.allows(Some("http://localhost:3000"), Some("x")));
        assert!(!listed.allows(Some("http://localhost:3001"), Some("x")));
        assert!(origins(&["*"]).allows(Some("https://anything.test"), None));
    }

    #[test]
    fn entries_that_cannot_be_origins_are_refused() {
        for bad in ["example.com", "https://example.com/path", "", "https://"] {
            assert!(Origins::build(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
