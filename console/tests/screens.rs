//! The console end to end: egui_kittest drives the real `ConsoleApp` (accessibility tree,
//! no display) against a real operator on PostgreSQL seeded through the agent API.
mod support;

use std::time::Duration;

use cdot_console::{app::ConsoleApp, screens::devices::Health};
use cdot_crds::{
    device::Device,
    wire::alert::{AlertList, SilenceList},
};
use cdot_testkit::operator::wait_for;
use egui::Role;
use egui_kittest::kittest::Queryable as _;
use support::{Seeded, console, type_into, wait_for_label, wait_for_text};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

#[test]
fn a_dead_operator_shows_the_error_state_with_the_url_and_retries() {
    let api = format!("http://127.0.0.1:{}", cdot_testkit::free_port());
    let mut harness = console(&api, "some-token");
    wait_for_label(&mut harness, "Cannot reach the operator");
    harness.get_by_label(&format!("API: {api}"));
    wait_for_text(&mut harness, &format!("cannot reach the operator at {api}"));
    let before = harness.state().requested().len();
    harness.get_by_label("Retry now").click_accesskit();
    support::wait_until(&mut harness, "a request after Retry", |h| {
        h.state().requested().len() > before
    });
    wait_for_text(&mut harness, "Trying again in");
}

#[test]
fn devices_are_listed_offline_first_and_a_wrong_token_is_explained() {
    let rt = runtime();
    let seeded = rt.block_on(Seeded::start());
    rt.block_on(async {
        let offline = wait_for(Duration::from_secs(30), || async {
            let device: Device = seeded
                .operator
                .get(&seeded.viewer, "/v1/namespaces/acme/devices/zz-edge")
                .await;
            (Health::of(&device) == Health::Offline).then_some(())
        })
        .await;
        assert!(offline.is_some(), "zz-edge never went offline");
    });

    let mut harness = seeded.console(&seeded.viewer);
    wait_for_label(&mut harness, "Devices");
    harness.get_by_label("Devices").click_accesskit();
    wait_for_label(&mut harness, "zz-edge");
    for name in ["web-01", "db-01", "hq-router"] {
        harness.get_by_label(name);
    }
    let top = |name: &str| harness.get_by_label(name).rect().top();
    assert!(
        top("zz-edge") < top("hq-router"),
        "offline before never reported"
    );
    assert!(
        top("hq-router") < top("db-01"),
        "never reported before online"
    );
    assert!(top("db-01") < top("web-01"), "online ones by name");
    harness.get_by_label("offline");

    // Search narrows the list.
    type_into(&mut harness, "Search", "web");
    wait_until_gone(&mut harness, "zz-edge");
    harness.get_by_label("web-01");

    let mut wrong = seeded.console("not-a-token");
    wait_for_label(&mut wrong, "The operator refused the token");
    wait_for_text(&mut wrong, "401 Unauthorized");
}

fn wait_until_gone(harness: &mut egui_kittest::Harness<'static, ConsoleApp>, label: &str) {
    support::wait_until(harness, &format!("{label} gone"), |h| {
        h.query_by_label(label).is_none()
    });
}

#[test]
fn acknowledging_from_the_alerts_screen_reaches_the_api() {
    let rt = runtime();
    let seeded = rt.block_on(Seeded::start());
    let summary = "CPU on db-01 at 95.0%";

    // A viewer token (its role from /v1/whoami) is not offered what it may not do.
    let mut viewer = seeded.console(&seeded.viewer);
    wait_for_label(&mut viewer, "Alerts");
    viewer.get_by_label("Alerts").click_accesskit();
    wait_for_label(&mut viewer, summary);
    viewer.get_by_label(summary).click_accesskit();
    wait_for_text(&mut viewer, "need an operator token");
    assert!(viewer.query_by_label("Acknowledge").is_none());
    assert!(viewer.query_by_label("Silence").is_none());

    let mut harness = seeded.console(&seeded.oncall);
    wait_for_label(&mut harness, "Alerts");
    harness.get_by_label("Alerts").click_accesskit();
    wait_for_label(&mut harness, summary);
    harness.get_by_label(summary).click_accesskit();
    wait_for_label(&mut harness, "Comment");
    type_into(&mut harness, "Comment", "looking into it");
    harness.get_by_label("Acknowledge").click_accesskit();
    wait_for_label(&mut harness, "Acknowledged.");

    let list: AlertList = rt.block_on(
        seeded
            .operator
            .get(&seeded.viewer, "/v1/namespaces/acme/alerts?rule=cpu-high"),
    );
    let alert = list
        .items
        .iter()
        .find(|a| a.device == "db-01")
        .expect("db-01's alert");
    let ack = alert.acknowledged.as_ref().expect("acknowledged");
    assert_eq!(
        (ack.by.as_str(), ack.comment.as_str()),
        ("oncall", "looking into it")
    );

    // Silence the device and rule for 4 h, once the alert shows its acknowledgement (the
    // row it adds moves the buttons below it).
    wait_for_text(&mut harness, "by oncall at");
    harness.get_by_label("4 h").click();
    harness.step();
    harness.get_by_label("Silence").click_accesskit();
    wait_for_text(&mut harness, "Silenced until");
    let silences: SilenceList = rt.block_on(
        seeded
            .operator
            .get(&seeded.viewer, "/v1/namespaces/acme/silences"),
    );
    let silence = silences.items.first().expect("a silence");
    let matchers: Vec<(&str, &str)> = silence
        .matchers
        .iter()
        .map(|m| (m.label.as_str(), m.value.as_str()))
        .collect();
    assert_eq!(matchers, [("device", "db-01"), ("rule", "cpu-high")]);
    let ms = |t: &str| t.parse::<jiff::Timestamp>().expect("time").as_millisecond();
    let lasts = ms(&silence.ends_at) - ms(&silence.starts_at);
    assert!((lasts - 4 * 3_600_000).abs() < 60_000, "{silence:?}");

    // It is listed under the alerts, and ends from there.
    wait_for_label(&mut harness, "device=db-01, rule=cpu-high");
    harness.get_by_label("End silence").click_accesskit();
    wait_for_label(&mut harness, "Silence ended.");
    let silences: SilenceList = rt.block_on(
        seeded
            .operator
            .get(&seeded.viewer, "/v1/namespaces/acme/silences"),
    );
    assert!(silences.items.is_empty(), "{silences:?}");
}

/// The latest bandwidth request's range, in ms.
fn bandwidth_range(harness: &egui_kittest::Harness<'static, ConsoleApp>) -> Option<(i64, i64)> {
    let url = harness
        .state()
        .requested()
        .into_iter()
        .rev()
        .find(|u| u.contains("/network/interfaces/bandwidth?"))?;
    let time = |name| -> Option<i64> {
        let text = support::query_param(&url, name)?;
        Some(text.parse::<jiff::Timestamp>().ok()?.as_millisecond())
    };
    Some((time("from")?, time("to")?))
}

#[test]
fn a_time_preset_changes_the_request_and_the_charts_ask_for_their_width() {
    let rt = runtime();
    let seeded = rt.block_on(Seeded::start());
    rt.block_on(seeded.seed_network());
    let mut harness = seeded.console(&seeded.viewer);
    // The network screen is the first one; its default range is the last hour.
    support::wait_until(&mut harness, "a bandwidth request", |h| {
        bandwidth_range(h).is_some()
    });
    let (from, to) = bandwidth_range(&harness).expect("range");
    assert_eq!(to - from, 3_600_000);
    let url = harness
        .state()
        .requested()
        .into_iter()
        .rfind(|u| u.contains("/network/interfaces/bandwidth?"))
        .expect("url");
    let points: usize = support::query_param(&url, "points")
        .and_then(|p| p.parse().ok())
        .expect("points");
    // The charts take half of the 1400-point window.
    assert!((60..=700).contains(&points), "points={points}");

    // Alerts of the range are asked for too (their episodes are drawn on the charts).
    assert!(
        harness
            .state()
            .requested()
            .iter()
            .any(|u| u.contains("/alerts?")
                && support::query_param(u, "from").is_some()
                && support::query_param(u, "state").as_deref() == Some("pending,firing,resolved")),
        "{:#?}",
        harness.state().requested()
    );
    // The answers are read, not only asked for.
    wait_for_label(&mut harness, "Bandwidth of 2 interfaces (out up, in down)");
    wait_for_label(&mut harness, "Probe latency");

    harness.get_by_label("24 h").click_accesskit();
    support::wait_until(&mut harness, "a 24 h bandwidth request", |h| {
        bandwidth_range(h).is_some_and(|(from, to)| to - from == 24 * 3_600_000)
    });
    // Back by one range: the request moves by 24 h.
    let (_, to) = bandwidth_range(&harness).expect("range");
    harness.get_by_label("◀").click_accesskit();
    support::wait_until(&mut harness, "the previous 24 h", |h| {
        bandwidth_range(h).is_some_and(|(_, end)| (to - 24 * 3_600_000 - end).abs() < 60_000)
    });

    // Back to the last hour, refreshed every 10 s while it ends now.
    harness.get_by_label("1 h").click();
    harness.get_by_label("10 s").click();
    let bandwidth_calls = |h: &egui_kittest::Harness<'static, ConsoleApp>| {
        h.state()
            .requested()
            .iter()
            .filter(|u| u.contains("/network/interfaces/bandwidth?"))
            .count()
    };
    harness.step();
    let before = bandwidth_calls(&harness);
    support::wait_until(&mut harness, "an automatic refresh", |h| {
        bandwidth_calls(h) > before
    });
}

#[test]
fn the_site_filter_changes_what_the_tables_show() {
    let rt = runtime();
    let seeded = rt.block_on(Seeded::start());
    rt.block_on(seeded.seed_network());
    let mut harness = seeded.console(&seeded.viewer);
    for label in [
        "hq-router ge-0/0/1",
        "branch-sw eth1",
        "10.1.1.10 → 8.8.8.8",
        "10.2.2.20 → 1.1.1.1",
    ] {
        wait_for_label(&mut harness, label);
    }
    harness
        .get_by_role_and_label(Role::ComboBox, "Site")
        .click_accesskit();
    support::wait_until(&mut harness, "the site option", |h| {
        h.query_by_role_and_label(Role::Button, "branch").is_some()
    });
    harness
        .get_by_role_and_label(Role::Button, "branch")
        .click_accesskit();
    wait_until_gone(&mut harness, "hq-router ge-0/0/1");
    wait_until_gone(&mut harness, "10.1.1.10 → 8.8.8.8");
    harness.get_by_label("branch-sw eth1");
    harness.get_by_label("10.2.2.20 → 1.1.1.1");
    let last = harness.state().requested();
    assert!(
        last.iter()
            .any(|u| u.contains("/network/top-talkers?") && u.contains("site=branch")),
        "{last:#?}"
    );

    // Clicking a talker filters the traffic chart to it; clicking again shows all.
    harness
        .get_by_label("10.2.2.20 → 1.1.1.1")
        .click_accesskit();
    wait_for_label(&mut harness, "Flow traffic of 10.2.2.20 → 1.1.1.1");
    let requested = harness.state().requested();
    assert!(
        requested.iter().any(|u| u.contains("/network/traffic?")
            && u.contains("site=branch")
            && u.contains("src=10.2.2.20&dst=1.1.1.1")),
        "{requested:#?}"
    );
    harness.get_by_label("Show all traffic").click_accesskit();
    wait_for_label(&mut harness, "Flow traffic");
}

#[test]
fn clicking_an_interface_opens_its_drill_down_and_a_previous_period_is_fetched() {
    let rt = runtime();
    let seeded = rt.block_on(Seeded::start());
    rt.block_on(seeded.seed_network());
    let mut harness = seeded.console(&seeded.viewer);
    wait_for_label(&mut harness, "hq-router ge-0/0/1");
    wait_for_label(&mut harness, "10.1.1.10 → 8.8.8.8");
    // Charts arriving may move the table between finding the link and the click: click
    // through accessibility rather than at a position.
    harness.get_by_label("hq-router ge-0/0/1").click_accesskit();
    wait_for_label(&mut harness, "Interface hq-router ge-0/0/1");
    // The drill's own talkers: the pair through ge-0/0/1 twice (screen and drill), the
    // branch's pair only on the screen.
    support::wait_until(&mut harness, "the interface's talkers", |h| {
        h.query_all_by_label("10.1.1.10 → 8.8.8.8").count() == 2
    });
    assert_eq!(harness.query_all_by_label("10.2.2.20 → 1.1.1.1").count(), 1);
    wait_for_label(&mut harness, "Errors and discards per bucket");
    wait_for_label(&mut harness, "Utilisation");
    let requested = harness.state().requested();
    assert!(
        requested
            .iter()
            .any(|u| u.contains("/network/interfaces/bandwidth?")
                && u.contains("device=hq-router&interface=ge-0%2F0%2F1")),
        "{requested:#?}"
    );

    // The day before, under the bandwidth: the same range 24 h earlier.
    let (from, _) = bandwidth_range(&harness).expect("range");
    // The drill window may cover the button: click through accessibility, not the pointer.
    harness.get_by_label("a day before").click_accesskit();
    support::wait_until(&mut harness, "the previous day's bandwidth", |h| {
        h.state().requested().iter().any(|u| {
            u.contains("/network/interfaces/bandwidth?")
                && support::query_param(u, "from")
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| (from - 24 * 3_600_000 - t.as_millisecond()).abs() < 60_000)
        })
    });
}

#[test]
fn an_operator_that_dies_during_a_session_brings_back_the_error_state() {
    let rt = runtime();
    let mut seeded = rt.block_on(Seeded::start());
    let mut harness = seeded.console(&seeded.viewer);
    wait_for_label(&mut harness, "Devices");
    harness.get_by_label("Devices").click();
    wait_for_label(&mut harness, "web-01");
    seeded.operator.kill();
    // The next refresh finds it gone (the button stands in for the 30 s timer).
    harness.get_by_label("Refresh devices").click();
    wait_for_label(&mut harness, "Cannot reach the operator");
    wait_for_text(&mut harness, &format!("API: {}", seeded.operator.base));
}

#[test]
fn a_silent_operator_times_out_while_the_ui_keeps_drawing() {
    // The kernel accepts connections for a listener nobody serves: requests go out and no
    // answer ever comes, as from a frozen operator.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    let mut harness = support::console_with_timeout(&api, "some-token", Duration::from_secs(2));
    let mut slowest = Duration::ZERO;
    let started = std::time::Instant::now();
    while harness
        .query_by_label_contains("did not answer within 2 s")
        .is_none()
    {
        let frame = std::time::Instant::now();
        harness.step();
        slowest = slowest.max(frame.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no timeout shown"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
    // Frames kept coming while the call waited (debug build, accessibility tree included).
    assert!(
        slowest < Duration::from_millis(500),
        "a frame took {slowest:?}"
    );
    harness.get_by_label("Cannot reach the operator");
}

#[test]
fn an_operator_on_tls_is_reached_with_its_private_ca_and_refused_without() {
    let rt = runtime();
    let db = rt.block_on(cdot_testkit::pg::TestDb::create());
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let token = cdot_testkit::operator::create_token(&repo, "viewer", "acme", "viewer", "acme");
    let tls = cdot_testkit::tls::TestTls::localhost();
    let (cert, key) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    std::fs::write(&cert, &tls.cert_pem).expect("cert");
    std::fs::write(&key, &tls.key_pem).expect("key");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let operator = rt.block_on(cdot_testkit::operator::Operator::start(
        &repo,
        &db.url,
        tmp.path(),
        &["--tls-cert", &cert, "--tls-key", &key],
    ));
    assert!(operator.base.starts_with("https://"), "{}", operator.base);
    let settings = |ca_pem: Option<Vec<u8>>| cdot_console::config::Settings {
        api: operator.base.clone(),
        token: Some(token.clone()),
        namespaces: vec!["acme".into()],
        timeout: Duration::from_secs(10),
        ca_pem,
        range: cdot_console::widgets::range::Preset::Hour1,
    };

    let mut untrusting = support::console_with(settings(None));
    wait_for_label(&mut untrusting, "Cannot reach the operator");

    let mut trusting = support::console_with(settings(Some(tls.ca_pem.clone().into_bytes())));
    wait_for_label(&mut trusting, "Network in acme");
}
