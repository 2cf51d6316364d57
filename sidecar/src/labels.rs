//! Pod labels from the Kubernetes downward API (`key="value"` per line, Go-quoted values).

use std::collections::BTreeMap;

pub fn parse_downward_api(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (key, quoted) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected key=\"value\"", n + 1))?;
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .ok_or_else(|| format!("line {}: value of {key:?} is not quoted", n + 1))?;
        labels.insert(key.to_string(), unescape(inner));
    }
    Ok(labels)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_downward_api_labels() {
        let labels = super::parse_downward_api("app=\"swift-proxy\"\nzone=\"a \\\"b\\\"\"\n")
            .expect("valid");
        assert_eq!(labels["app"], "swift-proxy");
        assert_eq!(labels["zone"], "a \"b\"");
        assert!(super::parse_downward_api("app=unquoted").is_err());
    }
}
