//! Patching against real apt and dpkg: a debootstrapped Debian root per test
//! (`cdot_testkit::debian_root`) whose only source is a repository of packages the test
//! builds, in a suite of the distribution's origin (bugfix), its `-security` suite and a
//! vendor's (third party).
use std::path::Path;

use cdot_agent::patches::PatchSystem;
use cdot_crds::{
    patch_policy::Classification,
    wire::{
        patch::{AvailableUpdate, PackageTarget, PatchBackend, PatchProgress, PatchState},
        work::MAX_LOG_TAIL_BYTES,
    },
};
use cdot_testkit::debian_root::{DebianRoot, REPO_DIR, Suite, TestDeb};

fn system(root: &DebianRoot) -> PatchSystem {
    let system = PatchSystem::detect(Some(root.path().to_owned()));
    assert_eq!(system.backend(), Some(PatchBackend::Apt));
    system
}

fn target(name: &str, version: &str, classification: Classification) -> PackageTarget {
    PackageTarget {
        name: name.to_owned(),
        version: version.to_owned(),
        classification,
    }
}

/// cdot-alpha, cdot-beta and cdot-acme at 1.0, with 2.0 published in the stable, security
/// and vendor suites.
fn root_with_three_updates() -> DebianRoot {
    let root = DebianRoot::new();
    root.install(&[
        TestDeb::new("cdot-alpha", "1.0"),
        TestDeb::new("cdot-beta", "1.0"),
        TestDeb::new("cdot-acme", "1.0"),
    ]);
    let repo = root.repo();
    repo.publish(Suite::STABLE, &TestDeb::new("cdot-alpha", "2.0"));
    repo.publish(Suite::SECURITY, &TestDeb::new("cdot-beta", "2.0"));
    repo.publish(Suite::ACME, &TestDeb::new("cdot-acme", "2.0"));
    root
}

fn deb_size(root: &DebianRoot, suite: Suite, file: &str) -> u64 {
    let path = root.host_path(&format!("{REPO_DIR}/pool/{}/{file}", suite.name));
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// Installs `target` and returns the progress reported on the way and the final one.
async fn install(
    system: &PatchSystem,
    target: &PackageTarget,
    approved: &[PackageTarget],
    deny: &[&str],
) -> (Vec<PatchState>, PatchProgress) {
    let deny: Vec<String> = deny.iter().map(|d| (*d).to_owned()).collect();
    let mut seen = Vec::new();
    let last = system
        .install(target, approved, &deny, &mut |p: PatchProgress| {
            assert_eq!(
                (p.name.as_str(), p.version.as_str()),
                (target.name.as_str(), target.version.as_str())
            );
            seen.push(p.state);
        })
        .await;
    (seen, last)
}

#[tokio::test]
async fn scan_lists_each_update_with_its_class_and_size() {
    let root = root_with_three_updates();
    let system = system(&root);
    let scan = system.scan("9.9.9").await;
    assert_eq!(scan.problem, None);
    assert_eq!(scan.backend, Some(PatchBackend::Apt));
    assert_eq!(scan.agent_version, "9.9.9");
    let update = |name: &str, class, suite: Suite| AvailableUpdate {
        name: name.to_owned(),
        from: "1.0".to_owned(),
        to: "2.0".to_owned(),
        classification: class,
        // The suites' Release files carry no Label or Version: apt names them by suite.
        source: suite.name.to_owned(),
        size_bytes: Some(deb_size(&root, suite, &format!("{name}_2.0_all.deb"))),
        reboot_required: false,
    };
    assert_eq!(
        scan.updates,
        vec![
            update("cdot-acme", Classification::ThirdParty, Suite::ACME),
            update("cdot-alpha", Classification::Bugfix, Suite::STABLE),
            update("cdot-beta", Classification::Security, Suite::SECURITY),
        ]
    );
    assert_eq!(scan.installed_packages, root.installed_count());
    assert!(scan.installed_packages > 50, "{}", scan.installed_packages);
    assert!(!scan.reboot_required);

    std::fs::write(
        root.host_path("/run/reboot-required"),
        "*** System restart required ***\n",
    )
    .expect("write the reboot flag");
    assert!(system.reboot_required().await);
    assert!(system.scan("9.9.9").await.reboot_required);
}

#[tokio::test]
async fn install_moves_only_the_approved_package() {
    let root = root_with_three_updates();
    let system = system(&root);
    assert_eq!(system.scan("0").await.updates.len(), 3);
    let alpha = target("cdot-alpha", "2.0", Classification::Bugfix);
    let (seen, last) = install(&system, &alpha, std::slice::from_ref(&alpha), &[]).await;
    assert_eq!(seen, vec![PatchState::Downloading, PatchState::Installing]);
    assert_eq!(last.state, PatchState::Installed, "{last:#?}");
    assert_eq!((last.exit_code, last.detail.as_deref()), (None, None));
    assert_eq!(root.version("cdot-alpha").as_deref(), Some("2.0"));
    assert_eq!(root.version("cdot-beta").as_deref(), Some("1.0"));
    assert_eq!(root.version("cdot-acme").as_deref(), Some("1.0"));

    // Again: already there, nothing to do.
    let (seen, last) = install(&system, &alpha, std::slice::from_ref(&alpha), &[]).await;
    assert_eq!((seen, last.state), (vec![], PatchState::Installed));
    let names: Vec<String> = system
        .scan("0")
        .await
        .updates
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["cdot-acme", "cdot-beta"]);
}

#[tokio::test]
async fn a_failing_postinst_is_failed_with_its_message() {
    let root = DebianRoot::new();
    root.install(&[TestDeb::new("cdot-broken", "1.0")]);
    root.repo().publish(
        Suite::STABLE,
        &TestDeb::new("cdot-broken", "2.0")
            .postinst("echo 'cdot-broken: refusing to configure, on purpose' >&2; exit 3"),
    );
    let system = system(&root);
    assert_eq!(system.scan("0").await.updates.len(), 1);
    let broken = target("cdot-broken", "2.0", Classification::Bugfix);
    let (seen, last) = install(&system, &broken, std::slice::from_ref(&broken), &[]).await;
    assert_eq!(seen, vec![PatchState::Downloading, PatchState::Installing]);
    assert_eq!(last.state, PatchState::Failed, "{last:#?}");
    // apt-get's code when dpkg failed.
    assert_eq!(last.exit_code, Some(100));
    let detail = last.detail.expect("a detail");
    assert!(!detail.contains('\n'), "{detail}");
    assert!(
        detail.contains("post-installation script subprocess returned error exit status 3"),
        "{detail}"
    );
    let log = last.log_tail.expect("a log tail");
    assert!(log.len() <= MAX_LOG_TAIL_BYTES);
    assert!(
        log.contains("cdot-broken: refusing to configure, on purpose"),
        "{log}"
    );
    assert_eq!(
        root.status("cdot-broken").as_deref(),
        Some("half-configured")
    );
}

#[tokio::test]
async fn a_dependency_on_a_denied_or_unapproved_package_installs_nothing() {
    let root = DebianRoot::new();
    root.install(&[
        TestDeb::new("cdot-lib", "1.0"),
        TestDeb::new("cdot-app", "1.0").depends("cdot-lib"),
    ]);
    let repo = root.repo();
    repo.publish(Suite::STABLE, &TestDeb::new("cdot-lib", "2.0"));
    repo.publish(
        Suite::SECURITY,
        &TestDeb::new("cdot-app", "2.0").depends("cdot-lib (>= 2.0)"),
    );
    let system = system(&root);
    assert_eq!(system.scan("0").await.updates.len(), 2);
    let before = root.snapshot();
    let app = target("cdot-app", "2.0", Classification::Security);
    let lib = target("cdot-lib", "2.0", Classification::Bugfix);

    let (seen, last) = install(&system, &app, std::slice::from_ref(&app), &["^cdot-lib$"]).await;
    assert_eq!(
        (seen, last.state),
        (vec![], PatchState::Failed),
        "{last:#?}"
    );
    assert_eq!(
        last.detail.as_deref(),
        Some("would also change denied package cdot-lib (1.0 -> 2.0)")
    );
    assert_eq!(last.exit_code, None);
    assert!(
        last.log_tail
            .unwrap_or_default()
            .contains("Inst cdot-lib [1.0] (2.0")
    );
    assert_eq!(root.snapshot(), before, "nothing may change");

    // Denied wins over approved.
    let (_, last) = install(&system, &app, &[app.clone(), lib.clone()], &["^cdot-lib$"]).await;
    assert_eq!(last.state, PatchState::Failed);
    // Not denied, but not approved either.
    let (_, last) = install(&system, &app, std::slice::from_ref(&app), &[]).await;
    assert_eq!(
        last.detail.as_deref(),
        Some("would also change unapproved package cdot-lib (1.0 -> 2.0)")
    );
    assert_eq!(root.snapshot(), before, "nothing may change");

    // Both approved: both move.
    let (seen, last) = install(&system, &app, &[app.clone(), lib], &[]).await;
    assert_eq!(seen, vec![PatchState::Downloading, PatchState::Installing]);
    assert_eq!(last.state, PatchState::Installed, "{last:#?}");
    assert_eq!(root.version("cdot-app").as_deref(), Some("2.0"));
    assert_eq!(root.version("cdot-lib").as_deref(), Some("2.0"));
}

#[tokio::test]
async fn a_root_without_apt_has_a_problem_and_no_updates() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let system = PatchSystem::detect(Some(dir.path().to_owned()));
    assert_eq!(system.backend(), None);
    let scan = system.scan("0").await;
    let problem = scan.problem.expect("a problem");
    assert!(
        problem.contains("apt-get")
            && problem.contains("dnf")
            && problem.contains(&dir.path().display().to_string()),
        "{problem}"
    );
    assert!(scan.updates.is_empty());
    assert_eq!(scan.backend, None);
    assert!(!system.reboot_required().await);
    let t = target("anything", "1", Classification::Bugfix);
    let (seen, last) = install(&system, &t, std::slice::from_ref(&t), &[]).await;
    assert_eq!((seen, last.state), (vec![], PatchState::Failed));
}

#[tokio::test]
async fn a_source_apt_cannot_read_is_a_problem_naming_apt_get_update() {
    let root = DebianRoot::new();
    std::fs::write(
        root.host_path("/etc/apt/sources.list.d/gone.list"),
        "deb [trusted=yes] file:/srv/nowhere gone main\n",
    )
    .expect("write a sources list");
    assert!(!Path::new(&root.host_path("/srv/nowhere")).exists());
    let scan = system(&root).scan("0").await;
    let problem = scan.problem.expect("a problem");
    assert!(problem.contains("apt-get -q update"), "{problem}");
    assert!(problem.contains("exit code 100"), "{problem}");
    assert!(scan.updates.is_empty());
}

#[tokio::test]
async fn a_dead_source_beside_working_ones_still_lists_updates() {
    let root = DebianRoot::new();
    root.install(&[TestDeb::new("cdot-alpha", "1.0")]);
    root.repo()
        .publish(Suite::STABLE, &TestDeb::new("cdot-alpha", "2.0"));
    std::fs::write(
        root.host_path("/etc/apt/sources.list.d/gone.list"),
        "deb [trusted=yes] file:/srv/nowhere gone main\n",
    )
    .expect("write a sources list");
    // apt-get update exits 100, but the lists it could fetch are planned with.
    let scan = system(&root).scan("0").await;
    assert_eq!(scan.problem, None);
    let names: Vec<&str> = scan.updates.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["cdot-alpha"]);
}

#[tokio::test]
async fn an_interrupted_dpkg_is_repaired_before_the_install() {
    let root = DebianRoot::new();
    root.install(&[TestDeb::new("cdot-alpha", "1.0")]);
    root.repo()
        .publish(Suite::STABLE, &TestDeb::new("cdot-alpha", "2.0"));
    let system = system(&root);
    assert_eq!(system.scan("0").await.updates.len(), 1);
    // What dpkg leaves behind when it is killed mid-run; apt-get refuses to install then
    // ("dpkg was interrupted, you must manually run 'dpkg --configure -a'").
    std::fs::write(root.host_path("/var/lib/dpkg/updates/0001"), "")
        .expect("write a dpkg journal entry");
    let refused = root.chroot(&[
        "apt-get",
        "-y",
        "install",
        "--only-upgrade",
        "cdot-alpha=2.0",
    ]);
    assert_eq!(refused.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("dpkg was interrupted"));

    let alpha = target("cdot-alpha", "2.0", Classification::Bugfix);
    let (_, last) = install(&system, &alpha, std::slice::from_ref(&alpha), &[]).await;
    assert_eq!(last.state, PatchState::Installed, "{last:#?}");
    assert_eq!(root.version("cdot-alpha").as_deref(), Some("2.0"));
}
