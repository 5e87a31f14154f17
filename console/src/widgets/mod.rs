//! Small pieces of UI the screens share.
pub mod range;
pub mod status;
pub mod table;
pub mod time;
pub mod units;
