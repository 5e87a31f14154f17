//! `cdot-operator token create`: makes an API token and its Secret-shaped manifest.
//!
//! Only the token's SHA-256 goes into the manifest, so the manifest can be committed to git;
//! the token itself is printed once and never stored by cdot-rmm.
use anyhow::Context;
use cdot_crds::{
    api_token::{Role, render_token_secret},
    enrollment_token::render_enrollment_secret,
};
use rand::{Rng, distr::Alphanumeric};

use crate::cli::{RoleArg, TokenCommand, TokenType};

/// Prefix that makes leaked tokens easy to find with secret scanners.
const TOKEN_PREFIX: &str = "cdot_";

pub fn generate() -> String {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{random}")
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = command;
    let role = match args.role {
        RoleArg::Viewer => Role::Viewer,
        RoleArg::Operator => Role::Operator,
        RoleArg::Admin => Role::Admin,
    };
    let namespaces = if args.namespaces.is_empty() {
        vec![args.namespace.clone()]
    } else {
        args.namespaces.clone()
    };
    let token = generate();
    let manifest = match args.token_type {
        TokenType::Api => {
            anyhow::ensure!(
                args.device.is_none() && args.labels.is_empty(),
                "--device and --labels are for enrollment tokens; add --type enrollment"
            );
            render_token_secret(&args.name, &args.namespace, role, &namespaces, &token)
        }
        TokenType::Enrollment => {
            anyhow::ensure!(args.max_uses >= 1, "--max-uses must be at least 1");
            let expires = args
                .expires_in
                .map(|d| jiff::Timestamp::now().checked_add(jiff::SignedDuration::try_from(d)?))
                .transpose()
                .context("--expires-in is too long")?;
            if let Some(device) = &args.device {
                anyhow::ensure!(
                    cdot_crds::validation::is_dns1123_subdomain(device),
                    "--device {device:?} is not a valid Device name (lowercase RFC 1123 subdomain)"
                );
            }
            render_enrollment_secret(
                &args.name,
                &args.namespace,
                &token,
                expires,
                args.max_uses,
                args.device.as_deref(),
                &args.labels,
            )
        }
    };
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            let path = dir.join(format!("{}.yaml", args.name));
            std::fs::write(&path, &manifest)
                .with_context(|| format!("failed to write {}", path.display()))?;
            if !args.quiet {
                eprintln!("wrote {} (holds only the token's SHA-256)", path.display());
            }
        }
        None => print!("{manifest}"),
    }
    if args.quiet {
        println!("{token}");
    } else {
        eprintln!("token (shown once, keep it safe): {token}");
    }
    Ok(())
}
