//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`) with the syntax of
//! k8s.io/apimachinery/pkg/labels and pkg/fields: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k`, `!k`, comma-separated and all required.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parse a label selector. Errors are the message of a 400 BadRequest.
    pub fn parse_labels(text: &str) -> Result<Selector, String> {
        Self::parse(text, true)
    }

    /// Parse a field selector (only `=`, `==`, `!=`, as the API server allows).
    pub fn parse_fields(text: &str) -> Result<Selector, String> {
        Self::parse(text, false)
    }

    fn parse(text: &str, sets_allowed: bool) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for term in split_terms(text)? {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_term(term, sets_allowed)?);
        }
        Ok(Selector(reqs))
    }

    /// Whether a set of key/value pairs (labels, or the supported fields) satisfies every
    /// requirement.
    pub fn matches(&self, values: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => values.get(k) == Some(v),
            Requirement::NotEquals(k, v) => values.get(k) != Some(v),
            Requirement::In(k, vs) => values.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => values.get(k).is_none_or(|x| !vs.contains(x)),
            Requirement::Exists(k) => values.contains_key(k),
            Requirement::NotExists(k) => !values.contains_key(k),
        })
    }

    /// Keys the selector mentions (to reject unsupported field selectors).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| match r {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => k.as_str(),
        })
    }
}

/// Split on commas that are not inside `( … )`.
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    format!("unable to parse requirement: unbalanced ')' in {text:?}")
                })?
            }
            ',' if depth == 0 => {
                out.push(text.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!(
            "unable to parse requirement: unbalanced '(' in {text:?}"
        ));
    }
    out.push(text.get(start..).unwrap_or(""));
    Ok(out)
}

fn parse_term(term: &str, sets_allowed: bool) -> Result<Requirement, String> {
    let bad = || format!("unable to parse requirement: {term:?}");
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k, term)?, value(v, term)?));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Ok(Requirement::Equals(key(k, term)?, value(v, term)?));
    }
    if let Some((k, v)) = term.split_once('=') {
        return Ok(Requirement::Equals(key(k, term)?, value(v, term)?));
    }
    if !sets_allowed {
        return Err(format!(
            "invalid selector: {term:?}; only =, == and != are supported"
        ));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(key(k, term)?));
    }
    for (op, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = term.split_once(op) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(bad)?;
            let values = inner
                .split(',')
                .map(|v| value(v, term))
                .collect::<Result<Vec<_>, _>>()?;
            let k = key(k, term)?;
            return Ok(if notin {
                Requirement::NotIn(k, values)
            } else {
                Requirement::In(k, values)
            });
        }
    }
    Ok(Requirement::Exists(key(term, term)?))
}

fn key(k: &str, term: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok {
        Ok(k.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid key in {term:?}"
        ))
    }
}

fn value(v: &str, term: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid value in {term:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let l = labels(&[("app", "api"), ("tier", "backend")]);
        let cases = [
            ("", true),
            ("app=api", true),
            ("app==api", true),
            ("app=web", false),
            ("app!=web", true),
            ("app!=api", false),
            ("missing!=x", true),
            ("app in (api,web)", true),
            ("app in (web)", false),
            ("app notin (web)", true),
            ("missing notin (web)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=api,tier=backend", true),
            ("app=api,tier=frontend", false),
            ("app in (api, web),tier", true),
        ];
        for (sel, want) in cases {
            let s = Selector::parse_labels(sel).unwrap();
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn bad_selectors_are_errors() {
        for sel in ["app in (a", "app in a", "=x", "a=b c", "a)"] {
            assert!(Selector::parse_labels(sel).is_err(), "{sel}");
        }
        assert!(Selector::parse_fields("app in (a)").is_err());
        assert!(Selector::parse_fields("metadata.name=x").is_ok());
    }
}
