//! From a real exporter to the top-talkers API: softflowd watches a host of a network
//! namespace lab and exports NetFlow v9 of real traffic to the real `cdot-collector`
//! binary (enrolled over mutual TLS as a Device of class Collector), which ships per-minute
//! aggregates to the real `cdot-operator` on a fresh PostgreSQL database; people then read
//! the pair back through `GET /v1/namespaces/acme/network/top-talkers`.
//!
//! Needs root, iproute2, softflowd, netcat-openbsd and iputils-ping (`scripts/test`
//! installs them).
mod support;

use std::{
    net::UdpSocket,
    process::{Command, Stdio},
    time::Duration,
};

use cdot_testkit::{netns::Lab, process::Daemon};
use serde_json::Value;
use support::{Operator, TestCollector, TestDb, create_token, wait_for};

#[tokio::test]
async fn flows_exported_by_softflowd_reach_the_top_talkers_api() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let manifests = tmp.path().join("repo");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    let enroll_token = support::create_enrollment_token(&manifests, "collectors", "acme");
    let viewer = create_token(&manifests, "viewer", "acme", "viewer", "acme");
    let operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;

    // The collector: enrolled, then receiving on the lab's gateway address.
    let collector = TestCollector::enroll(&operator, &enroll_token, "col-1", tmp.path());
    let lab = Lab::new();
    let a = lab.add_host();
    let b = lab.add_host();
    let gateway = lab.gateway();
    let netflow_port = UdpSocket::bind((gateway, 0))
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port();
    let netflow_listen = format!("{gateway}:{netflow_port}");
    let running = collector.run(&["--no-sflow", "--netflow-listen", &netflow_listen]);
    let metrics_port = collector.metrics_port;
    let http = reqwest::Client::new();
    let records = |body: &str| -> u64 {
        body.lines()
            .filter(|l| l.starts_with("cdot_collector_flow_records_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    wait_for(Duration::from_secs(20), || async {
        http.get(&metrics_url).send().await.ok().map(|_| ())
    })
    .await
    .expect("collector metrics endpoint up");

    // softflowd on host a exports what crosses its interface.
    let work = tmp.path();
    let ctl = work.join("softflowd.ctl");
    let softflowd = Daemon(
        a.command("softflowd")
            .args(["-i", "eth0", "-d", "-v", "9", "-n"])
            .arg(format!("{gateway}:{netflow_port}"))
            .arg("-c")
            .arg(&ctl)
            .arg("-p")
            .arg(work.join("softflowd.pid"))
            .args(["-t", "maxlife=5", "-t", "tcp=2", "-t", "icmp=2"])
            .arg(format!("not udp port {netflow_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("softflowd.log")).expect("log"))
            .spawn()
            .expect("start softflowd"),
    );
    wait_for(Duration::from_secs(10), || async {
        ctl.exists().then_some(())
    })
    .await
    .expect("softflowd control socket");

    // Real traffic from a to b: a TCP transfer and a ping flood.
    let b_addr = b.addr.to_string();
    let _listener = Daemon(
        b.command("sh")
            // exec: the signal on drop reaches nc itself.
            .args(["-c", "exec nc -lk 5001 >/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nc listen"),
    );
    wait_for(Duration::from_secs(10), || async {
        let out = b.run("ss", &["-Hltn", "sport = :5001"]);
        (!out.stdout.is_empty()).then_some(())
    })
    .await
    .expect("nc listening in b");
    a.run(
        "sh",
        &[
            "-c",
            &format!("head -c 2000000 /dev/zero | nc -N -w 5 {b_addr} 5001"),
        ],
    );
    a.run("ping", &["-f", "-c", "300", "-s", "900", "-q", &b_addr]);
    // libpcap hands softflowd whole blocks of packets: a flood of small ones pushes out
    // the block that holds the transfer's last packets.
    a.run("ping", &["-f", "-c", "20000", "-q", &b_addr]);

    // Export what softflowd still tracks, then wait for the collector to count it.
    let expired = Command::new("softflowctl")
        .arg("-c")
        .arg(&ctl)
        .arg("shutdown")
        .output()
        .expect("softflowctl");
    assert!(expired.status.success(), "softflowctl: {expired:?}");
    let mut softflowd = softflowd;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(softflowd.0.try_wait(), Ok(Some(_))) {
        assert!(
            std::time::Instant::now() < deadline,
            "softflowd did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = wait_for(Duration::from_secs(20), || async {
        let body = http
            .get(&metrics_url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (records(&body) > 0).then_some(())
    })
    .await;
    if received.is_none() {
        let body = match http.get(&metrics_url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        panic!(
            "the collector received no flow records; its metrics:\n{body}\nlog:\n{}\nsoftflowd:\n{}",
            collector.logs(),
            std::fs::read_to_string(tmp.path().join("softflowd.log")).unwrap_or_default()
        );
    }

    // Stopping the collector flushes the open minute and delivers it before exiting.
    cdot_testkit::process::sigterm(&running.0);
    let status = tokio::task::spawn_blocking(move || {
        let mut running = running;
        let status = running.0.wait();
        status.map(|s| (s, running))
    })
    .await
    .expect("join")
    .expect("wait for the collector")
    .0;
    assert!(status.success(), "collector exit: {status}");

    // Ranges up to 15 minutes are read from the minute table, which has every batch as it
    // lands (ten, so that the range is still short when the last try asks).
    let from = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10);
    let url = format!(
        "{}/v1/namespaces/acme/network/top-talkers?from={from}",
        operator.base
    );
    let body: Value = wait_for(Duration::from_secs(20), || async {
        let body: Value = http
            .get(&url)
            .bearer_auth(&viewer)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let found = body["items"]
            .as_array()?
            .iter()
            .any(|i| i["src"] == a.addr.to_string() && i["dst"] == b_addr);
        found.then_some(body)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "a -> b not among the top talkers; collector log:\n{}",
            collector.logs()
        )
    });
    let pair = body["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|i| i["src"] == a.addr.to_string() && i["dst"] == b_addr)
        })
        .expect("pair");
    let bytes = pair["bytes"].as_i64().expect("bytes");
    let packets = pair["packets"].as_i64().expect("packets");
    // At least the 2 MB transfer with its headers, and its packets.
    assert!(bytes >= 2_000_000, "{pair}");
    assert!(packets >= 30, "{pair}");
    assert!(body["totalBytes"].as_i64().unwrap_or(0) >= bytes, "{body}");
    drop(lab);
}
