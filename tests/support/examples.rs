//! This crate's examples as child processes, for tests that talk to them as a real user would.
//!
//! [`path`] finds an example's binary next to the test binary, building every example once on
//! first use (`cargo test` builds examples, `cargo test --test NAME` does not). `support/proc.rs`
//! runs it.
//!
//! Include with `#[path = "support/examples.rs"] mod examples;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The program to run for example `name`: `$REPOD_EXAMPLE_<NAME>` if set (to check a test
/// against another implementation), else the example's binary, built on first use.
pub fn path(name: &str) -> PathBuf {
    let var = format!("REPOD_EXAMPLE_{}", name.to_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        eprintln!(
            "{var}: testing {} instead of the example",
            p.to_string_lossy()
        );
        return PathBuf::from(p);
    }
    built(name)
}

/// The path of example `name`'s binary, built on first use.
pub fn built(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| {
        let _one_at_a_time = BUILD.lock().unwrap_or_else(|p| p.into_inner());
        // This test runs from <target>/[<triple>/]<profile>/deps/.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<profile>/deps/<test>")
            .to_owned();
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("<target>/tmp")
            .to_owned();
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "--quiet", "--examples", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => panic!("unexpected test location {}", exe.display()),
        }
        if let Some(triple_dir) = profile_dir.parent().filter(|p| *p != target_dir) {
            cmd.arg("--target")
                .arg(triple_dir.file_name().expect("triple"));
        }
        let out = cmd.output().expect("running cargo build --examples");
        assert!(
            out.status.success(),
            "cargo build --examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples")
    });
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}
