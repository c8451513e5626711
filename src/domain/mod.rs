//! Client input becomes one of these at the edge; everything past the edge takes them, not
//! raw strings.

mod conversation;
mod message;
mod user;

pub use conversation::{ConversationName, MAX_CONVERSATION_NAME_CHARS};
pub use message::{MessageBody, ReceiptStatus};
pub use user::{DeviceName, Email, Password, Username};
