//! Client input becomes one of these at the edge; everything past the edge takes them, not
//! raw strings.

use std::borrow::Cow;

use crate::error::ApiError;

/// The 400 naming `field`, as the `Err` of a parse.
fn invalid<T>(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Result<T, ApiError> {
    Err(ApiError::invalid(field, reason))
}

/// `as_str` for newtypes that hold validated text.
macro_rules! text_newtype {
    ($($t:ty),*) => {
        $(impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        })*
    };
}

mod conversation;
mod message;
mod nul;
mod user;

pub use conversation::{ConversationName, MAX_CONVERSATION_NAME_CHARS};
pub use message::{MessageBody, ReceiptStatus};
pub use nul::{field_with_nul, json_has_nul};
pub use user::{DeviceName, Email, Password, Username};
