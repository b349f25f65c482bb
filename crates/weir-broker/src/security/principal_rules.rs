//! `ssl.principal.mapping.rules`: how a client certificate's subject becomes a principal's name,
//! as Kafka's `SslPrincipalMapper` does it.
//!
//! Rules are tried in order; the first whose pattern matches the whole subject gives the name:
//! `RULE:PATTERN/REPLACEMENT/` (with `L` or `U` after the last slash for lower or upper case),
//! or `DEFAULT`, the subject as it is. No rule matching is an authentication failure. Neither
//! the pattern nor the replacement can hold a `/`.

use regex::Regex;

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<Case>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Upper,
}

/// Parsed rules; the default is `DEFAULT` alone.
#[derive(Debug, Clone)]
pub struct PrincipalRules(Vec<Rule>);

impl Default for PrincipalRules {
    fn default() -> Self {
        PrincipalRules(vec![Rule::Default])
    }
}

impl PrincipalRules {
    /// Parses a rule list; errors are one line, naming the setting.
    pub fn parse(s: &str) -> Result<PrincipalRules, String> {
        let bad = |why: &str| format!("ssl.principal.mapping.rules: {why}");
        let mut rules = Vec::new();
        let mut rest = s.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = after
                    .split_once('/')
                    .ok_or_else(|| bad("a RULE needs PATTERN/REPLACEMENT/"))?;
                let (replacement, after) = after
                    .split_once('/')
                    .ok_or_else(|| bad("a RULE needs PATTERN/REPLACEMENT/"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Some(Case::Lower), &after[1..]),
                    Some('U') => (Some(Case::Upper), &after[1..]),
                    _ => (None, after),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| bad(&format!("bad pattern '{pattern}': {e}")))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement: java_replacement(replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(bad(&format!("'{rest}' is not DEFAULT or RULE:...")));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(bad(&format!("expected ',' before '{rest}'"))),
            }
        }
        if rules.is_empty() {
            return Err(bad("no rules"));
        }
        Ok(PrincipalRules(rules))
    }

    /// The principal name for a certificate subject, or `None` when no rule matches.
    pub fn apply(&self, subject: &str) -> Option<String> {
        self.0.iter().find_map(|rule| match rule {
            Rule::Default => Some(subject.to_string()),
            Rule::Replace {
                pattern,
                replacement,
                case,
            } => {
                let caps = pattern.captures(subject)?;
                let mut name = String::new();
                caps.expand(replacement, &mut name);
                Some(match case {
                    Some(Case::Lower) => name.to_lowercase(),
                    Some(Case::Upper) => name.to_uppercase(),
                    None => name,
                })
            }
        })
    }
}

/// Java's `$1` is `${1}` to the regex crate, which would read `$1a` as a group named `1a`.
fn java_replacement(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
            out.push('}');
        } else if c == '\\' {
            // Java escapes `$` and `\` in replacements with a backslash.
            if let Some(next) = chars.next() {
                if next == '$' {
                    out.push_str("$$");
                } else {
                    out.push(next);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_kafkas_examples() {
        let rules = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=(.*?),OU=(.*?),O=(.*?).*$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .expect("valid");
        assert_eq!(
            rules
                .apply("CN=kafka-server,OU=ServiceUsers,O=Org,C=US")
                .as_deref(),
            Some("kafka-server")
        );
        assert_eq!(
            rules
                .apply("CN=Duke,OU=JavaSoft,O=Sun Microsystems")
                .as_deref(),
            Some("duke@javasoft")
        );
        assert_eq!(rules.apply("cn=alice").as_deref(), Some("ALICE"));
        assert_eq!(rules.apply("O=none").as_deref(), Some("O=none"));
    }

    #[test]
    fn without_default_an_unmatched_subject_has_no_name() {
        let rules = PrincipalRules::parse("RULE:^CN=([a-z]+)$/$1x/").expect("valid");
        assert_eq!(rules.apply("CN=bob").as_deref(), Some("bobx"));
        assert_eq!(rules.apply("CN=Bob,O=x"), None);
        assert_eq!(
            PrincipalRules::default().apply("CN=a").as_deref(),
            Some("CN=a")
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["", "RULE:abc", "RULE:(/x/", "DEFAULT DEFAULT", "NOPE"] {
            let e = PrincipalRules::parse(bad).expect_err(bad);
            assert!(e.starts_with("ssl.principal.mapping.rules"), "{e}");
        }
    }
}
