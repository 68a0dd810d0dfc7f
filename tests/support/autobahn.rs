//! The Autobahn|Testsuite's `wstest` 0.8.2 (PyPI `autobahntestsuite`), the reference WebSocket
//! (RFC 6455) conformance suite, for `tests/autobahn.rs`.
//!
//! `wstest` runs on Python 2.7 only. [`wstest`] finds one (`REPOD_PYTHON2` if set, else
//! `~/.pyenv/versions/2.7.18/bin/python`, else `python2.7` on `PATH`), installs the pinned
//! [`PINS`] once with `pip install --target` into a directory under the target directory
//! (`target/tmp/autobahn`), and reuses it afterwards. As in `python.rs`: safe from many threads
//! (a `OnceLock`) and processes (a lock directory), a `ready` marker written last, every step
//! bounded in time. With no Python 2.7 it prints a loud notice and returns `None` (the test
//! skips, passing), or panics when `CI` is set.
//!
//! [`Wstest::fuzzingclient`] runs the suite against a server and [`Wstest::results`] reads its
//! JSON report (through the same Python 2.7: the crate has no JSON parser).
//!
//! Include with `#[path = "support/python.rs"] mod python;` and
//! `#[path = "support/autobahn.rs"] mod autobahn;` (this uses `python::run` and its lock).
#![allow(dead_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use super::python::{self, DirLock};

/// Every package installed, pinned: `autobahntestsuite==0.8.2` and what pip 19.2.3 (the one of
/// Python 2.7.18) resolved for it on Python 2.7 (December 2026). Unpinned, pip picks the same
/// ones today, since each newer release declares that it needs Python 3; the pins keep a release
/// that gets that wrong from breaking the install. `autobahn` 0.10.9 is what
/// `autobahntestsuite` 0.8.2 itself pins (`autobahn[twisted,accelerate]==0.10.9`); `wsaccel`
/// (its `accelerate` extra, compiled from source: needs a C compiler and Python's headers)
/// makes the UTF-8 validation and masking fast enough for the 16 MiB messages of case 9.
pub const PINS: &[&str] = &[
    "autobahntestsuite==0.8.2",
    "autobahn==0.10.9",
    "Twisted==20.3.0",
    "zope.interface==5.5.2",
    "txaio==2.1.0",
    "wsaccel==0.6.6",
    "ujson==2.0.3",
    "six==1.17.0",
    "klein==20.6.0",
    "Werkzeug==1.0.1",
    "Tubes==0.2.1",
    "Jinja2==2.11.3",
    "MarkupSafe==1.1.1",
    "pyOpenSSL==21.0.0",
    "cryptography==3.3.2",
    "cffi==1.15.1",
    "pycparser==2.21",
    "enum34==1.1.10",
    "ipaddress==1.0.23",
    "service-identity==21.1.0",
    "pyasn1==0.5.1",
    "pyasn1-modules==0.3.0",
    "attrs==21.4.0",
    "Automat==22.10.0",
    "constantly==15.1.0",
    "incremental==22.10.0",
    "hyperlink==21.0.0",
    "idna==2.10",
    "typing==3.10.0.0",
    "PyHamcrest==1.10.1",
    "unittest2==1.1.0",
    "traceback2==1.4.0",
    "linecache2==1.0.0",
    "argparse==1.4.0",
    "setuptools==44.1.1",
];

/// Written into the install directory once everything is installed and imports; its content
/// (the pins) is checked, so changing a pin reinstalls.
const READY_MARKER: &str = "repod-autobahn-ready";

/// How long the install may take before it is killed (about 25 s, wsaccel and zope.interface
/// compiled included). Kept under `python.rs`'s 900 s after which a lock counts as stale.
const STEP_LIMIT: Duration = Duration::from_secs(600);

/// An installed `wstest`.
#[derive(Debug)]
pub struct Wstest {
    python: PathBuf,
    dir: PathBuf,
}

/// `wstest` ready to run; `None` (after a loud notice) when no Python 2.7 is available and `CI`
/// is not set.
///
/// # Panics
///
/// No Python 2.7 was found and `CI` is set; or the install failed.
pub fn wstest() -> Option<&'static Wstest> {
    static WSTEST: OnceLock<Option<Wstest>> = OnceLock::new();
    WSTEST
        .get_or_init(|| {
            let Some(python) = find_python2() else {
                let msg = "no Python 2.7 found for the Autobahn|Testsuite (looked at \
                           $REPOD_PYTHON2, ~/.pyenv/versions/2.7.18/bin/python and python2.7 on \
                           PATH)";
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{msg}: the WebSocket conformance test cannot run, and CI is set"
                );
                python::loud(&format!(
                    "SKIPPING the Autobahn|Testsuite WebSocket conformance test: {msg}. Set \
                     REPOD_PYTHON2 to a Python 2.7 interpreter to run it."
                ));
                return None;
            };
            let dir = install_dir();
            if let Err(e) = prepare(&python, &dir) {
                panic!(
                    "could not install {} into {} (with {}): {e}",
                    PINS[0],
                    dir.display(),
                    python.display()
                );
            }
            Some(Wstest { python, dir })
        })
        .as_ref()
}

/// Where `wstest` is installed: under Cargo's target directory.
pub fn install_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("autobahn")
}

fn find_python2() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REPOD_PYTHON2") {
        let p = PathBuf::from(p);
        assert!(
            is_python27(&p),
            "REPOD_PYTHON2={} is not a runnable Python 2.7",
            p.display()
        );
        return Some(p);
    }
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".pyenv/versions/2.7.18/bin/python"));
    }
    candidates.push(PathBuf::from("python2.7"));
    candidates.into_iter().find(|p| is_python27(p))
}

fn is_python27(python: &Path) -> bool {
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)",
    ]);
    matches!(python::run(cmd, Duration::from_secs(60)), Ok(out) if out.status.success())
}

impl Wstest {
    /// `python -m autobahntestsuite.wstest` with the install directory on `PYTHONPATH` (its
    /// `bin/wstest` script names the interpreter pip ran with, which may move).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.args(["-m", "autobahntestsuite.wstest"]);
        self.env(&mut cmd);
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("PYTHONPATH", &self.dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // cryptography's "Python 2 is no longer supported" warning, on every start.
            .env("PYTHONWARNINGS", "ignore")
            .env_remove("PYTHONHOME")
            .env_remove("PYTHONSTARTUP");
    }

    /// Runs the fuzzing client (the suite's client, testing a server) with the spec file
    /// `spec`, in `spec`'s directory, killing it after `limit`.
    pub fn fuzzingclient(&self, spec: &Path, limit: Duration) -> io::Result<Output> {
        let mut cmd = self.command();
        cmd.args(["-m", "fuzzingclient", "-s"]).arg(spec);
        if let Some(dir) = spec.parent() {
            cmd.current_dir(dir);
        }
        python::run(cmd, limit)
    }

    /// Every case of the report in `outdir` (`index.json`, and for each case not `OK` both ways
    /// its own report, for the explanation), sorted by case id.
    pub fn results(&self, outdir: &Path) -> Result<Vec<CaseResult>, String> {
        let mut cmd = Command::new(&self.python);
        cmd.args(["-c", SUMMARIZE]).arg(outdir);
        self.env(&mut cmd);
        let out = python::run(cmd, Duration::from_secs(120))
            .map_err(|e| format!("reading the report: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "reading the report in {} failed ({}):\n{}",
                outdir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8(out.stdout).map_err(|e| format!("report summary: {e}"))?;
        let mut cases = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let [agent, id, behavior, behavior_close, remote_close_code, result, result_close, report_file] =
                f[..]
            else {
                return Err(format!("unexpected report summary line {line:?}"));
            };
            cases.push(CaseResult {
                agent: agent.to_owned(),
                id: id.to_owned(),
                behavior: behavior.to_owned(),
                behavior_close: behavior_close.to_owned(),
                remote_close_code: remote_close_code.to_owned(),
                result: result.to_owned(),
                result_close: result_close.to_owned(),
                report_file: report_file.to_owned(),
            });
        }
        cases.sort_by_key(|c| case_key(&c.id));
        Ok(cases)
    }
}

/// One case's outcome, as the report gives it.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The server's name in the spec.
    pub agent: String,
    /// `"9.1.6"`.
    pub id: String,
    /// `OK`, `NON-STRICT`, `INFORMATIONAL`, `UNIMPLEMENTED` or `FAILED`.
    pub behavior: String,
    /// The closing handshake's: `OK`, `INFORMATIONAL`, `FAILED`, `WRONG CODE`, `UNCLEAN`, ...
    pub behavior_close: String,
    /// The close code the server sent (`None` when it sent none).
    pub remote_close_code: String,
    /// The case's `result` text (only read for cases not `OK` both ways; else empty).
    pub result: String,
    /// The case's `resultClose` text (likewise).
    pub result_close: String,
    /// The case's own JSON report, in the report directory.
    pub report_file: String,
}

impl CaseResult {
    /// A failure: `FAILED` either way. (`NON-STRICT`, `INFORMATIONAL` and `UNIMPLEMENTED` are
    /// allowed by the suite; so is any closing behaviour other than `FAILED`, such as
    /// `WRONG CODE` or `UNCLEAN`, when the case's own behaviour is not `FAILED` too.)
    pub fn failed(&self) -> bool {
        self.behavior == "FAILED" || self.behavior_close == "FAILED"
    }
}

/// `"9.1.10"` as `[9, 1, 10]`, for a numeric sort.
fn case_key(id: &str) -> Vec<u64> {
    id.split('.')
        .map(|p| p.parse().unwrap_or(u64::MAX))
        .collect()
}

/// Prints one tab-separated line per case: agent, id, behavior, behaviorClose,
/// remoteCloseCode, result, resultClose, reportfile (whitespace in texts collapsed to spaces).
/// Python 2.7 (and 3).
const SUMMARIZE: &str = r#"
import io, json, os, sys
outdir = sys.argv[1]
with io.open(os.path.join(outdir, 'index.json'), encoding='utf-8') as f:
    index = json.load(f)
out = getattr(sys.stdout, 'buffer', sys.stdout)
def text(v):
    if v is None:
        return u'None'
    if not isinstance(v, type(u'')):
        v = u'%s' % (v,)
    return u' '.join(v.split()) or u'-'
for agent, cases in index.items():
    for case, v in cases.items():
        report = {}
        name = v.get('reportfile') or u''
        if name and (v.get('behavior') != 'OK' or v.get('behaviorClose') != 'OK'):
            try:
                with io.open(os.path.join(outdir, name), encoding='utf-8') as f:
                    report = json.load(f)
            except Exception as e:
                report = {'result': u'(report %s unreadable: %s)' % (name, e)}
        fields = [agent, case, v.get('behavior'), v.get('behaviorClose'),
                  v.get('remoteCloseCode'), report.get('result', u''),
                  report.get('resultClose', u''), name]
        out.write((u'\t'.join(text(x) for x in fields) + u'\n').encode('utf-8'))
"#;

/// Whether `dir` holds a finished install: the marker matches and `wstest` imports, at 0.8.2.
fn is_ready(python: &Path, dir: &Path) -> bool {
    let marker = fs::read_to_string(dir.join(READY_MARKER)).unwrap_or_default();
    marker.trim() == PINS.join("\n") && imports(python, dir)
}

fn imports(python: &Path, dir: &Path) -> bool {
    let w = Wstest {
        python: python.to_owned(),
        dir: dir.to_owned(),
    };
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import autobahntestsuite, autobahntestsuite.wstest, wsaccel\n\
         assert autobahntestsuite.__version__ == '0.8.2', autobahntestsuite.__version__",
    ]);
    w.env(&mut cmd);
    matches!(python::run(cmd, Duration::from_secs(120)), Ok(out) if out.status.success())
}

fn prepare(python: &Path, dir: &Path) -> Result<(), String> {
    if is_ready(python, dir) {
        return Ok(());
    }
    let parent = dir.parent().ok_or("the install directory has no parent")?;
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let _lock = DirLock::acquire(&dir.with_extension("lock"))?;
    // Another process may have finished it while this one waited for the lock.
    if is_ready(python, dir) {
        return Ok(());
    }
    python::loud(&format!(
        "installing the Autobahn|Testsuite ({}) into {} with {}",
        PINS[0],
        dir.display(),
        python.display()
    ));
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing the broken install: {e}")),
    }
    let mut pip = Command::new(python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--quiet",
        "--target",
    ])
    .arg(dir)
    .args(PINS)
    .env("PYTHONWARNINGS", "ignore");
    let out = python::run(pip, STEP_LIMIT).map_err(|e| format!("pip install: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // zope.interface is a namespace package, and `--target` leaves `zope/` without the
    // `__init__.py` that Python 2 needs to import it.
    let zope = dir.join("zope").join("__init__.py");
    if !zope.exists() {
        fs::write(&zope, "").map_err(|e| format!("writing {}: {e}", zope.display()))?;
    }
    if !imports(python, dir) {
        return Err("installed, but `import autobahntestsuite.wstest` fails".into());
    }
    // The marker is written last, through a rename, so it only exists for a finished install.
    let tmp = dir.join(format!("{READY_MARKER}.tmp"));
    fs::write(&tmp, PINS.join("\n")).map_err(|e| format!("writing the ready marker: {e}"))?;
    fs::rename(&tmp, dir.join(READY_MARKER))
        .map_err(|e| format!("writing the ready marker: {e}"))?;
    Ok(())
}
