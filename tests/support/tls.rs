//! Test certificates for the TLS tests (`tests/tls.rs`), made at test time with the `openssl`
//! command-line tool: nothing secret is committed, and every run has its own keys.
//!
//! [`certs`] makes, once per test process, in a fresh directory under `target/tmp`:
//!
//! - a private CA (ECDSA P-256), trusted by the test clients (`-CAfile`, Python's `cafile`,
//!   `SSL_CERT_FILE`);
//! - [`Certs::leaf1`] and [`Certs::leaf2`]: two ECDSA P-256 leaves for DNS `localhost` and IP
//!   `127.0.0.1`, signed by the CA, told apart by their serial and subject (the reload test
//!   swaps one for the other);
//! - [`Certs::rsa`]: an RSA 2048 leaf for the same names;
//! - [`Certs::other`]: an ECDSA leaf for `other.example` only;
//! - the same keys in their traditional encodings (SEC1 `EC PRIVATE KEY`, PKCS#1
//!   `RSA PRIVATE KEY`) next to the PKCS#8 ones;
//! - [`Certs::broken`]: a PEM file that is not a certificate (base64 that decodes to nothing
//!   valid), for the failed reload.
//!
//! [`spki_sha256_base64`] gives a certificate's SPKI hash the way Chromium's
//! `--ignore-certificate-errors-spki-list` wants it; [`s_client`] runs `openssl s_client` and
//! reads what it negotiated.
//!
//! OpenSSL is `REPOD_OPENSSL`, else `/usr/bin/openssl`, else `openssl` on `PATH` (Debian's
//! package `openssl`, on every Debian machine). Without it the tests print a loud notice and
//! pass, skipped; with `CI` set they fail. Every command is bounded in time.
//!
//! Include with `#[path = "support/tls.rs"] mod tls;` next to `support/proc.rs` (as `proc`).
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Bound on one `openssl` command (an RSA key takes well under a second).
const STEP: Duration = Duration::from_secs(60);

/// The `openssl` binary, or `None` (after a loud notice) when there is none and `CI` is not
/// set.
pub fn openssl() -> Option<PathBuf> {
    crate::proc::real_tool(
        "OpenSSL",
        "REPOD_OPENSSL",
        &["/usr/bin/openssl", "/usr/local/bin/openssl"],
        "openssl",
        "version",
        "apt-get install openssl",
    )
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate (PEM, the leaf alone: clients trust the CA directly).
    pub cert: PathBuf,
    /// Its key, PKCS#8 (`BEGIN PRIVATE KEY`).
    pub key: PathBuf,
    /// The same key in its traditional encoding: SEC1 (`BEGIN EC PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`).
    pub key_traditional: PathBuf,
    /// The serial number in hex, upper case, as `openssl x509 -serial` and Python's
    /// `getpeercert()["serialNumber"]` print it.
    pub serial: &'static str,
    /// The subject's common name: unique to this leaf.
    pub cn: &'static str,
}

/// Everything [`certs`] made.
#[derive(Debug)]
pub struct Certs {
    /// The directory holding every file.
    pub dir: PathBuf,
    /// The `openssl` binary that made them.
    pub openssl: PathBuf,
    /// The CA's certificate: the one trust anchor of the clients.
    pub ca: PathBuf,
    /// ECDSA P-256, `localhost` and `127.0.0.1`.
    pub leaf1: Leaf,
    /// ECDSA P-256, `localhost` and `127.0.0.1`: another key, serial and subject.
    pub leaf2: Leaf,
    /// RSA 2048, `localhost` and `127.0.0.1`.
    pub rsa: Leaf,
    /// ECDSA P-256, `other.example` only.
    pub other: Leaf,
    /// A PEM "certificate" whose body is not a certificate.
    pub broken: PathBuf,
}

/// The extensions of the CA and of each kind of leaf. A leaf is what browsers accept today: a
/// subjectAltName (the common name is not looked at), `serverAuth`, not a CA, and a key usage
/// that fits its key (ECDSA signs; RSA may also encipher, for TLS 1.2's RSA key exchange).
const OPENSSL_CNF: &str = "\
# Written by the repod TLS tests (tests/support/tls.rs).
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ec_localhost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[rsa_localhost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ec_other]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Base64 that decodes to bytes that are no DER certificate.
const BROKEN_PEM: &str = "\
-----BEGIN CERTIFICATE-----
TUlJQm5vdCBhIGNlcnRpZmljYXRlLCBqdXN0IHRleHQgaW4gYmFzZTY0IGZvciB0aGUgcmVsb2FkIHRlc3Q=
-----END CERTIFICATE-----
";

/// The test certificates, made on first use (once per test process); `None` (after a loud
/// notice) without `openssl` when `CI` is not set.
///
/// # Panics
///
/// No `openssl` and `CI` is set; or a command failed.
pub fn certs() -> Option<&'static Certs> {
    static CERTS: OnceLock<Option<Certs>> = OnceLock::new();
    CERTS
        .get_or_init(|| {
            let openssl = openssl()?;
            Some(make(&openssl, &tempdir("tls-certs")))
        })
        .as_ref()
}

/// A fresh directory under `CARGO_TARGET_TMPDIR`.
pub fn tempdir(what: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir); // left by an earlier run with the same pid
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Makes every file of [`Certs`] in `dir`.
pub fn make(openssl: &Path, dir: &Path) -> Certs {
    let cnf = dir.join("openssl.cnf");
    std::fs::write(&cnf, OPENSSL_CNF).expect("writing openssl.cnf");
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca-key.pem");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut req = Command::new(openssl);
    req.args(["req", "-x509", "-config"])
        .arg(&cnf)
        .args(ec)
        .args(["-nodes", "-keyout"])
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .args(["-days", "7", "-set_serial", "1", "-extensions", "ca_ext"])
        .args(["-subj", "/O=repod tests/CN=repod test CA"]);
    checked(req, &[], "openssl req -x509 (the CA)");

    let leaf = |name: &str, serial: &'static str, cn: &'static str, ext: &str, rsa: bool| {
        let key = dir.join(format!("{name}-key.pem"));
        let csr = dir.join(format!("{name}.csr"));
        let cert = dir.join(format!("{name}.pem"));
        let mut req = Command::new(openssl);
        req.args(["req", "-new", "-config"]).arg(&cnf);
        if rsa {
            req.args(["-newkey", "rsa:2048"]);
        } else {
            req.args(ec);
        }
        req.args(["-nodes", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", &format!("/O=repod tests/CN={cn}")]);
        checked(req, &[], &format!("openssl req -new ({name})"));
        let mut sign = Command::new(openssl);
        sign.args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-set_serial", &format!("0x{serial}"), "-days", "7"])
            .arg("-extfile")
            .arg(&cnf)
            .args(["-extensions", ext, "-out"])
            .arg(&cert);
        checked(sign, &[], &format!("openssl x509 -req ({name})"));
        let key_traditional = dir.join(format!("{name}-key-traditional.pem"));
        let mut trad = Command::new(openssl);
        trad.args(["pkey", "-traditional", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&key_traditional);
        checked(trad, &[], &format!("openssl pkey -traditional ({name})"));
        Leaf {
            cert,
            key,
            key_traditional,
            serial,
            cn,
        }
    };
    let leaf1 = leaf("leaf1", "1001", "repod leaf one", "ec_localhost", false);
    let leaf2 = leaf("leaf2", "1002", "repod leaf two", "ec_localhost", false);
    let rsa = leaf("rsa", "1003", "repod leaf rsa", "rsa_localhost", true);
    let other = leaf("other", "1004", "repod leaf other", "ec_other", false);
    let broken = dir.join("broken.pem");
    std::fs::write(&broken, BROKEN_PEM).expect("writing broken.pem");
    let certs = Certs {
        dir: dir.to_owned(),
        openssl: openssl.to_owned(),
        ca,
        leaf1,
        leaf2,
        rsa,
        other,
        broken,
    };
    // What was made is what the tests think it is.
    for l in [&certs.leaf1, &certs.leaf2, &certs.rsa, &certs.other] {
        let (serial, subject) = certs.serial_and_subject(&l.cert);
        assert_eq!(serial, l.serial, "{}", l.cert.display());
        assert!(
            subject.contains(l.cn),
            "{subject:?} for {}",
            l.cert.display()
        );
        let mut verify = Command::new(openssl);
        verify
            .args(["verify", "-CAfile"])
            .arg(&certs.ca)
            .arg(&l.cert);
        checked(verify, &[], "openssl verify");
    }
    for (key, begin) in [
        (&certs.leaf1.key, "-----BEGIN PRIVATE KEY-----"),
        (
            &certs.leaf1.key_traditional,
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        (&certs.rsa.key, "-----BEGIN PRIVATE KEY-----"),
        (
            &certs.rsa.key_traditional,
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
    ] {
        let text = std::fs::read_to_string(key).expect("reading a key");
        assert!(text.starts_with(begin), "{}: {text:.40}", key.display());
    }
    certs
}

impl Certs {
    /// `(serial, subject)` of the certificate in `cert` (`1001`, `O=repod tests, CN=...`).
    pub fn serial_and_subject(&self, cert: &Path) -> (String, String) {
        let mut cmd = Command::new(&self.openssl);
        cmd.args([
            "x509",
            "-noout",
            "-serial",
            "-subject",
            "-nameopt",
            "sep_comma_plus",
        ])
        .arg("-in")
        .arg(cert);
        let out = checked(cmd, &[], "openssl x509 -serial");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {text:?}"))
                .trim()
                .to_owned()
        };
        (field("serial"), field("subject"))
    }

    /// The base64 SHA-256 of `cert`'s SubjectPublicKeyInfo, for Chromium's
    /// `--ignore-certificate-errors-spki-list`: `openssl x509 -pubkey | openssl pkey -pubin
    /// -outform der | openssl dgst -sha256 -binary | base64`, one step at a time.
    pub fn spki_sha256_base64(&self, cert: &Path) -> String {
        spki_sha256_base64(&self.openssl, cert)
    }
}

/// See [`Certs::spki_sha256_base64`].
pub fn spki_sha256_base64(openssl: &Path, cert: &Path) -> String {
    let mut x509 = Command::new(openssl);
    x509.args(["x509", "-noout", "-pubkey", "-in"]).arg(cert);
    let pem = checked(x509, &[], "openssl x509 -pubkey").stdout;
    let mut pkey = Command::new(openssl);
    pkey.args(["pkey", "-pubin", "-outform", "der"]);
    let der = checked(pkey, &pem, "openssl pkey -pubin -outform der").stdout;
    let mut dgst = Command::new(openssl);
    dgst.args(["dgst", "-sha256", "-binary"]);
    let hash = checked(dgst, &der, "openssl dgst -sha256 -binary").stdout;
    assert_eq!(hash.len(), 32, "a SHA-256 is 32 bytes");
    let mut b64 = Command::new(openssl);
    b64.args(["base64", "-A"]);
    let text = checked(b64, &hash, "openssl base64").stdout;
    let text = String::from_utf8(text).expect("base64 is ASCII");
    let text = text.trim().to_owned();
    assert_eq!(text.len(), 44, "base64 of 32 bytes: {text:?}");
    text
}

/// What `openssl s_client` reported for one connection attempt.
#[derive(Debug)]
pub struct SClient {
    /// Whether the handshake finished (a cipher was agreed).
    pub ok: bool,
    /// The negotiated protocol (`TLSv1.2`, `TLSv1.3`) when `ok`.
    pub protocol: Option<String>,
    /// The server certificate's subject line, when one was received.
    pub subject: Option<String>,
    /// `Verify return code: 0 (ok)` was printed.
    pub verified: bool,
    /// stdout and stderr, for failure messages.
    pub output: String,
}

/// Runs `openssl s_client -connect ADDR -servername NAME -CAfile CA -verify_return_error` with
/// `extra` arguments (`-tls1_3`...), with no input (it connects, handshakes, then closes).
pub fn s_client(certs: &Certs, addr: &str, name: &str, extra: &[&str]) -> SClient {
    let mut cmd = Command::new(&certs.openssl);
    cmd.args(["s_client", "-connect", addr, "-servername", name, "-CAfile"])
        .arg(&certs.ca)
        .arg("-verify_return_error")
        .args(extra);
    let out = run(cmd, &[], STEP).unwrap_or_else(|e| panic!("openssl s_client: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384", or "New, (NONE), Cipher is (NONE)".
    let new_line = stdout.lines().find_map(|l| {
        let (version, cipher) = l.strip_prefix("New, ")?.split_once(", Cipher is ")?;
        Some((version.trim().to_owned(), cipher.trim().to_owned()))
    });
    let ok = out.status.success() && new_line.as_ref().is_some_and(|(_, c)| c != "(NONE)");
    // "    Protocol  : TLSv1.2" in the session block, when there is one (with TLS 1.3 it comes
    // with the session ticket, which s_client may not wait for); else the cipher's version
    // from the "New, ..." line (the same for the TLS 1.2 and 1.3 suites rustls has).
    let protocol = stdout
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "Protocol").then(|| v.trim().to_owned())
        })
        .or_else(|| new_line.map(|(v, _)| v));
    let subject = stdout
        .lines()
        .find_map(|l| l.strip_prefix("subject=").map(str::to_owned));
    SClient {
        ok,
        protocol: protocol.filter(|_| ok),
        subject,
        verified: stdout.contains("Verify return code: 0 (ok)"),
        output: format!(
            "--- openssl s_client {addr} {extra:?} ({}) stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            out.status
        ),
    }
}

/// Runs `cmd` with `input` on its stdin; panics with its output unless it succeeds.
fn checked(cmd: Command, input: &[u8], what: &str) -> Output {
    let out = run(cmd, input, STEP).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` to completion with `input` on stdin and its output captured, killing it after
/// `limit` (see [`crate::proc::run_bounded`]).
pub fn run(cmd: Command, input: &[u8], limit: Duration) -> io::Result<Output> {
    crate::proc::run_bounded(cmd, input, limit)
}
