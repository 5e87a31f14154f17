//! Small pieces of UI the screens share.
pub mod status;
pub mod time;
