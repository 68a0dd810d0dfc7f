//! repod
pub mod config;
mod dispatch;
pub mod encode;
mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
mod reactor;
pub mod server;
pub use config::{Config, SlowReaderPolicy};
pub use encode::{Bin, Encode, Entries, MapMsg};
pub use error::{DisconnectReason, Error, HandlerResult};
pub use message::{Field, Message, OwnedMessage};
pub use reactor::ChannelId;
pub use server::{
    BackgroundServer, ChannelCtx, ChannelHandler, Routes, Server, ServerCtx, ServerHandle,
    ServerHandler,
};
pub mod client;
pub use client::{Client, ClientCtx, ClientRoutes, Connection, Listener, Mode};
