//! Where the console finds the operator and its token.
//!
//! Three layers, the first that names a value wins: command-line flags, then environment
//! variables (both through clap), then the TOML file (`--config`, or
//! `$XDG_CONFIG_HOME/cdot/console.toml` when it exists). A token given directly in one layer
//! beats a token file in a later one. With nothing given, the API is the quick start's
//! `http://127.0.0.1:8080` and the token is read from `.cdot/viewer-token` when that file
//! exists, so `cdot-console` alone works from a checkout running the quick start.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::widgets::range::Preset;

/// The quick start's API listener.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";
/// The quick start writes its viewer token here (relative to the checkout).
pub const QUICKSTART_TOKEN_FILE: &str = ".cdot/viewer-token";
/// A request that takes longer fails with a timeout error in its panel.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} is empty")]
    EmptyToken { path: PathBuf },
    #[error("API URL {url:?} must start with http:// or https://")]
    Scheme { url: String },
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no PEM certificate: {detail}")]
    CaPem { path: PathBuf, detail: String },
    #[error("range {value:?} is not one of 15m, 1h, 6h, 24h, 7d")]
    Range { value: String },
}

/// One layer of settings: what flags and environment give, or what the file says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Layer {
    /// Base URL of the operator's API.
    pub api: Option<String>,
    /// A bearer token (prefer `token-file` in files that others can read).
    pub token: Option<String>,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Namespaces offered in the selector besides those the token may read (`/v1/whoami`).
    pub namespaces: Option<Vec<String>>,
    /// The network screen's range at start: `15m`, `1h`, `6h`, `24h` or `7d`.
    pub range: Option<String>,
    /// Request timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// PEM certificate(s) of a private CA that signed the operator's certificate.
    pub ca_file: Option<PathBuf>,
}

impl Layer {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

/// `$XDG_CONFIG_HOME/cdot/console.toml` (or `~/.config/...`), when it exists.
pub fn default_config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("cdot/console.toml")).filter(|p| p.is_file())
}

/// What the console runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Base URL without a trailing slash.
    pub api: String,
    /// `None` when no layer names one and the quick start's file is absent: every request
    /// then answers 401, which the connect screen explains.
    pub token: Option<String>,
    pub namespaces: Vec<String>,
    pub timeout: Duration,
    /// PEM of a private CA the client trusts besides the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The network screen's range at start.
    pub range: Preset,
}

impl Settings {
    /// Merges `layers` (first wins) over the defaults.
    pub fn resolve(layers: &[Layer]) -> Result<Self, ConfigError> {
        let api = first(layers, |l| l.api.clone())
            .unwrap_or_else(|| DEFAULT_API.to_owned())
            .trim_end_matches('/')
            .to_owned();
        if !(api.starts_with("http://") || api.starts_with("https://")) {
            return Err(ConfigError::Scheme { url: api });
        }
        let token = match layers.iter().find_map(|l| match (&l.token, &l.token_file) {
            (Some(token), _) => Some(Ok(token.trim().to_owned())),
            (None, Some(path)) => Some(read_token(path)),
            (None, None) => None,
        }) {
            Some(token) => Some(token?),
            None => Some(Path::new(QUICKSTART_TOKEN_FILE))
                .filter(|p| p.is_file())
                .map(read_token)
                .transpose()?,
        };
        let namespaces = first(layers, |l| l.namespaces.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        let timeout =
            first(layers, |l| l.timeout_secs).map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let ca_pem = first(layers, |l| l.ca_file.clone())
            .map(|path| read_ca(&path))
            .transpose()?;
        let range = match first(layers, |l| l.range.clone()) {
            None => Preset::Hour1,
            Some(value) => Preset::parse(value.trim()).ok_or(ConfigError::Range { value })?,
        };
        Ok(Self {
            api,
            token,
            namespaces,
            timeout,
            ca_pem,
            range,
        })
    }
}

/// Reads a CA file, checked to hold PEM certificates (so a bad file fails at start, not on
/// the first request).
fn read_ca(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path).map_err(|source| ConfigError::CaFile {
        path: path.to_owned(),
        source,
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(ConfigError::CaPem {
            path: path.to_owned(),
            detail: "no certificate in it".into(),
        }),
        Err(e) => Err(ConfigError::CaPem {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

/// The value of the first layer that has one.
fn first<T>(layers: &[Layer], f: impl Fn(&Layer) -> Option<T>) -> Option<T> {
    layers.iter().find_map(f)
}

fn read_token(path: &Path) -> Result<String, ConfigError> {
    let token = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::TokenFile {
            path: path.to_owned(),
            source,
        })?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken {
            path: path.to_owned(),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_a_token_beats_a_later_token_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").expect("write");
        let cli = Layer {
            token: Some("from-flag".into()),
            ..Layer::default()
        };
        let config: Layer = toml::from_str(&format!(
            "api = \"https://ops.example:8443/\"\ntoken-file = {:?}\nnamespaces = [\"acme\", \" globex \"]\ntimeout-secs = 5\nrange = \"24h\"\n",
            file.display()
        ))
        .expect("toml");
        let s = Settings::resolve(&[cli, config.clone()]).expect("resolve");
        assert_eq!(s.api, "https://ops.example:8443");
        assert_eq!(s.token.as_deref(), Some("from-flag"));
        assert_eq!(s.namespaces, ["acme", "globex"]);
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.range, Preset::Hour24);

        let s = Settings::resolve(&[Layer::default(), config]).expect("resolve");
        assert_eq!(s.token.as_deref(), Some("from-file"));
    }

    #[test]
    fn unknown_keys_bad_schemes_and_empty_token_files_are_errors() {
        assert!(toml::from_str::<Layer>("server = \"x\"").is_err());
        let bad = Layer {
            api: Some("127.0.0.1:8080".into()),
            ..Layer::default()
        };
        assert!(matches!(
            Settings::resolve(&[bad]),
            Err(ConfigError::Scheme { .. })
        ));
        let dir = tempfile::tempdir().expect("tmp");
        let empty = dir.path().join("token");
        std::fs::write(&empty, " \n").expect("write");
        let layer = Layer {
            token_file: Some(empty),
            ..Layer::default()
        };
        assert!(matches!(
            Settings::resolve(&[layer]),
            Err(ConfigError::EmptyToken { .. })
        ));
        let not_pem = Layer {
            ca_file: Some(not_a_certificate(&dir)),
            ..Layer::default()
        };
        assert!(matches!(
            Settings::resolve(&[not_pem]),
            Err(ConfigError::CaPem { .. })
        ));
        let range = Layer {
            range: Some("2h".into()),
            ..Layer::default()
        };
        assert!(matches!(
            Settings::resolve(&[range]),
            Err(ConfigError::Range { value }) if value == "2h"
        ));
        assert_eq!(
            Settings::resolve(&[Layer::default()]).map(|s| s.range).ok(),
            Some(Preset::Hour1)
        );
    }

    fn not_a_certificate(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        path
    }

    #[test]
    fn a_ca_file_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("ca.pem");
        let tls = cdot_testkit::tls::TestTls::localhost();
        std::fs::write(&path, &tls.ca_pem).expect("write");
        let layer = Layer {
            ca_file: Some(path),
            ..Layer::default()
        };
        let s = Settings::resolve(&[layer]).expect("resolve");
        assert_eq!(s.ca_pem.as_deref(), Some(tls.ca_pem.as_bytes()));
    }
}
