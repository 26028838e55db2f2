//! Comma-separated `name=value` parameters (Digest challenges and credentials,
//! RFC 4976 §7) and RFC 4975 quoted strings.

use std::fmt;

/// One `name=value` parameter; `quoted` records whether the value was a quoted string,
/// so that re-encoding writes it the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    /// The parameter name (compared case-insensitively).
    pub name: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// Whether the value is written as a quoted string.
    pub quoted: bool,
}

/// An ordered list of parameters, as in `realm="x", nonce="y", qop=auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthParams(pub Vec<AuthParam>);

impl AuthParams {
    /// The value of the first parameter with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| p.value.as_str())
    }

    /// Appends a parameter.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>, quoted: bool) {
        self.0.push(AuthParam { name: name.into(), value: value.into(), quoted });
    }

    /// Parses `name=value` pairs separated by commas, with optional whitespace around
    /// commas and `=` (RFC 4976 examples wrap with spaces; R4976-7-2). Unknown names are kept.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut params = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            let eq = rest.find('=')?;
            let name = rest[..eq].trim();
            if !crate::uri::is_token(name) {
                return None;
            }
            let after = rest[eq + 1..].trim_start();
            let (value, quoted, remaining) = if after.starts_with('"') {
                let (value, used) = parse_quoted(after)?;
                (value, true, &after[used..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                let value = after[..end].trim_end();
                if !crate::uri::is_token(value) {
                    return None;
                }
                (value.to_owned(), false, &after[end..])
            };
            params.push(AuthParam { name: name.to_owned(), value, quoted });
            let remaining = remaining.trim_start();
            rest = match remaining.strip_prefix(',') {
                Some(next) => next.trim_start(),
                None if remaining.is_empty() => remaining,
                None => return None,
            };
        }
        Some(Self(params))
    }
}

impl fmt::Display for AuthParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, param) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=", param.name)?;
            if param.quoted {
                write_quoted(f, &param.value)?;
            } else {
                f.write_str(&param.value)?;
            }
        }
        Ok(())
    }
}

/// Parses a quoted string at the start of `text`; returns the unescaped value and
/// the number of bytes used, closing quote included.
pub(crate) fn parse_quoted(text: &str) -> Option<(String, usize)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some((value, index + 2)),
            '\\' => value.push(chars.next()?.1),
            c if c == '\t' || !c.is_control() => value.push(c),
            _ => return None,
        }
    }
    None
}

/// Writes `value` as a quoted string, escaping `\` and `"`.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_params_with_spaces_quotes_and_unknown_names() {
        let params = AuthParams::parse(
            r#"realm="intra.example.com", nonce="dcd98b71",qop=auth ,  uri="msrps://a;tcp", x-new="a,b""#,
        )
        .expect("parses");
        assert_eq!(params.get("REALM"), Some("intra.example.com"));
        assert_eq!(params.get("qop"), Some("auth"));
        assert_eq!(params.get("x-new"), Some("a,b"));
        assert_eq!(params.0.len(), 5);
        assert_eq!(
            params.to_string(),
            r#"realm="intra.example.com", nonce="dcd98b71", qop=auth, uri="msrps://a;tcp", x-new="a,b""#
        );
    }

    #[test]
    fn quoted_string_escapes_round_trip() {
        let (value, used) = parse_quoted(r#""a \"b\" \\ c" rest"#).expect("parses");
        assert_eq!(value, r#"a "b" \ c"#);
        assert_eq!(used, 14);
        let mut out = String::new();
        write_quoted(&mut out, &value).expect("writes");
        assert_eq!(parse_quoted(&out).expect("parses").0, value);
        assert!(parse_quoted(r#""unterminated"#).is_none());
        assert!(AuthParams::parse("novalue").is_none());
    }
}
