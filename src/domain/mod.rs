//! Client input becomes one of these at the edge; everything past the edge takes them, not
//! raw strings.

mod conversation;
mod message;
mod nul;
mod user;

pub use conversation::{ConversationName, MAX_CONVERSATION_NAME_CHARS};
pub use message::{MessageBody, ReceiptStatus};
pub use nul::{field_with_nul, json_has_nul};
pub use user::{DeviceName, Email, Password, Username};
