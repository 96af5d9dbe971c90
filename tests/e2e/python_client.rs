//! The Python client (issue 17): `tests/python/test_client.py` run by
//! pytest, with `sdk/python` on the path, against the `mass` binary of
//! this build. The pytest file starts and stops its own three-node mesh
//! (tests/python/conftest.py): ingest from a DataFrame, train, predict,
//! promote and roll back, the scikit-learn-style estimators, typed
//! refusals, and failover when a node is killed.

use std::{path::PathBuf, process::Command};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The Python the check runs in: `MASS_PYTHON`, else the venv
/// `scripts/python-env.sh` makes (with pytest and pandas). Fails (never
/// skips) without one.
fn python() -> String {
    let output = Command::new("bash").arg(repo("scripts/python-env.sh")).output().unwrap();
    assert!(
        output.status.success(),
        "no Python with numpy, pandas and pytest for the Python client's tests: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_python_client_passes_its_tests_against_a_live_mesh() {
    let python = python();
    let sdk = repo("sdk/python");
    let path = match std::env::var_os("PYTHONPATH") {
        Some(old) if !old.is_empty() => {
            std::env::join_paths(std::iter::once(sdk).chain(std::env::split_paths(&old))).unwrap()
        }
        _ => sdk.into_os_string(),
    };
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(repo("tests/python/test_client.py"))
        .current_dir(repo(""))
        .env("MASS_BIN", env!("CARGO_BIN_EXE_mass"))
        .env("PYTHONPATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "tests/python/test_client.py failed:\n{report}");
    // Every test ran: none skipped or deselected.
    let summary = report.lines().rev().find(|l| l.contains(" passed")).unwrap_or_default();
    assert!(
        !summary.is_empty() && !summary.contains("skipped") && !summary.contains("deselected"),
        "tests/python/test_client.py did not run every test:\n{report}"
    );
    println!("{report}");
}
