//! The `kfs` command line, run as a user would run it.

use assert_cmd::Command;

#[test]
fn version_prints_the_package_version() {
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("kfs {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_flag_is_a_one_line_error_not_a_panic() {
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("error: unexpected argument '--no-such-flag'"),
        "{stderr}"
    );
}

#[test]
fn with_no_arguments_it_points_at_the_newest_demo() {
    let output = Command::cargo_bin("kfs").unwrap().output().unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("--example tour")
    );
}
