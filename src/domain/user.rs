use super::invalid;
use crate::error::ApiError;

/// 3–32 characters of ASCII letters, digits, `_`, `.` and `-`. Compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.trim();
        let len = s.chars().count();
        if !(3..=32).contains(&len) {
            return invalid("username", "must be 3 to 32 characters long");
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return invalid(
                "username",
                "may contain only letters, digits, '_', '.' and '-'",
            );
        }
        Ok(Self(s.to_owned()))
    }
}

/// An address of the shape `local@domain.tld`, at most 254 characters, stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.trim();
        let bad = || ApiError::invalid("email", "must be a valid email address");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic));
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(bad());
        }
        Ok(Self(s.to_lowercase()))
    }
}

/// 8–128 characters. Never logged: Debug is redacted.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return invalid("password", "must be 8 to 128 characters long");
        }
        Ok(Self(raw))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The name a user gives a device ("Pixel 8", "work laptop"); 1–64 characters.
#[derive(Debug, Clone)]
pub struct DeviceName(String);

impl DeviceName {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let s = raw.map(str::trim).unwrap_or("");
        if s.is_empty() {
            return Ok(Self("unknown device".to_owned()));
        }
        if s.chars().count() > 64 || s.chars().any(char::is_control) {
            return invalid("device", "must be at most 64 printable characters");
        }
        Ok(Self(s.to_owned()))
    }
}

text_newtype!(Username, Email, DeviceName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_outside_the_alphabet_or_length_are_refused() {
        assert!(Username::parse("al").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("al!ce").is_err());
        assert_eq!(
            Username::parse(" alice.b-c_1 ").unwrap().as_str(),
            "alice.b-c_1"
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@b.", "a@-b.co", "a b@c.co", "a@b.c0",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            Email::parse("Alice@Example.COM").unwrap().as_str(),
            "alice@example.com"
        );
    }

    #[test]
    fn passwords_are_bounded_by_characters() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::parse("long enough".into()).is_ok());
        assert_eq!(
            format!("{:?}", Password::parse("long enough".into()).unwrap()),
            "Password(..)"
        );
    }
}
