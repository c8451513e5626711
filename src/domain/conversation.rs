use super::invalid;
use crate::error::ApiError;

/// Longest group name, in characters after trimming.
pub const MAX_CONVERSATION_NAME_CHARS: usize = 100;

/// A group's name: 1–100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationName(String);

impl ConversationName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.trim();
        let len = s.chars().count();
        if len == 0 {
            return invalid("name", "must not be empty");
        }
        if len > MAX_CONVERSATION_NAME_CHARS {
            return invalid(
                "name",
                format!("must be at most {MAX_CONVERSATION_NAME_CHARS} characters long"),
            );
        }
        if s.chars().any(char::is_control) {
            return invalid("name", "must not contain control characters");
        }
        Ok(Self(s.to_owned()))
    }
}

text_newtype!(ConversationName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert!(ConversationName::parse("").is_err());
        assert!(ConversationName::parse("   ").is_err());
        assert!(ConversationName::parse(&"n".repeat(101)).is_err());
        assert!(ConversationName::parse("a\nb").is_err());
        assert_eq!(
            ConversationName::parse("  Team  ").unwrap().as_str(),
            "Team"
        );
        assert!(ConversationName::parse(&"ü".repeat(100)).is_ok());
    }
}
