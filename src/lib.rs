//! repod
