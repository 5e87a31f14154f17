//! `cdot-console`: the desktop console of cdot-rmm (eframe/egui) over the operator's
//! people API. A library so that the egui_kittest tests drive the same [`app::ConsoleApp`]
//! the binary runs.
pub mod api;
pub mod app;
pub mod config;
pub mod screens;
pub mod widgets;
