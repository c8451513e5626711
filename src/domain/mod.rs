//! Client input becomes one of these at the edge; everything past the edge takes them, not
//! raw strings.

mod user;

pub use user::{DeviceName, Email, Password, Username};
