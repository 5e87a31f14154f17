//! Real apt and dpkg in a real Debian root, for the patching tests: a minimal Debian
//! (`debootstrap --variant=minbase` of the host's release) extracted into a fresh directory
//! per [`DebianRoot`], with `/proc` mounted inside, run under `chroot`. Its only package
//! source is an [`AptRepo`] inside it (`file:/srv/cdot-repo`, `[trusted=yes]`), where tests
//! publish `.deb` files they build ([`TestDeb`]) into suites of a chosen origin ([`Suite`]),
//! so no test reaches the network.
//!
//! The root comes from the tar that `ensure_debian_root` (scripts/lib.sh) builds once and
//! keeps in `~/.cache/cdot-rmm`: `scripts/test` exports its path as
//! `CDOT_TEST_DEBIAN_ROOT_TAR`; without it the fixture runs that function itself (it holds a
//! lock, so parallel tests build it once). Extracting it takes a fraction of a second.
//!
//! Needs root (`chroot`, `mount`) and the host's `tar`, `dpkg-deb`, `dpkg-scanpackages` and
//! `apt-ftparchive` (which `ensure_debian_root` installs).
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

const HINT: &str = "build the Debian test root with `. scripts/lib.sh && ensure_debian_root` \
                    (it prints the tar; export it as CDOT_TEST_DEBIAN_ROOT_TAR)";

/// Where the repository lives inside the root.
pub const REPO_DIR: &str = "/srv/cdot-repo";
/// The sources.list of the repository inside the root.
const SOURCES_LIST: &str = "/etc/apt/sources.list.d/cdot-repo.list";
/// PATH of every command run inside the root.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A suite of the test repository and the origin its `Release` file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    pub name: &'static str,
    pub origin: &'static str,
}

impl Suite {
    /// The distribution's own suite: apt classifies its updates as bugfixes.
    pub const STABLE: Suite = Suite {
        name: "cdot-stable",
        origin: "Debian",
    };
    /// The distribution's security suite: security updates.
    pub const SECURITY: Suite = Suite {
        name: "cdot-stable-security",
        origin: "Debian",
    };
    /// A vendor's suite: third-party updates.
    pub const ACME: Suite = Suite {
        name: "acme-stable",
        origin: "Acme Vendor",
    };
}

/// A package to build: `Architecture: all`, one file `/usr/share/cdot-test/NAME` holding
/// its version, and optionally dependencies and a postinst script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestDeb {
    pub name: String,
    pub version: String,
    pub depends: Option<String>,
    /// The body of `postinst` (after `#!/bin/sh`), e.g. `echo broken >&2; exit 3`.
    pub postinst: Option<String>,
}

impl TestDeb {
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            depends: None,
            postinst: None,
        }
    }

    /// `Depends:` as written in a control file (`libfoo (>= 2.0), bar`).
    pub fn depends(mut self, depends: &str) -> Self {
        self.depends = Some(depends.to_owned());
        self
    }

    pub fn postinst(mut self, script: &str) -> Self {
        self.postinst = Some(script.to_owned());
        self
    }

    fn file_name(&self) -> String {
        format!("{}_{}_all.deb", self.name, self.version)
    }

    /// Builds it with `dpkg-deb` into `dir` (on the host); returns the file.
    pub fn build(&self, dir: &Path) -> PathBuf {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tree = std::env::temp_dir().join(format!(
            "cdot-test-deb-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&tree);
        let debian = tree.join("DEBIAN");
        let share = tree.join("usr/share/cdot-test");
        for d in [&debian, &share, &dir.to_path_buf()] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        write(&share.join(&self.name), &format!("{}\n", self.version));
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: cdot-rmm tests <tests@cdot-rmm.invalid>\nSection: misc\nPriority: optional\n",
            self.name, self.version
        );
        if let Some(depends) = &self.depends {
            control.push_str(&format!("Depends: {depends}\n"));
        }
        control.push_str(&format!(
            "Description: cdot-rmm test package {}\n",
            self.name
        ));
        write(&debian.join("control"), &control);
        if let Some(script) = &self.postinst {
            let path = debian.join("postinst");
            write(&path, &format!("#!/bin/sh\n{script}\n"));
            chmod(&path, 0o755);
        }
        let out = dir.join(self.file_name());
        run_host(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "--build"])
                .arg(&tree)
                .arg(&out),
        );
        let _ = std::fs::remove_dir_all(&tree);
        out
    }
}

/// A Debian root in a fresh directory, `/proc` mounted inside; unmounted and removed on drop.
pub struct DebianRoot {
    dir: PathBuf,
    proc_mounted: bool,
}

impl DebianRoot {
    /// Extracts the root (module docs), mounts `/proc` in it, and leaves it with no package
    /// source but the (empty) test repository: no sources.list, no package lists, and a
    /// `policy-rc.d` that starts no service.
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the Debian root fixture needs root (chroot, mount)"
        );
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cdot-debian-root-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let tar = root_tar();
        run_host(
            Command::new("tar")
                .args(["--numeric-owner", "-xf"])
                .arg(tar)
                .arg("-C")
                .arg(&dir),
        );
        let mut root = Self {
            dir,
            proc_mounted: false,
        };
        run_host(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(root.dir.join("proc")),
        );
        root.proc_mounted = true;

        write(&root.host_path("/etc/apt/sources.list"), "");
        for dir in ["/etc/apt/sources.list.d", "/var/lib/apt/lists"] {
            clear_dir(&root.host_path(dir));
        }
        std::fs::create_dir_all(root.host_path("/var/lib/apt/lists/partial"))
            .expect("create the lists' partial dir");
        let policy = root.host_path("/usr/sbin/policy-rc.d");
        write(&policy, "#!/bin/sh\nexit 101\n");
        chmod(&policy, 0o755);
        root
    }

    /// The root directory, as the host sees it (what `--patch-root` takes).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `path` inside the root, as the host sees it.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }

    /// Runs `args` under `chroot` (C locale, noninteractive); does not judge the result.
    pub fn chroot(&self, args: &[&str]) -> Output {
        let mut command = Command::new("chroot");
        command
            .arg(&self.dir)
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
            .output()
            .unwrap_or_else(|e| panic!("run chroot {} {}: {e}", self.dir.display(), args.join(" ")))
    }

    /// Runs `args` under `chroot`; panics with its output when it fails. Returns stdout.
    pub fn chroot_ok(&self, args: &[&str]) -> String {
        let out = self.chroot(args);
        assert!(
            out.status.success(),
            "`chroot {} {}` failed ({}):\n{}{}",
            self.dir.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The installed version of `package` (dpkg status `installed`), if it is.
    pub fn version(&self, package: &str) -> Option<String> {
        let out = self.chroot(&[
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Status} ${Version}",
            package,
        ]);
        String::from_utf8_lossy(&out.stdout)
            .strip_prefix("installed ")
            .map(|v| v.trim().to_owned())
    }

    /// dpkg's state of `package` (`installed`, `half-configured`…), if it knows it.
    pub fn status(&self, package: &str) -> Option<String> {
        let out = self.chroot(&["dpkg-query", "-W", "-f", "${db:Status-Status}", package]);
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// Packages in dpkg state `installed`.
    pub fn installed_count(&self) -> u32 {
        let out = self.chroot_ok(&["dpkg-query", "-W", "-f", "${db:Status-Status}\n"]);
        let n = out.lines().filter(|l| *l == "installed").count();
        u32::try_from(n).expect("a count of packages")
    }

    /// Every package with its version and dpkg state, one a line: what "nothing changed"
    /// compares.
    pub fn snapshot(&self) -> String {
        self.chroot_ok(&[
            "dpkg-query",
            "-W",
            "-f",
            "${Package} ${Version} ${db:Status-Abbrev}\n",
        ])
    }

    /// Builds `debs` and installs them with `dpkg -i` (test setup: the versions a scan starts
    /// from; they need not be in the repository).
    pub fn install(&self, debs: &[TestDeb]) {
        let dir = "/var/cache/cdot-test-debs";
        let files: Vec<String> = debs
            .iter()
            .map(|deb| {
                deb.build(&self.host_path(dir));
                format!("{dir}/{}", deb.file_name())
            })
            .collect();
        let mut args = vec!["dpkg", "-i"];
        args.extend(files.iter().map(String::as_str));
        self.chroot_ok(&args);
    }

    /// The test repository inside this root.
    pub fn repo(&self) -> AptRepo<'_> {
        AptRepo { root: self }
    }
}

impl Default for DebianRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        if self.proc_mounted {
            let proc = self.dir.join("proc");
            let unmounted = Command::new("umount")
                .arg(&proc)
                .status()
                .is_ok_and(|s| s.success())
                || Command::new("umount")
                    .arg("-l")
                    .arg(&proc)
                    .status()
                    .is_ok_and(|s| s.success());
            if !unmounted {
                // Never delete through a mount point.
                eprintln!(
                    "could not unmount {}; leaving {}",
                    proc.display(),
                    self.dir.display()
                );
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The apt repository at [`REPO_DIR`] inside a [`DebianRoot`]: `pool/<suite>/` holds the
/// packages, `dists/<suite>/main/binary-all/Packages` (dpkg-scanpackages) and
/// `dists/<suite>/Release` (apt-ftparchive, with `Origin`, `Suite`, `Codename` and hashes)
/// index them, and the root's sources list names each suite published so far.
pub struct AptRepo<'a> {
    root: &'a DebianRoot,
}

impl AptRepo<'_> {
    /// Builds `deb`, adds it to `suite` and publishes the suite again. `apt-get update` in
    /// the root sees it.
    pub fn publish(&self, suite: Suite, deb: &TestDeb) {
        let repo = self.root.host_path(REPO_DIR);
        deb.build(&repo.join("pool").join(suite.name));
        self.index(suite);
    }

    /// Writes `suite`'s Packages and Release and the sources list.
    fn index(&self, suite: Suite) {
        let repo = self.root.host_path(REPO_DIR);
        let dist = repo.join("dists").join(suite.name);
        let binary = dist.join("main/binary-all");
        std::fs::create_dir_all(&binary)
            .unwrap_or_else(|e| panic!("create {}: {e}", binary.display()));
        let packages = run_host(
            Command::new("dpkg-scanpackages")
                .args(["-m", &format!("pool/{}", suite.name), "/dev/null"])
                .current_dir(&repo),
        );
        write(&binary.join("Packages"), &packages);
        let _ = std::fs::remove_file(dist.join("Release"));
        let release = run_host(
            Command::new("apt-ftparchive")
                .args([
                    "-o",
                    &format!("APT::FTPArchive::Release::Origin={}", suite.origin),
                    "-o",
                    &format!("APT::FTPArchive::Release::Suite={}", suite.name),
                    "-o",
                    &format!("APT::FTPArchive::Release::Codename={}", suite.name),
                    "-o",
                    "APT::FTPArchive::Release::Architectures=all",
                    "-o",
                    "APT::FTPArchive::Release::Components=main",
                    "release",
                ])
                .arg(&dist),
        );
        write(&dist.join("Release"), &release);

        let suites: BTreeSet<String> = std::fs::read_dir(repo.join("dists"))
            .expect("read the repository's dists")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let list: String = suites
            .iter()
            .map(|s| format!("deb [trusted=yes] file:{REPO_DIR} {s} main\n"))
            .collect();
        write(&self.root.host_path(SOURCES_LIST), &list);
    }
}

/// The root tar: `$CDOT_TEST_DEBIAN_ROOT_TAR`, else what `ensure_debian_root` prints.
pub fn root_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        if let Some(tar) = std::env::var_os("CDOT_TEST_DEBIAN_ROOT_TAR") {
            let tar = PathBuf::from(tar);
            assert!(
                tar.is_file(),
                "CDOT_TEST_DEBIAN_ROOT_TAR={} is not a file; {HINT}",
                tar.display()
            );
            return tar;
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace above testkit/");
        let out = Command::new("bash")
            .args(["-c", ". scripts/lib.sh; ensure_debian_root"])
            .current_dir(workspace)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run bash -c '. scripts/lib.sh; ensure_debian_root': {e}"));
        assert!(
            out.status.success(),
            "`bash -c '. scripts/lib.sh; ensure_debian_root'` in {} failed ({}); see its output above",
            workspace.display(),
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tar = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(
            tar.is_file(),
            "ensure_debian_root printed {stdout:?}, not a tar; {HINT}"
        );
        tar
    })
}

/// Runs a host command; panics naming it when it fails. Returns its stdout.
fn run_host(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {shown}: {e}; {HINT}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Removes what `dir` holds (not the directory).
fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}
