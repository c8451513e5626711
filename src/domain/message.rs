use super::invalid;
use crate::error::ApiError;

/// A message's text: trimmed, 1..=max characters (the node's `max_message_chars`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, ApiError> {
        let s = raw.trim();
        if s.is_empty() {
            return invalid("content", "must not be empty");
        }
        // Counting stops early so a huge body costs no more than the limit.
        if s.chars().nth(max_chars).is_some() {
            return invalid(
                "content",
                format!("must be at most {max_chars} characters long"),
            );
        }
        // PostgreSQL text cannot hold NUL; refusing it here keeps it a 400 instead of a 500.
        if s.contains('\0') {
            return invalid("content", "must not contain NUL characters");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// What a recipient reports about a message: it reached a device, or the user saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    Delivered,
    Read,
}

impl ReceiptStatus {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        match raw.trim() {
            "delivered" => Ok(Self::Delivered),
            "read" => Ok(Self::Read),
            _ => Err(ApiError::invalid(
                "status",
                "must be one of: delivered, read",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

text_newtype!(MessageBody);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_trimmed_and_bounded_by_characters() {
        assert!(MessageBody::parse("", 10).is_err());
        assert!(MessageBody::parse(" \n\t ", 10).is_err());
        assert!(MessageBody::parse("a\0b", 10).is_err());
        assert!(MessageBody::parse(&"x".repeat(11), 10).is_err());
        assert_eq!(
            MessageBody::parse(&"é".repeat(10), 10)
                .unwrap()
                .as_str()
                .chars()
                .count(),
            10
        );
        assert_eq!(
            MessageBody::parse("  hi there \n", 10).unwrap().as_str(),
            "hi there"
        );
    }

    #[test]
    fn receipt_status_accepts_delivered_and_read_only() {
        assert_eq!(ReceiptStatus::parse("read").unwrap(), ReceiptStatus::Read);
        assert_eq!(
            ReceiptStatus::parse("delivered").unwrap(),
            ReceiptStatus::Delivered
        );
        assert!(ReceiptStatus::parse("sent").is_err());
        assert!(ReceiptStatus::parse("READ").is_err());
    }
}
