//! The console: the connection to the operator, the namespace selector and the screens.
use std::time::{Duration, Instant};

use cdot_crds::{
    api_token::Role,
    wire::{alert::AlertList, query::Identity},
};

use crate::{
    api::{ApiError, client::ApiClient, fetch::Fetcher, fetch::Panel, routes},
    config::Settings,
    screens::{alerts::AlertsScreen, connect, devices::DevicesScreen, network::NetworkScreen},
};

/// Longest wait between two automatic reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Network,
    Devices,
    Alerts,
}

impl Screen {
    const ALL: [Self; 3] = [Self::Network, Self::Devices, Self::Alerts];

    fn title(self) -> &'static str {
        match self {
            Self::Network => "Network",
            Self::Devices => "Devices",
            Self::Alerts => "Alerts",
        }
    }
}

/// What every screen needs for a frame.
pub struct Shared<'a> {
    pub fetcher: &'a Fetcher,
    /// The selected namespace.
    pub namespace: &'a str,
    /// Moves on every (re)connection, so screens fetch again after an outage.
    pub epoch: u64,
    /// Whether the token may acknowledge and silence (an operator's or admin's; also while
    /// its role is unknown, when the API's 403 explains a refusal).
    pub may_act: bool,
}

/// Whether the operator answers, checked with a cheap authenticated call.
pub struct Link {
    probe: Panel<AlertList>,
    /// The token's namespaces (`/v1/whoami`), asked once per connection; an operator
    /// without the route leaves the selector to the configuration and the alerts.
    identity: Panel<Identity>,
    connected: bool,
    /// Failed attempts in a row (the backoff grows with them).
    failures: u32,
    retry_at: Option<Instant>,
    /// Why the last attempt (or a screen's call) failed.
    last_error: Option<ApiError>,
    epoch: u64,
}

impl Link {
    fn new() -> Self {
        Self {
            probe: Panel::default(),
            identity: Panel::default(),
            connected: false,
            failures: 0,
            retry_at: Some(Instant::now()),
            last_error: None,
            epoch: 0,
        }
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    pub fn is_trying(&self) -> bool {
        self.probe.is_loading()
    }

    pub fn last_error(&self) -> Option<&ApiError> {
        self.last_error.as_ref()
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next automatic attempt goes out.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The token's role, once `/v1/whoami` answered.
    pub fn role(&self) -> Option<Role> {
        self.identity.data().map(|i| i.role)
    }

    /// Tries again now.
    pub fn retry(&mut self) {
        self.retry_at = Some(Instant::now());
    }

    /// A screen's call found the operator gone or the token refused.
    fn lost(&mut self, error: ApiError) {
        if self.connected {
            self.connected = false;
            self.failures = 1;
            self.last_error = Some(error);
            self.retry_at = Some(Instant::now());
        }
    }

    /// Sends due attempts and takes in answers; the namespaces an answer names.
    fn update(&mut self, ctx: &egui::Context, fetcher: &Fetcher) -> Vec<String> {
        let mut seen = Vec::new();
        match self.probe.poll() {
            Some(Ok(())) => {
                self.connected = true;
                self.failures = 0;
                self.retry_at = None;
                self.last_error = None;
                self.epoch += 1;
                if let Some(list) = self.probe.data() {
                    seen = list.items.iter().map(|a| a.namespace.clone()).collect();
                }
                self.identity
                    .request(fetcher, routes::whoami(fetcher.client()));
            }
            Some(Err(error)) => {
                self.connected = false;
                self.last_error = Some(error);
                self.failures += 1;
                let backoff = Duration::from_secs(1 << self.failures.min(5)).min(MAX_BACKOFF);
                self.retry_at = Some(Instant::now() + backoff);
            }
            None => {}
        }
        if let Some(Ok(())) = self.identity.poll()
            && let Some(identity) = self.identity.data()
        {
            seen.extend(identity.namespaces.iter().cloned());
        }
        if let Some(at) = self.retry_at
            && !self.probe.is_loading()
        {
            let now = Instant::now();
            if at <= now {
                self.retry_at = None;
                self.probe
                    .request(fetcher, routes::all_alerts(fetcher.client()));
            } else {
                ctx.request_repaint_after(at - now);
            }
        }
        seen
    }
}

/// Namespaces offered in the selector: configured ones, and those the API named.
#[derive(Debug, Default)]
pub struct Namespaces {
    known: Vec<String>,
    selected: Option<String>,
    /// What is typed in the "other namespace" field.
    typed: String,
}

impl Namespaces {
    fn new(configured: &[String]) -> Self {
        let mut n = Self::default();
        n.add(configured.iter().cloned());
        n
    }

    fn add(&mut self, names: impl IntoIterator<Item = String>) {
        self.known.extend(names);
        self.known.sort();
        self.known.dedup();
        if self.selected.is_none() {
            self.selected = self.known.first().cloned();
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui) {
        let label = ui.label("Namespace");
        let current = self.selected.clone().unwrap_or_default();
        egui::ComboBox::from_id_salt("namespace")
            .selected_text(if current.is_empty() { "—" } else { &current })
            .show_ui(ui, |ui| {
                for name in &self.known {
                    ui.selectable_value(&mut self.selected, Some(name.clone()), name);
                }
            })
            .response
            .labelled_by(label.id);
        let label = ui.label("Other");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut self.typed)
                    .hint_text("namespace")
                    .desired_width(90.0),
            )
            .labelled_by(label.id);
        if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
            let name = self.typed.trim().to_owned();
            if !name.is_empty() {
                self.add([name.clone()]);
                self.selected = Some(name);
                self.typed.clear();
            }
        }
    }
}

pub struct ConsoleApp {
    fonts_set: bool,
    fetcher: Fetcher,
    link: Link,
    namespaces: Namespaces,
    screen: Screen,
    network: NetworkScreen,
    devices: DevicesScreen,
    alerts: AlertsScreen,
}

impl ConsoleApp {
    pub fn new(settings: &Settings) -> Self {
        let client = ApiClient::new(
            &settings.api,
            settings.token.clone(),
            settings.timeout,
            settings.ca_pem.as_deref(),
        );
        Self {
            fonts_set: false,
            fetcher: Fetcher::new(client),
            link: Link::new(),
            namespaces: Namespaces::new(&settings.namespaces),
            screen: Screen::Network,
            network: NetworkScreen::new(settings.range),
            devices: DevicesScreen::default(),
            alerts: AlertsScreen::default(),
        }
    }

    /// The URLs requested lately, oldest first (for tests and benchmarks).
    pub fn requested(&self) -> Vec<String> {
        self.fetcher.requested()
    }

    /// Whether the network screen shows every panel's answer (`Err`: a panel failed).
    pub fn network_loaded(&self) -> Result<bool, ApiError> {
        self.network.loaded()
    }

    /// One frame of the whole console.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if !self.fonts_set {
            self.fonts_set = true;
            set_fonts(&ctx);
        }
        self.fetcher.attach(&ctx);
        let seen = self.link.update(&ctx, &self.fetcher);
        self.namespaces.add(seen);
        if !self.link.connected() {
            egui::CentralPanel::default().show(ui, |ui| {
                connect::ui(ui, &mut self.link, self.fetcher.client().base());
            });
            return;
        }
        egui::Panel::top("top-bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong("cdot-rmm");
                ui.separator();
                for screen in Screen::ALL {
                    ui.selectable_value(&mut self.screen, screen, screen.title());
                }
                ui.separator();
                self.namespaces.ui(ui);
                ui.separator();
                ui.weak(self.fetcher.client().base());
            });
        });
        let Some(namespace) = self.namespaces.selected.clone() else {
            egui::CentralPanel::default().show(ui, |ui| {
                ui.label(
                    "No namespace known yet: type one in the Other field above \
                     (or pass --namespace).",
                );
            });
            return;
        };
        let shared = Shared {
            fetcher: &self.fetcher,
            namespace: &namespace,
            epoch: self.link.epoch,
            may_act: self.link.role().is_none_or(|role| role >= Role::Operator),
        };
        let lost = egui::CentralPanel::default()
            .show(ui, |ui| match self.screen {
                Screen::Network => self.network.ui(ui, &shared),
                Screen::Devices => self.devices.ui(ui, &shared),
                Screen::Alerts => self.alerts.ui(ui, &shared),
            })
            .inner;
        if let Some(error) = lost {
            self.link.lost(error);
        }
    }
}

/// egui's proportional font has no arrows (→ in host pairs, ◀ ▶ on the range bar, ▲ ▼ on
/// sorted columns): the built-in monospace font, which has them, is its fallback.
fn set_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    if let Some(family) = fonts.families.get_mut(&egui::FontFamily::Proportional) {
        family.push("Hack".to_owned());
    }
    ctx.set_fonts(fonts);
}

/// Keeps a connection error (operator gone, token refused) for the app; screens show
/// other errors in their own panels.
pub fn connection_error(answer: Option<Result<(), ApiError>>) -> Option<ApiError> {
    match answer {
        Some(Err(error)) if error.is_connection() => Some(error),
        _ => None,
    }
}

impl eframe::App for ConsoleApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        ConsoleApp::ui(self, ui);
    }
}
