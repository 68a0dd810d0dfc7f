//! repod
pub mod encode;
mod error;
pub mod frame;
pub mod message;
pub use encode::{Bin, Encode, Entries, MapMsg};
pub use error::{DisconnectReason, Error, HandlerResult};
pub use message::{Field, Message, OwnedMessage};
